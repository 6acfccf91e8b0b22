"""The Azure/HTTP edge: clients, ARM calls, blob containers, retries and the RBAC wait.

Everything that talks to Azure (or the emulator) goes through here, and nothing here imports
another ftops package except `errors`: providers, evaluation, gitops and the CLI sit above it.
"""
