"""Evaluation: eval sets, graders, the runner and the evidence a gate leaves behind."""
