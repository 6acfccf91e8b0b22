"""The emulator's machine-learning core: local stand-in models, LoRA SFT and DPO, chat generation.

Import the submodules (`localmodels`, `chatdata`, `train`, `infer`) directly; this package stays
empty so importing it does not pull in torch.
"""
