"""The evidence record in the forms people read: markdown for PR comments and the terminal, JUnit
XML for CI test reports. Both are rendered from the JSON record alone, so what a reviewer sees is
exactly what the digest covers."""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Any

from ftops.evaluation.usage import comparison


def digest_of(evidence: dict[str, Any]) -> tuple[str, bytes]:
    body = json.dumps(evidence, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(body).hexdigest(), body


def _f(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def markdown(evidence: dict[str, Any], digest: str) -> str:
    verdict = evidence["verdict"]
    policy = evidence["policy"]
    confidence = f"{policy['confidence']:.0%}"
    baseline = evidence.get("baseline") or {}
    lines = [
        f"### Gate `{evidence['gate']}`: {'✅ pass' if verdict == 'pass' else '❌ fail'}",
        "",
        f"Model `{evidence['model']}` on deployment `{evidence['deployment']}`"
        + (f" ({evidence['environment']})" if evidence.get("environment") else "")
        + f"; {policy['repeats']} repeat(s) at temperature {policy['temperature']:g}, seed {policy['seed']}.",
    ]
    if baseline.get("deployment"):
        lines.append(
            f"Baseline ({baseline['kind']}): `{baseline['model']}` on deployment `{baseline['deployment']}`."
        )
    else:
        lines.append(f"Baseline: none ({baseline.get('kind', 'none')}).")
    lines += [
        "",
        f"| check | grader | items × repeats | score | {confidence} interval | threshold | baseline "
        "| Δ | p | result |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for check in evidence["checks"]:
        s = check["summary"]
        base = s.get("baseline") or {}
        delta = f"{base['delta']:+.3f}" if base else ""
        p_value = f"{base['p_value']:.3f}" if base else ""
        lines.append(
            f"| {check['name']} ({s['metric']}) | {check['grader']} | {s['items']} × {policy['repeats']} "
            f"| {_f(s['pass_rate'])} | [{_f(s['low'])}, {_f(s['high'])}] | {_f(check['threshold'])} "
            f"| {_f(base.get('pass_rate'))} | {delta} | {p_value} "
            f"| {'pass' if s['passed'] else '**fail**'} |"
        )
    for check in evidence["checks"]:
        categories = check["summary"]["by_category"]
        if len(categories) > 1:
            lines += ["", f"`{check['name']}` by category:", ""]
            lines += ["| category | score |", "|---|---|"]
            lines += [f"| {name} | {_f(rate)} |" for name, rate in categories.items()]
    lines += usage_lines(evidence.get("usage"), baseline.get("kind", "none"))
    lines += checkpoint_lines(evidence.get("checkpoints"), confidence)
    if evidence["failures"]:
        lines += ["", "**Failures**", ""] + [f"- {failure}" for failure in evidence["failures"]]
    curve = (evidence.get("training") or {}).get("loss") or []
    if len(curve) >= 2:
        lines += [
            "",
            f"Training loss (job `{evidence['training'].get('job')}`):",
            "",
            "```mermaid",
            "xychart-beta",
            '    title "Training loss"',
            f'    x-axis "step" [{", ".join(str(step) for step, _ in curve)}]',
            '    y-axis "loss"',
            f"    line [{', '.join(f'{loss:.4f}' for _, loss in curve)}]",
            "```",
        ]
    lines += ["", f"Evidence `{digest}`."]
    return "\n".join(lines) + "\n"


def usage_lines(usage: dict[str, Any] | None, baseline_kind: str) -> list[str]:
    """Cost and latency per 1,000 requests of the candidate and its baseline, from this gate's own
    requests (records from before ftops measured them have none)."""
    if not usage or not usage.get("candidate"):
        return []
    sides = [("candidate", usage["candidate"])]
    if usage.get("baseline"):
        sides.append((f"baseline ({baseline_kind})", usage["baseline"]))
    checks = ", ".join(f"`{name}`" for name in usage.get("checks") or [])
    lines = [
        "",
        f"Cost and latency per 1,000 requests, measured on this gate's requests ({checks}):",
        "",
        "| | deployment | model | requests | tokens in / out per request | cost per 1k | latency mean "
        "| latency p95 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, row in sides:
        n = row["requests"] or 1
        cost = "n/a" if row.get("usd_per_1k") is None else f"${row['usd_per_1k']:,.4f}"
        lines.append(
            f"| {label} | `{row['deployment']}` | `{row['model']}` | {row['requests']} "
            f"| {row['prompt_tokens'] / n:.0f} / {row['completion_tokens'] / n:.0f} | {cost} "
            f"| {row['latency_mean_s']:.3f} s | {row['latency_p95_s']:.3f} s |"
        )
    said = comparison(usage["candidate"], usage["baseline"]) if usage.get("baseline") else None
    return lines + (["", said] if said else [])


def checkpoint_lines(selection: dict[str, Any] | None, confidence: str) -> list[str]:
    """The `best_eval` choice: each kept checkpoint's quality score, and why the one serving won."""
    if not selection:
        return []
    lines = [
        "",
        f"Checkpoints scored with the quality checks (best_eval): `{selection['chosen']['label']}` chosen.",
        "",
        f"| checkpoint | id | score | {confidence} interval | train loss | valid loss | p vs chosen "
        "| chosen |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in selection["candidates"]:
        lines.append(
            f"| {row['label']}{' (final)' if row['final'] else ''} | `{row.get('id') or ''}` "
            f"| {_f(row['score'])} | [{_f(row['low'])}, {_f(row['high'])}] | {_f(row.get('train_loss'))} "
            f"| {_f(row.get('valid_loss'))} | {row['p_vs_best']:.3f} "
            f"| {'**yes**' if row['label'] == selection['chosen']['label'] else ''} |"
        )
    return lines + [""] + [f"- {note}" for note in selection["notes"]]


def rows_by_item(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """A check's graded answers grouped by eval item, in the order they were recorded."""
    by_item: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in results:
        by_item[str(row["item"])].append(row)
    return by_item


def junit(evidence: dict[str, Any], digest: str) -> bytes:
    """One test suite per check: a test case per eval item (failed when any repeat failed) and one
    for the check's decision, so CI shows both what broke and whether the gate held."""
    suites = ET.Element("testsuites", name=f"ftops gate {evidence['gate']}")
    for check in evidence["checks"]:
        by_item = rows_by_item(check["results"])
        failed_items = sum(1 for rows in by_item.values() if not all(r["passed"] for r in rows))
        decision_failed = not check["summary"]["passed"]
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=check["name"],
            tests=str(len(by_item) + 1),
            failures=str(failed_items + int(decision_failed)),
        )
        properties = ET.SubElement(suite, "properties")
        for key in ("grader", "grader_version", "eval_set_digest"):
            ET.SubElement(properties, "property", name=key, value=str(check[key]))
        ET.SubElement(properties, "property", name="evidence", value=digest)
        for item, rows in by_item.items():
            case = ET.SubElement(
                suite, "testcase", classname=f"{check['name']}.{rows[0]['category']}", name=item
            )
            bad = [r for r in rows if not r["passed"]]
            if bad:
                failure = ET.SubElement(
                    case, "failure", message=f"{len(bad)}/{len(rows)} repeats failed: {bad[0]['detail']}"
                )
                failure.text = "\n".join(f"repeat {r['repeat']}: {r['answer'][:500]}" for r in bad)
        s = check["summary"]
        case = ET.SubElement(suite, "testcase", classname=check["name"], name="threshold")
        if decision_failed:
            ET.SubElement(
                case,
                "failure",
                message=f"{s['metric']} {s['pass_rate']:.3f} [{s['low']:.3f}, {s['high']:.3f}] "
                f"threshold {check['threshold']:.3f}",
            )
    return bytes(ET.tostring(suites, encoding="utf-8", xml_declaration=True))


def write(evidence: dict[str, Any], folder: Path) -> tuple[str, Path]:
    """<digest>.json (what the digest covers), .md and .junit.xml next to it."""
    digest, body = digest_of(evidence)
    folder.mkdir(parents=True, exist_ok=True)
    stem = digest.removeprefix("sha256:")
    path = folder / f"{stem}.json"
    path.write_bytes(body)
    (folder / f"{stem}.md").write_text(markdown(evidence, digest), encoding="utf-8")
    (folder / f"{stem}.junit.xml").write_bytes(junit(evidence, digest))
    return digest, path
