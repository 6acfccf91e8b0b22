"""A throwaway GitOps repository: two local environments on two emulated accounts (dev trains,
staging takes pins from dev), committed to a fresh git repo."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO

DEV = """\
config:
  ftops:environment:
    name: local-dev
    stage: development
    target: local
    location: swedencentral
    naming:
      prefix: ftops
    emulator:
      endpoint: {endpoint}
      account: dev-acct
    models:
      support-bot:
        base_model: gpt-4.1-mini-2025-04-14
        method:
          type: supervised
          hyperparameters:
            n_epochs: 1
        training_file: data/train.jsonl
        suffix: bot
        seed: {seed}
    deployments:
      support-bot:
        model: support-bot
        sku: {{name: GlobalStandard, capacity: 10}}
    gates:
      support-bot:
        quality:
          - {{name: answers, eval_set: data/evals.jsonl, grader: regex, threshold: 1.0}}
"""

STAGING = """\
config:
  ftops:environment:
    name: local-staging
    stage: staging
    target: local
    location: swedencentral
    naming:
      prefix: ftops
    emulator:
      endpoint: {endpoint}
      account: staging-acct
    promotion:
      from: local-dev
      require_approval: false
    deployments:
      support-bot:
        model: support-bot
        sku: {{name: GlobalStandard, capacity: 10}}
    gates:
      support-bot:
        quality:
          - {{name: answers, eval_set: data/evals.jsonl, grader: regex, threshold: 1.0}}
"""

RELEASES = """\
# Release pins for local-staging: written by `ftops promote`, restored by `ftops rollback`.
releases: {}
"""

EVALS = '{"messages": [{"role": "user", "content": "How long is the return window?"}], "pattern": ".", "max_tokens": 4}\n'


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


def make_repo(root: Path, endpoint: str = "http://127.0.0.1:8790") -> Path:
    (root / "environments" / "releases").mkdir(parents=True)
    (root / "data").mkdir()
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copy(REPO / "data" / "support-bot" / "train.jsonl", root / "data" / "train.jsonl")
    (root / "data" / "evals.jsonl").write_text(EVALS)
    (root / "environments" / "Pulumi.local-dev.yaml").write_text(DEV.format(endpoint=endpoint, seed=7))
    (root / "environments" / "Pulumi.local-staging.yaml").write_text(STAGING.format(endpoint=endpoint))
    (root / "environments" / "releases" / "local-staging.yaml").write_text(RELEASES)
    (root / ".gitignore").write_text(".ftops/\n")
    git(root, "init", "--quiet", "--initial-branch=main")
    git(root, "config", "user.email", "ci@example.com")
    git(root, "config", "user.name", "ftops tests")
    git(root, "add", ".")
    git(root, "commit", "--quiet", "-m", "initial")
    return root
