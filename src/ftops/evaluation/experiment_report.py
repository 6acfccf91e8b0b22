"""The report of an experiment: a table of variants (score, interval, billed tokens, cost, the
decision), the learning curve (score against data fraction with intervals, and what doubling the
data would gain, extrapolated), and each variant's training and validation loss with an
overfitting flag. JSON for machines, markdown for the PR comment and job summary, PNG charts.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from ftops.errors import UsageError
from ftops.evaluation.selection import Choice

REPORT_FORMAT = "ftops.experiment/1"


def loss_rows(csv_text: str) -> list[dict[str, float]]:
    """(step, train_loss, valid_loss?) per row of a fine-tuning results file."""
    rows = []
    for row in csv.DictReader(io.StringIO(csv_text)):
        try:
            point = {"step": float(row["step"]), "train_loss": float(row["train_loss"])}
        except (KeyError, TypeError, ValueError):
            continue
        for key in ("valid_loss", "full_valid_loss"):
            with contextlib.suppress(KeyError, TypeError, ValueError):
                point[key] = float(row[key])
        rows.append(point)
    return rows


def overfitting(rows: list[dict[str, float]], epochs: int) -> dict[str, Any]:
    """Whether validation loss rose while training loss fell over the last epochs: the mean of each
    over the last epoch against the epoch before it. None when there is no validation loss or
    fewer than two epochs to compare."""
    valid_key = "full_valid_loss" if any("full_valid_loss" in r for r in rows) else "valid_loss"
    if epochs < 2 or len(rows) < 2 or not any(valid_key in r for r in rows):
        return {"flag": None, "why": "no validation loss" if rows else "no results file"}
    per_epoch = max(1, len(rows) // epochs)
    last, before = rows[-per_epoch:], rows[-2 * per_epoch : -per_epoch]

    def mean(points: list[dict[str, float]], key: str) -> float | None:
        values = [p[key] for p in points if key in p]
        return sum(values) / len(values) if values else None

    train = (mean(before, "train_loss"), mean(last, "train_loss"))
    valid = (mean(before, valid_key), mean(last, valid_key))
    if None in train or None in valid:
        return {"flag": None, "why": "no validation loss in the last two epochs"}
    flag = bool(train[1] < train[0] and valid[1] > valid[0])  # type: ignore[operator]
    return {
        "flag": flag,
        "why": f"last epoch: train loss {train[0]:.3f} -> {train[1]:.3f}, validation loss "
        f"{valid[0]:.3f} -> {valid[1]:.3f}",
    }


def learning_curves(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per hyperparameter setting, score against fraction, and the extrapolated gain of doubling
    the data: the least-squares slope of score against log2(fraction) (needs two fractions)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row["setting"]].append(row)
    curves = []
    for setting, group in groups.items():
        members = sorted(group, key=lambda r: r["fraction"])
        xs = [math.log2(r["fraction"]) for r in members]
        ys = [r["score"] for r in members]
        slope = None
        if len(set(xs)) >= 2:
            mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
            slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
                (x - mx) ** 2 for x in xs
            )
        top = members[-1]
        curves.append(
            {
                "setting": setting,
                "points": [
                    {"fraction": r["fraction"], "score": r["score"], "low": r["low"], "high": r["high"]}
                    for r in members
                ],
                "doubling_gain": None if slope is None else round(slope, 6),
                "doubling_projection": None if slope is None else round(min(1.0, top["score"] + slope), 6),
            }
        )
    return curves


def report(
    name: str,
    choice: Choice,
    variants: list[dict[str, Any]],
    losses: dict[str, list[dict[str, float]]],
    confidence: float,
    policy: str,
) -> dict[str, Any]:
    """The record: `variants` carry label, setting, fraction, epochs, job, model, billed tokens,
    cost (USD or None); `losses` each variant's results rows."""
    by_label = {v["label"]: v for v in variants}
    rows = []
    for row in choice.rows:
        meta = by_label[row["label"]]
        rows.append(
            {
                **{
                    k: meta[k]
                    for k in ("label", "setting", "fraction", "job", "model", "billed_tokens", "usd")
                },
                **{k: row[k] for k in ("score", "low", "high", "items", "answers", "per_check", "p_vs_best")},
                "significantly_worse": row["significantly_worse"],
                "overfitting": overfitting(losses.get(row["label"], []), int(meta.get("epochs") or 0)),
                "decision": "chosen"
                if row["label"] == choice.chosen.label
                else ("worse" if row["significantly_worse"] else "not significantly worse, not chosen"),
            }
        )
    return {
        "format": REPORT_FORMAT,
        "experiment": name,
        "policy": policy,
        "confidence": confidence,
        "chosen": choice.chosen.label,
        "best": choice.best.label,
        "notes": choice.notes,
        "variants": rows,
        "learning_curves": learning_curves(rows),
        "losses": {k: v for k, v in sorted(losses.items())},
    }


