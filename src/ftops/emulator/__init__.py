"""`ftops emulator`: a local Azure OpenAI look-alike that really fine-tunes a small model on the CPU."""

# OMP_WAIT_POLICY is deliberately left to the user here. Passive waiting helps when several
# processes share the cores (the test suite sets it: an emulator training test ran twice as fast
# under load), but alone it doubles SmolLM2's generation time (4 answers of 48 tokens: 2.0 s
# passive, 1.0 s active, measured on 2 cores), which is what `make up`'s gate spends its time on.
