"""Where the Pulumi CLI comes from: an installed one (PATH, ~/.pulumi/bin), else the one ftops built
earlier from `engine/` (a wrapper Go module pinning Pulumi's own modules), else build it now.

No package registry ships the CLI; the Go module proxy serves Pulumi's modules, so with Go the CLI
builds offline-from-the-internet in about 4 minutes on 2 cores. The build goes to a cache outside
the work tree, keyed by version, so `make clean` keeps it and a second set-up is instant.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ftops.errors import EngineError

PLUGIN = "pulumi-resource-pulumi-python"  # serves dynamic providers: `python -m pulumi.dynamic`
PKG = "github.com/pulumi/pulumi/pkg/v3"
SDK = "github.com/pulumi/pulumi/sdk/v3"
INSTALL_HINT = (
    "install the CLI with Pulumi's installer (https://www.pulumi.com/docs/install/), "
    "or install Go 1.26+ (https://go.dev/dl/) and run `ftops engine install`"
)


@dataclass(frozen=True)
class Engine:
    """A Pulumi CLI and the folder holding the dynamic-provider plugin (put first on PATH)."""

    cli: Path
    plugin_dir: Path
    source: str  # "installed" or "built"

    @property
    def root(self) -> Path:
        """What `PulumiCommand(root=...)` takes: a folder whose `bin/pulumi` is this CLI. A CLI that
        lives elsewhere (a version manager's shim, `/opt/pulumi/pulumi`) gets a link in the cache."""
        if self.cli.parent.name == "bin":
            return self.cli.parent.parent
        digest = hashlib.sha256(str(self.cli).encode()).hexdigest()[:16]
        linked = cache_dir() / "links" / digest
        link = linked / "bin" / "pulumi"
        if not link.is_symlink() or Path(os.readlink(link)) != self.cli:
            link.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            link.symlink_to(self.cli)
        return linked


def pinned_version(root: Path) -> str:
    """The CLI version engine/go.mod requires (the one place it is written)."""
    gomod = root / "engine" / "go.mod"
    try:
        text = gomod.read_text()
    except OSError as exc:
        raise EngineError(f"{gomod}: cannot read the pinned engine module ({exc.strerror})") from None
    found = re.search(rf"^\s*(?:require\s+)?{re.escape(PKG)}\s+(v[0-9][^\s]*)", text, re.MULTILINE)
    if found is None:
        raise EngineError(f"{gomod}: requires no {PKG}", fix="restore engine/go.mod from git")
    return found.group(1)


def cache_dir() -> Path:
    if os.environ.get("FTOPS_ENGINE_CACHE"):
        return Path(os.environ["FTOPS_ENGINE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ftops" / "engine"


def built_dir(root: Path) -> Path:
    return cache_dir() / f"pulumi-{pinned_version(root)}"


def _installed() -> Path | None:
    on_path = shutil.which("pulumi")
    for candidate in (on_path, str(Path.home() / ".pulumi" / "bin" / "pulumi")):
        if candidate and os.access(candidate, os.X_OK) and Path(candidate).is_file():
            return Path(candidate).absolute()
    return None


def find(root: Path) -> Engine | None:
    """The CLI to use, or None when there is none yet."""
    cli = _installed()
    if cli is not None:
        # Pulumi's installer ships the plugin beside the CLI; a package manager's may put it on PATH.
        beside = cli.parent / PLUGIN
        target = cli.resolve().parent / PLUGIN  # beside what a symlinked CLI points at
        plugin = next((p for p in (beside, target) if p.exists()), Path(shutil.which(PLUGIN) or beside))
        if not plugin.exists():
            with contextlib.suppress(EngineError):
                ours = built_dir(root) / "bin" / PLUGIN
                plugin = ours if ours.exists() else beside
        return Engine(cli=cli, plugin_dir=plugin.parent, source="installed")
    try:
        ours = built_dir(root) / "bin"
    except EngineError:
        return None  # no engine/go.mod here: nothing built for this repository
    if (ours / "pulumi").is_file() and (ours / PLUGIN).is_file():
        return Engine(cli=ours / "pulumi", plugin_dir=ours, source="built")
    return None


def require(root: Path) -> Engine:
    engine = find(root)
    if engine is None:
        raise EngineError(f"no Pulumi CLI found (PATH, ~/.pulumi/bin, {built_dir(root)})", fix=INSTALL_HINT)
    if not (engine.plugin_dir / PLUGIN).exists():
        raise EngineError(
            f"the Pulumi CLI at {engine.cli} has no {PLUGIN} beside it or on PATH "
            "(it serves the dynamic providers)",
            fix="reinstall it with Pulumi's installer, which ships the plugin",
        )
    return engine


def build(root: Path, say: Callable[[str], None]) -> Engine:
    """Build the pinned CLI from Pulumi's Go modules into the cache; the plugin script beside it."""
    go = shutil.which("go")
    version = pinned_version(root)
    dest = built_dir(root)
    if go is None:
        raise EngineError(
            f"no Pulumi CLI found (PATH, ~/.pulumi/bin, {dest}) and no Go to build one", fix=INSTALL_HINT
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=dest.parent))
    log = work / "build.log"
    # -mod=readonly: go.sum pins every module hash; a build never edits engine/go.mod or go.sum.
    env = {**os.environ, "GOFLAGS": "-mod=readonly", "GOTOOLCHAIN": "local"}
    say(
        f"engine: building pulumi {version} from Pulumi's Go modules (first run only; about 4 min on 2 cores)"
    )
    started = time.monotonic()
    try:
        (work / "bin").mkdir()
        with log.open("w") as sink:
            subprocess.run(
                [
                    go,
                    "build",
                    "-trimpath",
                    "-ldflags",
                    f"-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version={version}",
                    "-o",
                    str(work / "bin" / "pulumi"),
                    f"{PKG}/cmd/pulumi",
                ],
                cwd=root / "engine",
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                check=True,
            )
            sdk = subprocess.run(
                [go, "list", "-m", "-f", "{{.Dir}}", SDK],
                cwd=root / "engine",
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        plugin = work / "bin" / PLUGIN
        shutil.copyfile(Path(sdk) / "python" / "dist" / PLUGIN, plugin)
        plugin.chmod(0o755)
    except (subprocess.CalledProcessError, OSError) as exc:
        tail = (
            " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
            if log.exists()
            else str(exc)
        )
        shutil.rmtree(work, ignore_errors=True)
        raise EngineError(f"building pulumi {version} failed: {tail}", fix=INSTALL_HINT) from None
    except KeyboardInterrupt:
        shutil.rmtree(work, ignore_errors=True)  # no half-built folder left in the cache
        raise
    log.unlink()
    # Rename into place: a build killed half-way never leaves a CLI that looks complete. A build
    # that finished first in another process wins; this one is thrown away.
    try:
        work.rename(dest)
    except OSError:
        shutil.rmtree(work, ignore_errors=True)
        if not (dest / "bin" / "pulumi").is_file():
            raise EngineError(f"could not move the built CLI into {dest}", fix=INSTALL_HINT) from None
    size = (dest / "bin" / "pulumi").stat().st_size // 1_000_000
    say(f"engine: built pulumi {version} in {time.monotonic() - started:.0f} s ({size} MB) into {dest}")
    return Engine(cli=dest / "bin" / "pulumi", plugin_dir=dest / "bin", source="built")


def ensure(root: Path, say: Callable[[str], None]) -> Engine:
    """The CLI, building it when there is none; says in one line what it used or did."""
    if find(root) is None:
        return build(root, say)
    engine = require(root)
    say(f"engine: using the {engine.source} Pulumi CLI {engine.cli}")
    return engine
