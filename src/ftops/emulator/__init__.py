"""`ftops emulator`: a local Azure OpenAI look-alike that really fine-tunes a small model on the CPU."""

import os

# OpenMP threads that wait actively spin on the CPU between torch operations, taking it from the
# processes with work to do: the training worker, the server's inference, the Pulumi engine and
# providers on the same laptop. On a busy 2-core machine ten tiny-test training steps took 21-31 s
# with spinning threads against 1.8 s with passive ones (measured for the test suite). Passive
# waiting changes no result. Set here, before any emulator module loads torch; the training
# workers inherit it. A value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
