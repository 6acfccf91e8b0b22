"""ftops: one Pulumi stack per environment, declared in environments/Pulumi.<stack>.yaml."""

from pathlib import Path

import pulumi

from ftops.program import load_stack_environment, summary

ROOT = Path(__file__).resolve().parent.parent

env = load_stack_environment(ROOT, pulumi.get_stack(), pulumi.Config("ftops").require_object("environment"))
pulumi.export("environment", summary(env))
