"""The README guarded by tests, as sqlite-utils guards its documentation.

- Every command and every option or argument of the CLI has help text and an entry in the README's
  "Command reference", and that reference names nothing the CLI does not have.
- Every key of the environment schema (`ftops env schema`) and of a release file is a row of the
  README's "Environment reference", and every row there is a key of the schema.
- Every shell block of the README either runs here (offline, in seconds) and exits as it says,
  or is marked as skipped with the reason, on the line before its opening fence:
  `<!-- docs-test: run -->`, `<!-- docs-test: run (exit 1) -->` or
  `<!-- docs-test: skip (why it cannot run here) -->`. In a `console` block, the `$ ` lines are
  the commands and the lines after each are its exact output.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pytest
import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption
from typer.testing import CliRunner

from ftops.cli import app
from ftops.config.schema import Releases
from tests.conftest import REPO

README = REPO / "README.md"

# ---------------------------------------------------------------- the README's sections


def section(title: str, text: str | None = None) -> str:
    """The text of the `## title` section, up to the next `## ` heading."""
    text = README.read_text() if text is None else text
    parts = re.split(rf"^## {re.escape(title)}\n", text, flags=re.MULTILINE)
    if len(parts) != 2:
        raise AssertionError(f"README.md needs exactly one '## {title}' section")
    return re.split(r"^## ", parts[1], maxsplit=1, flags=re.MULTILINE)[0]


# ---------------------------------------------------------------- commands and options


Param = TyperOption | TyperArgument


@dataclass(frozen=True)
class Command:
    path: str  # "ftops env check"
    command: TyperCommand | TyperGroup


def cli_commands() -> list[Command]:
    """Every command and group of the CLI, the root `ftops` first, as click builds them."""

    def walk(command: TyperCommand | TyperGroup, path: str) -> Iterator[Command]:
        yield Command(path, command)
        if isinstance(command, TyperGroup):
            for name, sub in command.commands.items():
                assert isinstance(sub, TyperCommand | TyperGroup), f"{path} {name}: {type(sub)}"
                yield from walk(sub, f"{path} {name}")

    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    return list(walk(root, "ftops"))


def params(command: Command) -> list[Param]:
    found = []
    for param in command.command.params:
        assert isinstance(param, TyperOption | TyperArgument), f"{command.path}: {param!r}"
        found.append(param)
    return found


def param_names(param: Param) -> list[str]:
    """How the reference names it: every spelling of an option, the upper-case name of an argument."""
    if isinstance(param, TyperArgument):
        return [str(param.name).upper()]
    return [*param.opts, *param.secondary_opts]


COMMANDS = cli_commands()
PARAMS = [(c, p) for c in COMMANDS for p in params(c)]


def param_id(command: Command, param: Param) -> str:
    return f"{command.path} {param_names(param)[0]}"


HEADING = re.compile(r"^### `(ftops(?: [a-z][a-z0-9-]*)*)(?: [^`]*)?`$")
ITEM = re.compile(r"^- `(?P<lead>[^`]+)`(?P<required> \(required\))?: (?P<meaning>\S.*)$")
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
ARGUMENT = re.compile(r"^(?P<name>[A-Z][A-Z0-9_]*)(?:\.\.\.)?$")


@dataclass
class Entry:
    """One command's entry in the Command reference: its heading and its option/argument items."""

    description: list[str] = field(default_factory=list)
    items: dict[str, tuple[str, bool]] = field(default_factory=dict)  # name -> (meaning, required)


def reference_entries(text: str) -> dict[str, Entry]:
    entries: dict[str, Entry] = {}
    current: Entry | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("### "):
            heading = HEADING.match(line)
            assert heading, f"Command reference line {number}: not a '### `ftops ...`' heading: {line}"
            assert heading[1] not in entries, f"Command reference: {heading[1]} has two entries"
            current = entries[heading[1]] = Entry()
        elif line.startswith("- `") and current is not None:
            item = ITEM.match(line)
            assert item, f"Command reference line {number}: not '- `--option VALUE`: meaning': {line}"
            lead = item["lead"]
            argument = ARGUMENT.match(lead)
            names = [argument["name"]] if argument else OPTION.findall(lead)
            assert names, f"Command reference line {number}: names no option or argument: {line}"
            for name in names:
                current.items[name] = (item["meaning"], item["required"] is not None)
        elif current is not None and line.strip() and not current.items:
            current.description.append(line)
    return entries


