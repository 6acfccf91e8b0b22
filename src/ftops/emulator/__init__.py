"""`ftops emulator`: a local Azure OpenAI look-alike that really fine-tunes a small model on the CPU."""
