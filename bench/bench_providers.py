"""Count the HTTP calls ftops' providers make against the emulator, next to a naive provider.

    python bench/bench_providers.py [--models 20]

Drives the providers through `python -m pulumi.dynamic` (as the engine does) against a fresh
emulator (tiny stand-in model) and reads the emulator's request counter:
(a) a no-change refresh + diff of N models (a training file, a job and a deployment each):
    calls per resource (target <= 1.0);
(b) create after a crash mid-wait: the calls the re-run makes beyond the waiting it would do
    anyway (target <= 3);
(c) the same no-change run with a naive provider that re-lists everything on every read (jobs,
    files, deployments, then picks its own), as the ratio naive / ours.
Figures are appended to bench/RESULTS.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import threading
import time
from typing import Any

import httpx2 as httpx

from _common import HERE, KEY, OUT, REPO, append_section, arg_parser, emulator
from _common import target as emulator_target
from ftops.azure.connection import Target
from ftops.providers.deployments import ModelDeploymentProvider
from ftops.providers.files import TrainingFileProvider
from ftops.providers.jobs import FineTuningJobProvider
from ftops.providers.spec import sha256_file, spec_hash
from naive_providers import NaiveDeploymentProvider, NaiveFileProvider, NaiveJobProvider

# isort: split
# Only after _common, which puts the repository root on sys.path (isort would sort `tests` first).
from tests.provider_host import DynamicHost, HostError


def counts(url: str, reset: bool = False) -> dict[str, Any]:
    response = httpx.request("DELETE" if reset else "GET", f"{url}/admin/requests", headers={"api-key": KEY})
    return dict(response.json())


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--models", type=int, default=20)
    args = parser.parse_args()
    out = OUT / f"providers-{os.getpid()}"
    out.mkdir(parents=True, exist_ok=True)
    data = out / "train.jsonl"
    lines = (REPO / "data" / "support-bot" / "train.jsonl").read_text().splitlines()[:12]
    data.write_text("\n".join(lines) + "\n")
    os.environ["FTOPS_EMULATOR_KEY"] = KEY
    # The provider host (a subprocess) unpickles the naive providers by reference, as module
    # `naive_providers`: it needs bench/ on its path as well.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    # Unwound in reverse: the provider host closes, then the emulator stops, then its data goes.
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, out, ignore_errors=True)
        url = cleanup.enter_context(emulator(out / "emulator", OUT / "models"))

        host = DynamicHost()
        cleanup.callback(host.close)
        print(f"creating {args.models} models (file, job, deployment each) ...", flush=True)
        resources: list[tuple[Any, Any, str, dict[str, Any]]] = []
        for i in range(args.models):
            # Azure allows five fine-tuned deployments per resource (so does the emulator).
            target = emulator_target(url, f"bench{i // 5}")
            file_props = {
                "target": target,
                "path": str(data),
                "digest": sha256_file(str(data)),
                "purpose": "fine-tune",
            }
            file_id, file_outs = host.create(TrainingFileProvider(), file_props)
            job_props = {
                "target": target,
                "name": f"m{i}",
                "base_model": "tiny-test",
                "training_file": file_id,
                "training_digest": file_outs["digest"],
                "validation_file": None,
                "validation_digest": None,
                "method": {"type": "supervised", "hyperparameters": {"n_epochs": 1}},
                "seed": i,
                "suffix": None,
                "training_type": None,
                "checkpoint": "final",
                "wait_timeout_minutes": 30,
                "attempt": 0,
                "retain": True,
                "protected_models": [],
            }
            job_id, job_outs = host.create(FineTuningJobProvider(), job_props)
            dep_props = {
                "target": target,
                "deployment_name": f"m{i}",
                "model": {"name": job_outs["model"], "version": "1"},
                "sku": {"name": "GlobalStandard", "capacity": 1},
                "rai_policy": "Microsoft.DefaultV2",
                "version_upgrade_option": "NoAutoUpgrade",
            }
            dep_id, dep_outs = host.create(ModelDeploymentProvider(), dep_props)
            resources += [
                (TrainingFileProvider(), NaiveFileProvider(), file_id, file_outs),
                (FineTuningJobProvider(), NaiveJobProvider(), job_id, job_outs),
                (ModelDeploymentProvider(), NaiveDeploymentProvider(), dep_id, dep_outs),
            ]

        def refresh_and_diff(naive: bool) -> int:
            counts(url, reset=True)
            for ours, theirs, id_, outs in resources:
                provider = theirs if naive else ours
                _, refreshed = host.read(provider, id_, outs)
                diff = host.diff(provider, id_, refreshed or outs, outs)
                if diff.changes == diff.DIFF_SOME:
                    raise RuntimeError(f"{id_}: a no-change diff found changes")
            return int(counts(url)["total"])

        ours_calls = refresh_and_diff(naive=False)
        naive_calls = refresh_and_diff(naive=True)
        per_resource = ours_calls / len(resources)

        print("crash mid-wait, then re-run ...", flush=True)
        crash_props = dict(
            job_props,
            name="crash",
            seed=999,
            method={"type": "supervised", "hyperparameters": {"n_epochs": 8}},
        )
        spec = spec_hash(crash_props)
        victim = DynamicHost()

        def create_then_die() -> None:
            with contextlib.suppress(HostError):
                victim.create(FineTuningJobProvider(), crash_props, timeout=600)

        thread = threading.Thread(target=create_then_die, daemon=True)
        thread.start()
        client = Target.of({"target": target}).client()  # the last models' account
        while True:
            jobs = [
                j
                for j in client.fine_tuning.jobs.list(limit=100)
                if (j.metadata or {}).get("ftops-spec") == spec
            ]
            if jobs and any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(jobs[0].id)):
                break
            time.sleep(0.1)
        victim.kill()
        thread.join()
        counts(url, reset=True)
        rerun = DynamicHost()
        try:
            rerun.create(FineTuningJobProvider(), crash_props)
        finally:
            rerun.close()
        after_crash = counts(url)["requests"]
        waiting = {
            k: v
            for k, v in after_crash.items()
            if re.fullmatch(
                r"GET /accounts/bench\d+/openai/v1/fine_tuning/jobs/ftjob-\*(/events|/checkpoints)?", k
            )
        }
        extra = {k: v for k, v in after_crash.items() if k not in waiting}
        extra_calls = sum(extra.values())
        jobs_for_spec = [
            j for j in client.fine_tuning.jobs.list(limit=100) if (j.metadata or {}).get("ftops-spec") == spec
        ]

    ok_a, ok_b = per_resource <= 1.0, extra_calls <= 3
    extra_text = ", ".join(f"{k} x{v}" for k, v in extra.items()) or "none"
    rows = [
        f"| (a) no-change refresh + diff, ftops providers | {ours_calls} | {per_resource:.2f} |",
        "| (c) the same with a naive provider (re-lists jobs, files, deployments on every read) "
        f"| {naive_calls} | {naive_calls / len(resources):.2f} |",
    ]
    body = "\n".join(
        [
            f"{args.models} models, each a TrainingFile, a FineTuningJob and a ModelDeployment "
            f"({len(resources)} resources), driven through `python -m pulumi.dynamic`; calls counted by the "
            "emulator.",
            "",
            "| run | calls | per resource |",
            "|---|---:|---:|",
            *rows,
            "",
            f"- (a) {per_resource:.2f} calls per resource (target <= 1.0: {'met' if ok_a else 'MISSED'})",
            f"- (b) create after a crash mid-wait: {extra_calls} extra call(s) to resume ({extra_text}), "
            f"besides polling the job it adopted; jobs for that spec afterwards: {len(jobs_for_spec)} "
            f"(target <= 3: {'met' if ok_b else 'MISSED'})",
            f"- (c) naive / ours = {naive_calls / ours_calls:.1f}",
            "",
        ]
    )
    print(append_section(args.results, "providers: HTTP calls against the emulator", body))
    print(
        json.dumps(
            {
                "per_resource": per_resource,
                "extra_after_crash": extra_calls,
                "naive_over_ours": naive_calls / ours_calls,
            }
        )
    )
    if not (ok_a and ok_b):
        sys.exit(1)


if __name__ == "__main__":
    main()
