"""How long the Pulumi program takes to build an environment's plan, against a one-resource floor.

    python bench/bench_program.py [--stack prod] [--repeats 7]

Runs `infra/__main__.py` under `pulumi.runtime.set_mocks` (every resource registered, every
output resolved, as in `pulumi preview` minus the engine) and, in the same process and with the
same mocks, a minimal program that declares one resource group: the floor, the cost of the
Pulumi runtime itself. Both run once to warm imports, then `--repeats` times; the medians are
compared. Figures are appended to bench/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import runpy
import statistics
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import pulumi
import pulumi_azure_native as an
from pulumi.runtime import settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from _common import REPO, append_section, arg_parser, machine
from ftops.config.load import read_stack_node
from ftops.config.yamlfiles import plain
from ftops.program import load_stack_environment


class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.count = 0

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.count += 1
        outputs = dict(args.inputs)
        arm_id = f"/subscriptions/s/resourceGroups/rg/providers/x/{args.name}"
        outputs.setdefault("id", arm_id)
        outputs.setdefault("name", args.name)
        if args.typ == "azure-native:cognitiveservices:Account":
            outputs["properties"] = {
                **outputs.get("properties", {}),
                "endpoint": "https://x.openai.azure.com/",
            }
        if args.typ == "azure-native:storage:StorageAccount":
            outputs["primaryEndpoints"] = {"blob": "https://x.blob.core.windows.net/"}
        if "candidate_model" in outputs:
            outputs.update(model=outputs["candidate_model"], evidence_digest="sha256:" + "0" * 64)
        if "base_model" in outputs:
            model = f"{outputs['base_model']}.ft-{args.name}"
            outputs.update(job_id=f"ftjob-{args.name}", fine_tuned_model=model, model=model)
        if "purpose" in outputs:
            outputs.update(file_id=f"file-{args.name}")
        return arm_id, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


def run_once(stack: str, config: dict[str, Any], program: Callable[[], None]) -> tuple[float, int]:
    mocks = Mocks()
    settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project="ftops", stack=stack, preview=True)
    pulumi.runtime.set_all_config({"ftops:environment": json.dumps(config)})
    started = time.perf_counter()
    _sync_await(run_pulumi_func(program))
    root = settings.get_root_resource()
    if root is not None:
        _sync_await(pulumi.Output.from_input(dict(root.outputs)).future())  # type: ignore[attr-defined]
    return time.perf_counter() - started, mocks.count


def full_program() -> None:
    runpy.run_path(str(REPO / "infra" / "__main__.py"), run_name="__main__")


def floor_program() -> None:
    group = an.resources.ResourceGroup(
        "resource-group", resource_group_name="rg-floor", location="swedencentral"
    )
    pulumi.export("name", group.name)


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    os.chdir(REPO)
    config = plain(read_stack_node(REPO, args.stack))
    runs: dict[str, list[float]] = {"program": [], "floor": []}
    counts: dict[str, int] = {}
    for name, program in (("program", full_program), ("floor", floor_program)):
        run_once(args.stack, config, program)  # warm: imports, pydantic schemas, provider modules
        for _ in range(args.repeats):
            seconds, counts[name] = run_once(args.stack, config, program)
            runs[name].append(seconds)
    validate: list[float] = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        load_stack_environment(REPO, args.stack, config)
        validate.append(time.perf_counter() - started)
    validate_s = statistics.median(validate)
    program_s, floor_s = statistics.median(runs["program"]), statistics.median(runs["floor"])
    ratio = program_s / floor_s
    per_resource_ms = 1000 * (program_s - floor_s) / max(counts["program"] - 1, 1)
    lines = [
        f"Machine: {machine()}, pulumi "
        f"{version('pulumi')}, pulumi-azure-native {version('pulumi-azure-native')}; medians of "
        f"{args.repeats} warm runs in one process.",
        "",
        "| program | resources | median seconds | min | max |",
        "|---|---:|---:|---:|---:|",
        f"| `infra/__main__.py`, stack {args.stack} | {counts['program']} | {program_s:.3f} | "
        f"{min(runs['program']):.3f} | {max(runs['program']):.3f} |",
        f"| floor: one resource group | {counts['floor']} | {floor_s:.3f} | {min(runs['floor']):.3f} | "
        f"{max(runs['floor']):.3f} |",
        "",
        f"- program / floor = {ratio:.1f}; {per_resource_ms:.1f} ms per extra resource "
        "(validation of the environment, the promotion chain and every component included)",
        f"- of which validating the environment (YAML of every environment for line numbers and the "
        f"promotion chain, pydantic): {validate_s:.3f} s; the rest is declaring resources and the Pulumi "
        "runtime resolving their outputs",
        "",
    ]
    title = f"program: build the `{args.stack}` plan under mocks"
    print(append_section(args.results, title, "\n".join(lines)))


if __name__ == "__main__":
    main()