@cache
def readme_commands() -> dict[str, Entry]:
    return reference_entries(section("Command reference"))


def test_the_walk_reaches_every_level_of_the_cli() -> None:
    paths = {c.path for c in COMMANDS}
    assert {
        "ftops",
        "ftops up",
        "ftops env check",
        "ftops emulator selftest",
        "ftops engine install",
    } <= paths
    up = next(c for c in COMMANDS if c.path == "ftops up")
    assert "--break-lock" in [n for p in params(up) for n in param_names(p)]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.path)
def test_command_has_help(command: Command) -> None:
    assert (command.command.help or "").strip(), f"`{command.path}` has no help text (docstring or help=)"


@pytest.mark.parametrize(("command", "param"), PARAMS, ids=[param_id(c, p) for c, p in PARAMS])
def test_option_has_help(command: Command, param: Param) -> None:
    assert (param.help or "").strip(), f"`{param_id(command, param)}` has no help= text"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.path)
def test_command_is_in_the_readme(command: Command) -> None:
    entry = readme_commands().get(command.path)
    assert entry is not None, f"README.md, Command reference: no '### `{command.path} ...`' entry"
    assert entry.description, f"README.md, Command reference: `{command.path}` says nothing about itself"


@pytest.mark.parametrize(("command", "param"), PARAMS, ids=[param_id(c, p) for c, p in PARAMS])
def test_option_is_in_the_readme(command: Command, param: Param) -> None:
    entry = readme_commands().get(command.path, Entry())
    for name in param_names(param):
        assert name in entry.items, f"README.md, Command reference: `{command.path}` does not list {name}"
        _, required = entry.items[name]
        assert required == param.required, (
            f"README.md, Command reference: `{command.path} {name}` is "
            f"{'' if param.required else 'not '}required; the entry says otherwise"
        )


def documented_commands() -> list[tuple[str, str | None]]:
    """Each (command, option or argument) the README documents; (command, None) for the command."""
    return [(path, name) for path, entry in readme_commands().items() for name in [None, *entry.items]]


@pytest.mark.parametrize(
    ("path", "name"),
    documented_commands(),
    ids=[" ".join(filter(None, pair)) for pair in documented_commands()],
)
def test_readme_documents_only_what_the_cli_has(path: str, name: str | None) -> None:
    command = next((c for c in COMMANDS if c.path == path), None)
    assert command is not None, f"README.md, Command reference: `{path}` is not a command"
    if name is not None:
        assert name in [n for p in params(command) for n in param_names(p)], (
            f"README.md, Command reference: `{path}` has no {name}"
        )


# ---------------------------------------------------------------- environment keys