def markdown(record: dict[str, Any], charts: dict[str, str] | None = None) -> str:
    level = f"{record['confidence']:.0%}"
    lines = [
        f"### Experiment `{record['experiment']}`: `{record['chosen']}` chosen ({record['policy']})",
        "",
        f"| variant | data | score | {level} interval | billed tokens | cost | overfitting | decision |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in record["variants"]:
        flag = v["overfitting"]["flag"]
        cost = "n/a" if v["usd"] is None else f"${v['usd']:,.2f}"
        lines.append(
            f"| {v['label']} | {v['fraction']:.0%} | {v['score']:.3f} | [{v['low']:.3f}, {v['high']:.3f}] "
            f"| {v['billed_tokens']:,} | {cost} | {'**yes**' if flag else 'no' if flag is False else 'n/a'} "
            f"| {v['decision']} |"
        )
    lines += [""] + [f"- {note}" for note in record["notes"]]
    for curve in record["learning_curves"]:
        if curve["doubling_gain"] is not None:
            lines.append(
                f"- learning curve `{curve['setting']}`: doubling the data would move the score by "
                f"{curve['doubling_gain']:+.3f} (to about {curve['doubling_projection']:.3f}), extrapolated "
                "from the slope against log2(fraction)"
            )
    for v in record["variants"]:
        if v["overfitting"]["flag"]:
            lines.append(f"- `{v['label']}` overfits: {v['overfitting']['why']}")
    for title, path in (charts or {}).items():
        lines += ["", f"![{title}]({path})"]
    return "\n".join(lines) + "\n"


def charts(record: dict[str, Any], folder: Path, stem: str) -> dict[str, Path]:
    """learning-curve.png and losses.png, drawn with matplotlib (Agg, no display)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError(
            "the experiment report draws its charts with matplotlib, which is not installed",
            fix="pip install 'ftops[experiments]'",
        ) from None
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for curve in record["learning_curves"]:
        points = curve["points"]
        xs = [p["fraction"] for p in points]
        ys = [p["score"] for p in points]
        err = [[p["score"] - p["low"] for p in points], [p["high"] - p["score"] for p in points]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=4, label=curve["setting"])
        if curve["doubling_gain"] is not None:
            ax.plot([xs[-1], xs[-1] * 2], [ys[-1], curve["doubling_projection"]], linestyle=":", color="grey")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training data fraction (log2; dotted: doubling, extrapolated)")
    ax.set_ylabel(f"quality score ({record['confidence']:.0%} interval)")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(f"Learning curve: {record['experiment']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out["learning curve"] = folder / f"{stem}.learning-curve.png"
    fig.savefig(out["learning curve"], metadata={"Software": None})
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for index, (label, rows) in enumerate(record["losses"].items()):
        color = f"C{index % 10}"
        ax.plot(
            [r["step"] for r in rows], [r["train_loss"] for r in rows], color=color, label=f"{label} train"
        )
        valid = [r for r in rows if "valid_loss" in r]
        if valid:
            ax.plot(
                [r["step"] for r in valid],
                [r["valid_loss"] for r in valid],
                color=color,
                linestyle="--",
                label=f"{label} valid",
            )
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("Training (solid) and validation (dashed) loss per variant")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out["loss curves"] = folder / f"{stem}.losses.png"
    fig.savefig(out["loss curves"], metadata={"Software": None})
    plt.close(fig)
    return out


def write(record: dict[str, Any], folder: Path) -> tuple[str, dict[str, Path]]:
    """<digest>.json, <digest>.md and the charts beside them; the digest is the JSON's sha256."""
    body = json.dumps(record, indent=2, sort_keys=True).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    stem = digest.removeprefix("sha256:")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_bytes(body)
    pictures = charts(record, folder, stem)
    text = markdown(record, {title: path.name for title, path in pictures.items()})
    (folder / f"{stem}.md").write_text(text, encoding="utf-8")
    return digest, {"json": folder / f"{stem}.json", "markdown": folder / f"{stem}.md", **pictures}
