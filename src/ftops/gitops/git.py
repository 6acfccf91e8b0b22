"""The few git (and gh) operations promotion and rollback need, through the git CLI.

Written against the CLI rather than a library: these are five plumbing calls, every CI image has
git, and the user's own git configuration (signing, hooks, credentials) applies unchanged.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ftops.errors import GitError


def _run(root: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=False, timeout=60, input=stdin
        )
    except FileNotFoundError:
        raise GitError("git is not installed; install git and run again") from None


def git(root: Path, *args: str, check: bool = True, stdin: str | None = None) -> str:
    done = _run(root, *args, stdin=stdin)
    if check and done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise GitError(f"git {' '.join(args)}: {detail[-1] if detail else f'exit {done.returncode}'}")
    return done.stdout


def head(root: Path, short: bool = False) -> str:
    return git(root, "rev-parse", *(["--short=7"] if short else []), "HEAD").strip()


def is_dirty(root: Path, path: Path) -> bool:
    return bool(git(root, "status", "--porcelain", "--", str(path.relative_to(root))).strip())


def file_history(root: Path, path: Path) -> list[str]:
    """Commits that changed `path`, newest first."""
    return git(root, "log", "--format=%H", "--", str(path.relative_to(root))).split()


def show(root: Path, commit: str, path: Path) -> str | None:
    out = _run(root, "show", f"{commit}:{path.relative_to(root).as_posix()}")
    return out.stdout if out.returncode == 0 else None


def resolve(root: Path, ref: str) -> str | None:
    out = _run(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    return out.stdout.strip() or None if out.returncode == 0 else None


def is_ancestor(root: Path, ancestor: str, commit: str = "HEAD") -> bool:
    return _run(root, "merge-base", "--is-ancestor", ancestor, commit).returncode == 0


def switch_new(root: Path, branch: str) -> None:
    if resolve(root, f"refs/heads/{branch}") is not None:
        raise GitError(f"branch {branch} exists already; delete it or merge its pull request first")
    git(root, "switch", "--quiet", "-c", branch)


def commit(root: Path, paths: list[Path], message: str) -> str:
    """Commit exactly `paths` (whatever else is staged stays staged and out of this commit)."""
    relative = [str(p.relative_to(root)) for p in paths]
    git(root, "add", "--", *relative)
    # The message on stdin: a failing commit (a hook) is then named in one line, not echoed whole.
    git(root, "commit", "--quiet", "--file=-", "--", *relative, stdin=message)
    return head(root)


def current_branch(root: Path) -> str | None:
    """The checked-out branch; None on a detached HEAD."""
    return git(root, "branch", "--show-current").strip() or None


def switch_back(root: Path, ref: str, branch: str) -> None:
    """Return to `ref` (a branch, or a commit on a detached HEAD) and delete `branch`, made for a
    change that failed before it was committed: nothing is left half-done."""
    if resolve(root, f"refs/heads/{ref}") is not None:
        git(root, "switch", "--quiet", ref, check=False)
    else:
        git(root, "switch", "--quiet", "--detach", ref, check=False)
    git(root, "branch", "--quiet", "-D", branch, check=False)


def restore(root: Path, path: Path) -> None:
    """Put `path` back as HEAD has it (after a failure between writing and committing)."""
    git(root, "checkout", "--quiet", "HEAD", "--", str(path.relative_to(root)), check=False)


def pr_commands(branch: str, title: str, body_file: str) -> list[list[str]]:
    return [
        ["git", "push", "--set-upstream", "origin", branch],
        ["gh", "pr", "create", "--head", branch, "--title", title, "--body-file", body_file],
    ]


def open_pr(root: Path, branch: str, title: str, body: str) -> tuple[bool, list[str]]:
    """Push and open the PR with gh when it is installed; else the exact commands. A failing push
    or `gh pr create` is an error (with git's or gh's own message), never a silent success."""
    body_file = root / ".ftops" / "pr-body.md"
    body_file.parent.mkdir(parents=True, exist_ok=True)
    body_file.write_text(body, encoding="utf-8")
    commands = pr_commands(branch, title, str(body_file.relative_to(root)))
    printable = [" ".join(_quote(a) for a in c) for c in commands]
    if shutil.which("gh") is None:
        return False, printable
    for command, shown in zip(commands, printable, strict=True):
        done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False, timeout=300)
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise GitError(
                f"`{shown}` failed: {detail[-1] if detail else f'exit {done.returncode}'}",
                fix="the commit is on branch " + branch + "; fix the cause and run the printed commands",
            )
    return True, printable


def _quote(arg: str) -> str:
    return (
        arg
        if arg and all(c.isalnum() or c in "-_./:=@" for c in arg)
        else "'" + arg.replace("'", "'\\''") + "'"
    )