def key_paths(schema: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """Every key path of a JSON Schema, as `models.<name>.method.type`: `<name>` for the keys of a
    map, `[]` for the items of a list; variants of a union are merged. Each path maps to the
    allowed keys when it is a map whose keys are a fixed set (they are listed in its row)."""
    defs = schema.get("$defs", {})
    paths: dict[str, tuple[str, ...]] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        if "$ref" in node:
            walk(defs[node["$ref"].rsplit("/", 1)[1]], prefix)
        for union in ("anyOf", "oneOf", "allOf"):
            for variant in node.get(union, []):
                walk(variant, prefix)
        for key, sub in node.get("properties", {}).items():
            path = f"{prefix}.{key}" if prefix else key
            paths.setdefault(path, ())
            walk(sub, path)
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{prefix}[]")
        for sub in node.get("patternProperties", {}).values():
            walk(sub, f"{prefix}.<name>")
        values = node.get("additionalProperties")
        if isinstance(values, dict):
            keys = node.get("propertyNames", {}).get("enum")
            if keys:
                paths[prefix] = tuple(keys)
            walk(values, f"{prefix}.<name>")

    walk(schema, "")
    return paths


@cache
def schema_keys() -> dict[str, tuple[str, ...]]:
    """The keys of `ftops:environment` (what `ftops env schema` prints) and of a release file."""
    result = CliRunner().invoke(app, ["env", "schema"])
    assert result.exit_code == 0, result.output
    keys = key_paths(json.loads(result.stdout))
    releases = key_paths(Releases.model_json_schema(by_alias=True))
    assert not set(keys) & set(releases), "the stack file and the release file share a key"
    return {**keys, **releases}


ROW = re.compile(r"^\| `(?P<key>[^`]+)` \| (?P<meaning>.*\S) \|$")


def reference_rows(text: str) -> dict[str, str]:
    """key path -> its row, from the tables of a section; `<model>`-style placeholders as `<name>`."""
    rows: dict[str, str] = {}
    for line in text.splitlines():
        row = ROW.match(line)
        if row:
            key = re.sub(r"<[^>]+>", "<name>", row["key"])
            assert key not in rows, f"README.md, Environment reference: `{key}` is listed twice"
            rows[key] = row["meaning"]
    return rows


@cache
def readme_keys() -> dict[str, str]:
    return reference_rows(section("Environment reference"))


def test_the_schema_walk_reaches_unions_lists_and_maps() -> None:
    keys = schema_keys()
    for key in (
        "promotion.from",  # an alias
        "models.<name>.method.hyperparameters.beta",  # one variant of a discriminated union
        "models.<name>.method.grader",
        "gates.<name>.quality[].grader",  # the items of a list
        "account.rai_policy.filters[].severity_threshold",  # optional, then a list
        "releases.<name>.evidence_digest",  # the release file
    ):
        assert key in keys
    assert keys["storage.containers"] == ("training", "evidence", "audit")


@pytest.mark.parametrize("key", sorted(schema_keys()))
def test_environment_key_is_documented(key: str) -> None:
    meaning = readme_keys().get(key)
    assert meaning is not None, f"README.md, Environment reference: no row for `{key}`"
    for allowed in schema_keys()[key]:
        assert f"`{allowed}`" in meaning, f"README.md, Environment reference: `{key}` omits `{allowed}`"


@pytest.mark.parametrize("key", sorted(readme_keys()))
def test_documented_key_exists(key: str) -> None:
    assert key in schema_keys(), f"README.md, Environment reference: `{key}` is not a key of the schema"


# ---------------------------------------------------------------- shell blocks


SHELLS = {"bash", "sh", "shell", "console"}
FENCE = re.compile(r"^```(\S*)\s*$")
MARKER = re.compile(r"^<!-- docs-test: (?P<plan>.*?) -->$")
PLAN = re.compile(r"^(?:run(?: \(exit (?P<exit>\d+)\))?|skip \((?P<reason>[^)]+)\))$")
SHELL_SYNTAX = {"|", "||", "&&", ";", ">", ">>", "<", "2>", "&"}


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence
    lang: str
    body: tuple[str, ...]
    marker: str | None  # the docs-test marker on the line before the fence

    @property
    def id(self) -> str:
        first = next((line.strip() for line in self.body if line.strip()), "")
        return f"L{self.line} {self.lang or 'plain'}: {first[:50]}"


@dataclass(frozen=True)
class Plan:
    exit: int | None  # run, expecting this exit code
    reason: str | None  # skipped, for this reason


def parse_plan(marker: str) -> Plan | None:
    plan = PLAN.match(marker)
    if plan is None:
        return None
    if plan["reason"]:
        return Plan(None, plan["reason"])
    return Plan(int(plan["exit"] or 0), None)


@dataclass(frozen=True)
class Step:
    argv: tuple[str, ...]
    output: tuple[str, ...] | None  # the exact lines a console block shows after the command


def fenced_blocks(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].rstrip() == "```"), None)
        assert end is not None, f"README.md:{i + 1}: a fenced block that never closes"
        marker = MARKER.match(lines[i - 1].strip()) if i else None
        blocks.append(Block(i + 1, fence[1], tuple(lines[i + 1 : end]), marker["plan"] if marker else None))
        i = end + 1
    return blocks


def steps(block: Block) -> list[Step]:
    """The commands of a block, each with the output a console block shows for it."""
    if block.lang == "console":
        found: list[tuple[str, list[str]]] = []
        for line in block.body:
            if line.startswith("$ "):
                found.append((line[2:], []))
            else:
                assert found, f"README.md:{block.line}: output before the first `$ ` command"
                found[-1][1].append(line.rstrip())
        return [Step(tuple(shlex.split(command, comments=True)), tuple(out)) for command, out in found]
    joined = "\n".join(block.body).replace("\\\n", " ")
    commands = [shlex.split(line, comments=True) for line in joined.splitlines()]
    return [Step(tuple(argv), None) for argv in commands if argv]


