"""Pulumi ComponentResources that compose ftops' resources into a stack."""
