"""Flag a pipe in a workflow `run:` step whose shell does not fail when the pipe's first command fails.

    python .ci/pipes.py [WORKFLOW.yml ...]      (default: .github/workflows/*.yml)

GitHub runs a `run:` step with `bash -e {0}` when no shell is named, and with
`bash --noprofile --norc -eo pipefail {0}` only when `shell: bash` is named explicitly (on the step,
or in `defaults.run.shell` of the job or the workflow). Without pipefail `ftops preview | tail`
succeeds whenever `tail` does, so a failed preview reports green. A step passes when its shell
sets pipefail, or when its script runs `set -o pipefail` (or `set -eo pipefail`, ...) before its
first pipe. Exit 1 with one line per offending step, `file:line: job / step: ...`.

tests/test_workflows.py imports this file too: `shell_command` is how it runs the steps.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

IMPLICIT = "bash -e {0}"  # no `shell:` anywhere (Linux and macOS runners)
NAMED = {  # what GitHub runs for a shell named by keyword
    "bash": "bash --noprofile --norc -eo pipefail {0}",
    "sh": "sh -e {0}",
}
PIPEFAIL_SET = re.compile(r"^\s*set\s+(?:-[a-zA-Z]*o\s+pipefail\b|-o\s+pipefail\b|.*\s-o\s+pipefail\b)")


@dataclass(frozen=True)
class RunStep:
    path: Path
    line: int  # 1-based line of the step in the file
    job: str
    name: str
    shell: str | None  # the `shell:` in force (step, job default, workflow default), None: implicit
    script: str

    def command(self) -> str:
        return shell_command(self.shell)


def shell_command(shell: str | None) -> str:
    """The command line GitHub runs the script with ({0} is the script's file)."""
    if shell is None:
        return IMPLICIT
    return NAMED.get(shell, shell if "{0}" in shell else f"{shell} {{0}}")


def _default_shell(node: Any) -> str | None:
    shell = ((node or {}).get("defaults") or {}).get("run", {}).get("shell")
    return str(shell) if shell else None


def run_steps(path: Path) -> Iterator[RunStep]:
    workflow = YAML(typ="rt").load(path.read_text(encoding="utf-8"))
    top = _default_shell(workflow)
    for job_id, job in (workflow.get("jobs") or {}).items():
        job_shell = _default_shell(job) or top
        for index, step in enumerate(job.get("steps") or []):
            if "run" not in step:
                continue
            shell = step.get("shell") or job_shell
            yield RunStep(
                path=path,
                line=step.lc.line + 1,
                job=str(job_id),
                name=str(step.get("name") or step.get("id") or f"step {index + 1}"),
                shell=str(shell) if shell else None,
                script=str(step["run"]),
            )


def pipe_lines(script: str) -> list[int]:
    """1-based lines holding a pipe `|` or `|&` outside quotes and comments (`||` is not one)."""
    found: list[int] = []
    line, quote, i = 1, "", 0
    word_start = True
    while i < len(script):
        c = script[i]
        if c == "\n":
            line += 1
        if quote == "'":
            if c == "'":
                quote = ""
        elif c == "\\":
            if script[i + 1 : i + 2] == "\n":
                line += 1
            i += 2
            word_start = False
            continue
        elif quote == '"':
            if c == '"':
                quote = ""
        elif c in "'\"":
            quote = c
        elif c == "#" and word_start:
            while i < len(script) and script[i] != "\n":
                i += 1
            continue
        elif c == "|":
            if script[i + 1 : i + 2] == "|":
                i += 2
                word_start = True
                continue
            if not found or found[-1] != line:
                found.append(line)
        word_start = c in " \t\n;&|()" and not quote
        i += 1
    return found


def pipefail_on(step: RunStep) -> bool:
    """Whether a failing first command of the step's first pipe fails the step."""
    if "pipefail" in step.command():
        return True
    pipes = pipe_lines(step.script)
    lines = step.script.splitlines()
    return bool(pipes) and any(PIPEFAIL_SET.match(text) for text in lines[: pipes[0] - 1])


def problems(paths: list[Path]) -> list[str]:
    out = []
    for path in paths:
        for step in run_steps(path):
            shell_word = step.command().split()[0]
            if shell_word not in ("bash", "sh") or not pipe_lines(step.script) or pipefail_on(step):
                continue
            how = "no `shell:` (GitHub runs `bash -e {0}`)" if step.shell is None else f"`{step.command()}`"
            out.append(
                f"{step.path}:{step.line}: {step.job} / {step.name}: a pipe in `run:` with {how} "
                "succeeds when its first command fails; set `shell: bash` (the step's or "
                "`defaults.run.shell`), or `set -o pipefail` before the pipe"
            )
    return out


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted(Path(".github/workflows").glob("*.yml"))
    found = problems(paths)
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