def test_block_parsing() -> None:
    text = "\n".join(
        [
            "<!-- docs-test: run (exit 1) -->",
            "```bash",
            "ftops validate x.jsonl \\",
            "  --format json   # a comment",
            "",
            "ftops version",
            "```",
            "<!-- docs-test: skip (needs Azure) -->",
            "```console",
            "$ ftops up --env dev",
            "up: stack dev: no changes",
            "```",
            "```sh",
            "make up",
            "```",
        ]
    )
    run, skipped, unmarked = fenced_blocks(text)
    assert (run.line, run.lang, run.marker) == (2, "bash", "run (exit 1)")
    assert parse_plan(run.marker or "") == Plan(1, None)
    assert steps(run) == [
        Step(("ftops", "validate", "x.jsonl", "--format", "json"), None),
        Step(("ftops", "version"), None),
    ]
    assert parse_plan(skipped.marker or "") == Plan(None, "needs Azure")
    assert steps(skipped) == [Step(("ftops", "up", "--env", "dev"), ("up: stack dev: no changes",))]
    assert unmarked.marker is None
    assert parse_plan("run") == Plan(0, None)
    assert parse_plan("run later") is None
    assert parse_plan("skip") is None  # a skip names its reason


BLOCKS = fenced_blocks(README.read_text())
SHELL_BLOCKS = [b for b in BLOCKS if b.lang in SHELLS]


def test_every_marker_is_on_the_line_before_a_block() -> None:
    lines = README.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        if "docs-test:" in line:
            assert MARKER.match(line.strip()), f"README.md:{number}: not '<!-- docs-test: ... -->'"
            following = lines[number] if number < len(lines) else ""
            assert FENCE.match(following), f"README.md:{number}: a docs-test marker with no block under it"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang not in SHELLS], ids=lambda b: b.id)
def test_commands_are_only_in_shell_blocks(block: Block) -> None:
    """A command in a plain or yaml block would escape the checks below: tag it bash or console."""
    assert block.marker is None, (
        f"README.md:{block.line}: a docs-test marker on a {block.lang or 'plain'} block"
    )
    commands = [line for line in block.body if re.match(r"^(\$ |ftops |make |pulumi |az )", line)]
    assert not commands, f"README.md:{block.line}: commands in an untagged block: {commands}"


def offline_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("FTOPS_ROOT", None)  # the README's commands run from the repository's root
    return env


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=lambda b: b.id)
def test_readme_block(block: Block) -> None:
    assert block.marker is not None, (
        f"README.md:{block.line}: a {block.lang} block neither run nor skipped: put "
        "'<!-- docs-test: run -->' or '<!-- docs-test: skip (reason) -->' on the line before it"
    )
    plan = parse_plan(block.marker)
    assert plan is not None, (
        f"README.md:{block.line - 1}: '{block.marker}' is not 'run', 'run (exit N)' or 'skip (reason)'"
    )
    if plan.exit is None:
        pytest.skip(f"README.md:{block.line}: {plan.reason}")
    expected = plan.exit
    block_steps = steps(block)
    assert block_steps, f"README.md:{block.line}: a block to run with no command in it"
    for step in block_steps:
        shown = shlex.join(step.argv)
        assert step.argv[0] == "ftops", f"README.md:{block.line}: only ftops commands run here: {shown}"
        assert not SHELL_SYNTAX & set(step.argv), f"README.md:{block.line}: shell syntax in {shown}"
        proc = subprocess.run(
            [sys.executable, "-m", "ftops", *step.argv[1:]],
            cwd=REPO,
            env=offline_env(),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
        assert proc.returncode == expected, (
            f"README.md:{block.line}: `{shown}` exited {proc.returncode}, the README says {expected}\n"
            f"{proc.stderr[-2000:]}"
        )
        if step.output is not None:
            assert [line.rstrip() for line in proc.stdout.splitlines()] == list(step.output), (
                f"README.md:{block.line}: `{shown}` prints otherwise than the README shows"
            )
