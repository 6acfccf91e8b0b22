"""The package's layering, computed from the source: no import cycle between its packages (and
top-level modules), and none reaching up to a layer above it. A new edge that breaks either
fails here with the modules that make it."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ftops"

# Lowest first. A unit may import units in its own layer or below, never above. The order is the
# architecture: the Azure edge below everything that talks to Azure, the environment (config)
# below what acts on it, Pulumi's providers and components above the logic they wrap, the
# engine and the program above those, and the CLI on top.
LAYERS: list[set[str]] = [
    {"__init__", "errors", "catalog", "tokenizer", "ratelimit"},
    {"azure", "dataset"},
    {"auditlog", "evaluation"},
    {"config"},
    {"cost"},
    {"emulator", "providers"},
    {"components", "bootstrap"},
    {"program", "engine"},
    {"gitops"},
    {"cli", "__main__"},
]


def unit_of(module: str) -> str:
    """`ftops.config.load` -> `config`: a package or a top-level module."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports() -> dict[tuple[str, str], list[str]]:
    """(from unit, to unit) -> the modules that make the edge, for every import in the source,
    including those inside functions (a lazy import is still a dependency)."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    targets.append(".".join([*base, *([node.module] if node.module else [])]))
                elif node.module and node.module.split(".")[0] == "ftops":
                    targets.append(node.module)
                    targets += [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets += [a.name for a in node.names if a.name.split(".")[0] == "ftops"]
            for target in targets:
                if "." not in target:
                    continue
                here, there = unit_of(module), unit_of(target)
                exists = (SRC / there).is_dir() or (SRC / f"{there}.py").is_file()
                if here != there and exists:
                    edges[(here, there)].append(f"{module} imports {target}")
    return edges


def cycles(edges: dict[tuple[str, str], list[str]]) -> list[list[str]]:
    """Strongly connected components of more than one unit (Tarjan)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_every_unit_of_the_package_has_a_layer() -> None:
    units = {p.stem for p in SRC.glob("*.py")} | {
        p.name for p in SRC.iterdir() if (p / "__init__.py").is_file()
    }
    placed = set().union(*LAYERS)
    assert units - placed == set(), "give each new package or top-level module a layer in LAYERS"
    assert placed - units == set(), "LAYERS names units that no longer exist"


def test_no_import_cycle_between_packages() -> None:
    edges = imports()
    found = cycles(edges)
    detail = [line for c in found for a in c for b in c for line in edges.get((a, b), [])[:3]]
    assert found == [], "\n".join(detail)


def test_no_module_imports_a_layer_above_its_own() -> None:
    layer = {unit: i for i, units in enumerate(LAYERS) for unit in units}
    upward = [
        line
        for (here, there), lines in sorted(imports().items())
        if layer[there] > layer[here]
        for line in lines
    ]
    assert upward == []


def test_the_graph_is_computed_from_real_imports() -> None:
    """The checks above would pass on an empty graph: make sure edges the code has are found."""
    edges = imports()
    assert ("providers", "azure") in edges
    assert ("cli", "engine") in edges
    assert ("config", "evaluation") in edges  # the grader registry and the gate request
    assert cycles({("a", "b"): ["x"], ("b", "a"): ["y"]}) == [["a", "b"]]


PROVIDERS = {
    "jobs": ("FineTuningJobArgs", "OUTPUTS"),
    "gate": ("EvaluationGateArgs", "OUTPUTS"),
    "deployments": ("ModelDeploymentArgs", "OUTPUTS"),
    "audit": ("AuditEntryArgs", None),
}


def keys_read(module: str) -> set[str]:
    """Every string key a provider reads from its properties: props["k"], news.get("k"), ..."""
    tree = ast.parse((SRC / "providers" / f"{module}.py").read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            holder, key = node.value.id, node.slice
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and isinstance(node.func.value, ast.Name)
            and node.args
        ):
            holder, key = node.func.value.id, node.args[0]
        else:
            continue
        if (
            holder in ("props", "news", "olds")
            and isinstance(key, ast.Constant)
            and isinstance(key.value, str)
        ):
            found.add(key.value)
    return found


@pytest.mark.parametrize("module", sorted(PROVIDERS))
def test_a_provider_reads_only_keys_its_args_declare(module: str) -> None:
    """The wire names come from the Args dataclass: a key a provider reads that the component
    never writes (a typo, a renamed field) fails here, not in a `pulumi up`."""
    from dataclasses import fields
    from importlib import import_module

    from ftops.evaluation.request import GateRequest

    args_name, outputs_name = PROVIDERS[module]
    args = getattr(import_module("ftops.providers.args"), args_name)
    declared = {f.name for f in fields(args)} - {"request"}
    if args_name == "EvaluationGateArgs":
        declared |= {f.name for f in fields(GateRequest)} | {"seed"}
    provider = import_module(f"ftops.providers.{module}")
    outputs = set(getattr(provider, outputs_name)) if outputs_name else {"seq"}
    read = keys_read(module)
    assert read, "the provider's reads were not found: the check would pass on nothing"
    assert read - declared - outputs == set()
