"""ftops: one Pulumi stack per environment, declared in environments/Pulumi.<stack>.yaml."""

from pathlib import Path

import pulumi

from ftops.program import build_stack, load_stack_environment

ROOT = Path(__file__).resolve().parent.parent

env = load_stack_environment(ROOT, pulumi.get_stack(), pulumi.Config("ftops").require_object("environment"))
for name, value in build_stack(env, ROOT).items():
    pulumi.export(name, value)
