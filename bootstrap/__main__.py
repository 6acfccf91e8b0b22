"""ftops bootstrap: the one-time Azure and GitHub set-up, one stack per subscription and repository,
declared in bootstrap/Pulumi.<stack>.yaml (see Pulumi.example.yaml)."""

from pathlib import Path

import pulumi

from ftops.bootstrap.program import build_bootstrap, load_stack_settings

ROOT = Path(__file__).resolve().parent.parent

settings = load_stack_settings(ROOT, pulumi.get_stack(), pulumi.Config("ftops").require_object("bootstrap"))
for name, value in build_bootstrap(settings).items():
    pulumi.export(name, value)
