"""`specforge compare`: runs side by side, from their records alone.

What differs (spec keys, script sha256, library versions, data fingerprints, model, git) and how
each run ended (losses, held-out metrics tuned and base, tokens/s, wall time), ranked by a metric;
a sweep id stands for its points' latest runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from specforge.core.console import print_json, say
from specforge.core.errors import UsageError
from specforge.core.files import sha256_bytes
from specforge.experiments.sweep import MANIFEST, SWEEPS
from specforge.runs.plots import plot_comparison
from specforge.runs.record import (
    RUNS_DIR,
    base_side,
    code_sha256,
    final_losses,
    read_jsonl,
    read_record,
)
from specforge.runs.scoring import (
    ROW_METRICS,
    mcnemar_exact,
    read_predictions,
    row_hits,
    wilson_interval,
)
from specforge.spec.models import Spec

LOSSES = {"eval_loss": "final_eval_loss", "train_loss": "final_train_loss"}  # lower is better
SHOWN_METRICS = ("accuracy", "lenient_accuracy", "macro_f1")


@dataclass
class Run:
    dir: Path
    data: dict
    values: dict[str, str] = field(default_factory=dict)  # the sweep point's grid values

    @property
    def id(self) -> str:
        return self.data.get("run_id", self.dir.name)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.values.items()) or self.id


# -- finding the runs ---------------------------------------------------------------------------


def _sweep_runs(manifest_path: Path) -> tuple[list[Run], dict]:
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    root = manifest_path.parent.parent.parent  # runs/<name>/sweeps/<id>/sweep.json
    runs = []
    for point in manifest["points"]:
        if not point["runs"]:
            continue  # not started yet
        data = read_record(root / point["runs"][-1])
        if data is not None:
            runs.append(Run(root / point["runs"][-1], data, point["values"]))
    return runs, manifest


def resolve(targets: list[str], root: Path = RUNS_DIR) -> tuple[list[Run], list[dict]]:
    """Runs (and the sweeps' manifests) for run folders, run ids and sweep ids."""
    runs, sweeps = [], []
    for target in targets:
        path = Path(target)
        manifest = path / MANIFEST if path.is_dir() else None
        if manifest is None or not manifest.is_file():
            manifest = next(iter(sorted(root.glob(f"*/{SWEEPS}/{target}/{MANIFEST}"))), None)
        if manifest is not None and manifest.is_file():
            found, data = _sweep_runs(manifest)
            runs += found
            sweeps.append(data)
            continue
        if not (path / "run.json").is_file():
            path = next(iter(sorted(root.glob(f"*/{target}/run.json"))), Path()).parent
        record = read_record(path) if (path / "run.json").is_file() else None
        if record is None:
            raise UsageError(f"{target}: no run folder, run id or sweep id under {root}/")
        runs.append(Run(path, record, (record.get("sweep") or {}).get("values", {})))
    if not runs:
        raise UsageError("nothing to compare: the sweep has no runs yet")
    return runs, sweeps


# -- what differs -------------------------------------------------------------------------------


def flatten(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key in value:
            out.update(flatten(value[key], f"{prefix}{key}."))
        return out
    if isinstance(value, list):
        return {prefix.rstrip("."): json.dumps(value)}
    return {prefix.rstrip("."): value}


def _sections(data: dict) -> dict[str, dict[str, object]]:
    spec = dict(data.get("spec", {}).get("resolved") or {})
    spec.pop("sweep", None)  # the grid is the same for every point of a sweep
    git = data.get("git") or {}
    return {
        "spec": {"file sha256": data.get("spec", {}).get("sha256"), **flatten(spec)},
        "script": _script_code(data),
        "version": flatten(data.get("versions") or {}),
        "data": flatten(data.get("data") or {}),
        "model": flatten(data.get("model") or {}),
        "git": {"commit": git.get("commit"), "dirty": git.get("dirty")},
    }


def _script_code(data: dict) -> dict[str, object]:
    """Each script's code sha256 (comments and docstrings left out: a script compiled into a run
    folder names that folder in its usage comments), from the record, else from the script while
    it still is what ran; else the file's sha256."""
    scripts = data.get("scripts") or {}
    code = dict(scripts.get("code_sha256") or {})
    for name, sha in (scripts.get("sha256") or {}).items():
        if name in code:
            continue
        path = Path(scripts.get("dir", "")) / name
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            text = None
        same = text is not None and sha256_text(text) == sha
        code[name] = code_sha256(name, text) if same and text is not None else sha
    return code


def differences(runs: list[Run]) -> list[dict]:
    """[{section, key, values}] for every recorded input whose value is not the same in all runs."""
    per_run = [_sections(run.data) for run in runs]
    rows = []
    for section in per_run[0]:
        keys = sorted({k for sections in per_run for k in sections[section]})
        for key in keys:
            values = [sections[section].get(key) for sections in per_run]
            if any(v != values[0] for v in values[1:]):
                rows.append({"section": section, "key": key, "values": values})
    return rows


# -- outcomes -----------------------------------------------------------------------------------


def tokens_per_second(metrics: list[dict]) -> float | None:
    """Non-padding tokens trained per second of train_runtime (the logged num_tokens, scaled to the
    last step when the last steps were not logged)."""
    counted = [m for m in metrics if "num_tokens" in m and "step" in m]
    summary = next((m for m in reversed(metrics) if "train_runtime" in m), None)
    if not counted or summary is None or not summary["train_runtime"]:
        return None
    last = counted[-1]
    tokens = last["num_tokens"] * summary.get("step", last["step"]) / max(last["step"], 1)
    return tokens / summary["train_runtime"]


def outcome(run: Run) -> dict:
    results = run.data.get("results") or {}
    metrics = read_jsonl(run.dir / "metrics.jsonl")
    losses = results.get("losses") or final_losses(metrics)
    tuned, base = results.get("eval_tuned") or {}, results.get("eval_base") or {}
    summary: dict = next((m for m in reversed(metrics) if "train_runtime" in m), {})
    return {
        "run_id": run.id,
        "path": run.dir.as_posix(),
        "values": run.values,
        "status": run.data.get("status"),
        "steps": losses.get("steps"),
        "train_loss": losses.get("final_train_loss"),
        "eval_loss": losses.get("final_eval_loss"),
        "tuned": {k: v for k, v in tuned.items() if isinstance(v, (int, float)) and k != "n"},
        "base": {k: v for k, v in base.items() if isinstance(v, (int, float)) and k != "n"},
        "base_shared_from": (base.get("shared_from") or {}).get("run_id"),
        # a run with a parent (model.adapter) scored the parent as its base
        "base_model": (run.data.get("base_evaluation") or {}).get("model", "base"),
        "eval_rows": tuned.get("n"),
        "tokens_per_s": tokens_per_second(metrics),
        "train_runtime_s": summary.get("train_runtime"),
        "wall_s": run.data.get("duration_s"),
    }


def default_metric(runs: list[Run], outcomes: list[dict]) -> str:
    """The sweep's metric, else held-out accuracy, else the first held-out metric, else eval loss."""
    for run in runs:
        chosen = ((run.data.get("spec", {}).get("resolved") or {}).get("sweep") or {}).get("metric")
        if chosen:
            return chosen
    names = [k for o in outcomes for k in o["tuned"]]
    if "accuracy" in names:
        return "accuracy"
    return names[0] if names else "eval_loss"


def metric_value(entry: dict, metric: str) -> float | None:
    if metric in LOSSES:
        return entry[metric]
    return entry["tuned"].get(metric)


def rank(outcomes: list[dict], metric: str) -> list[dict]:
    """Best first (a tie goes to the lower eval loss); runs without the metric last, in order."""
    known = {k for o in outcomes for k in o["tuned"]} | set(LOSSES)
    if metric not in known:
        raise UsageError(f"--by {metric}: no run has it (there are: {', '.join(sorted(known))})")
    scored = [o for o in outcomes if metric_value(o, metric) is not None]
    sign = 1 if metric in LOSSES else -1

    def key(o: dict) -> tuple[float, float]:  # ties (short runs score 0 alike): lower eval loss
        tie = o["eval_loss"] if o["eval_loss"] is not None else float("inf")
        return (sign * (metric_value(o, metric) or 0.0), tie)  # scored: never None

    return sorted(scored, key=key) + [o for o in outcomes if metric_value(o, metric) is None]


def comparison(runs: list[Run], by: str | None) -> dict:
    outcomes = [outcome(run) for run in runs]
    metric = by or default_metric(runs, outcomes)
    ranked = rank(outcomes, metric)
    best = ranked[0] if metric_value(ranked[0], metric) is not None else None
    return {
        "runs": [{"run_id": r.id, "path": r.dir.as_posix(), "values": r.values} for r in runs],
        "differs": differences(runs),
        "metric": metric,
        "higher_is_better": metric not in LOSSES,
        "ranked": ranked,
        "best": best and best["run_id"],
        "noise": noise(runs, ranked, metric) if best else None,
    }


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode("utf-8"))


def noise(runs: list[Run], ranked: list[dict], metric: str) -> dict | None:
    """Is the best run's lead over the runner-up more than noise? McNemar's exact test on the
    rows the two answered (paired: the same rows, in order), else 95% Wilson intervals of each
    score; None when there is no runner-up or the metric is not a per-row proportion."""
    scored = [o for o in ranked if metric_value(o, metric) is not None]
    if metric not in ROW_METRICS or len(scored) < 2:
        return None
    best, second = scored[0], scored[1]
    by_id = {run.id: run for run in runs}
    hits = [_hits(by_id[o["run_id"]], metric) for o in (best, second)]
    if hits[0] and hits[1] and [g for g, _ in hits[0]] == [g for g, _ in hits[1]]:
        only_best = sum(a and not b for (_, a), (_, b) in zip(hits[0], hits[1]))
        only_second = sum(b and not a for (_, a), (_, b) in zip(hits[0], hits[1]))
        p = mcnemar_exact(only_best, only_second)
        return {
            "against": second["run_id"],
            "test": "mcnemar_exact",
            "rows": len(hits[0]),
            "only_best_right": only_best,
            "only_other_right": only_second,
            "p_value": p,
            "within_noise": p >= 0.05,
        }
    sizes = [o["eval_rows"] for o in (best, second)]
    if not all(sizes):
        return None
    intervals = [
        wilson_interval(round(metric_value(o, metric) * n), n)
        for o, n in zip((best, second), sizes)
    ]
    overlap = intervals[0][0] <= intervals[1][1] and intervals[1][0] <= intervals[0][1]
    return {
        "against": second["run_id"],
        "test": "wilson_95",
        "intervals": intervals,
        "within_noise": overlap,
    }


def _hits(run: Run, metric: str):
    """Per-row (gold, right) of the run's tuned predictions; None when not available."""
    path = run.dir / "predictions.jsonl"
    try:
        spec = Spec.model_validate(run.data["spec"]["resolved"])
        rows = read_predictions(path)
    except (KeyError, OSError, ValueError):
        return None
    return row_hits(rows, metric, spec.inference.labels, spec.answer_column())


# -- output -------------------------------------------------------------------------------------


def cell(value) -> str:
    """A table cell, here and in `specforge runs`: "-" when missing, floats to 4 places, hashes
    shortened to 12 characters."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.0f}"
    text = str(value)
    return (
        text[:12] if len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text) else text
    )


def _round(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def tables(result: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, headers, rows) for each section of the report."""
    runs = result["runs"]
    index = {r["run_id"]: f"#{i + 1}" for i, r in enumerate(runs)}
    listing = [[index[r["run_id"]], r["run_id"], _label(r)] for r in runs]
    differs = [
        [f"{d['section']}: {d['key']}", *(cell(v) for v in d["values"])] for d in result["differs"]
    ]
    shown = [m for m in SHOWN_METRICS if any(m in o["tuned"] for o in result["ranked"])]
    if result["metric"] not in LOSSES and result["metric"] not in shown:
        shown.insert(0, result["metric"])
    headers = ["rank", "run", "status", "train loss", "eval loss"]
    base = base_side(o["base_model"] for o in result["ranked"])
    headers += [f"{m} tuned" for m in shown] + [f"{m} {base}" for m in shown]
    headers += ["tokens/s", "wall s"]
    outcomes = []
    for place, o in enumerate(result["ranked"], 1):
        row = [str(place), index[o["run_id"]], o["status"] or "-"]
        row += [cell(o["train_loss"]), cell(o["eval_loss"])]
        row += [cell(o["tuned"].get(m)) for m in shown] + [cell(o["base"].get(m)) for m in shown]
        row += [_round(o["tokens_per_s"], 1), _round(o["wall_s"], 0)]
        outcomes.append(row)
    order = "higher" if result["higher_is_better"] else "lower"
    return [
        ("runs", ["", "run", "point"], listing),
        ("what differs", ["input", *(index[r["run_id"]] for r in runs)], differs),
        (f"outcomes, ranked by {result['metric']} ({order} is better)", headers, outcomes),
    ]


def _label(run: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in run["values"].items()) or "-"


def best_line(result: dict) -> str:
    if result["best"] is None:
        return f"best: none (no run has {result['metric']})"
    best = next(o for o in result["ranked"] if o["run_id"] == result["best"])
    point = _label(best)
    where = f" ({point})" if point != "-" else ""
    line = f"best: {best['run_id']}{where}: {result['metric']} {metric_value(best, result['metric']):.4f}"
    return line + _noise_note(result.get("noise"))


def _noise_note(noise: dict | None) -> str:
    if noise is None:
        return ""
    if noise["test"] == "mcnemar_exact":
        how = (
            f"McNemar exact p={noise['p_value']:.3g}: {noise['only_best_right']} vs "
            f"{noise['only_other_right']} of {noise['rows']} paired rows answered right by one run only"
        )
    else:
        (a, b), (c, d) = noise["intervals"]
        how = f"95% Wilson intervals {a:.3f}-{b:.3f} vs {c:.3f}-{d:.3f}"
    if noise["within_noise"]:
        return f"; within noise of {noise['against']} ({how}): no run is better"
    return f"; ahead of {noise['against']} beyond noise ({how})"


TEXT_CELL = 48  # a terminal table stays readable: longer values are clipped (json has them whole)


def _clip(cell: str) -> str:
    return cell if len(cell) <= TEXT_CELL else cell[: TEXT_CELL - 3] + "..."


def render_text(result: dict) -> str:
    out = []
    clipped = False
    for title, headers, rows in tables(result):
        out.append(f"{title}:")
        if not rows:
            out.append("  (nothing: every recorded input is the same)\n")
            continue
        clipped |= any(len(c) > TEXT_CELL for cells in rows for c in cells)
        rows = [[_clip(c) for c in cells] for cells in rows]
        widths = [max(len(c) for c in column) for column in zip(headers, *rows)]
        for cells in [headers, *rows]:
            out.append("  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
        out.append("")
    if clipped:
        out.append(
            f"(values over {TEXT_CELL} characters are clipped; --format json has them whole)"
        )
    out.append(best_line(result))
    return "\n".join(out) + "\n"


def render_markdown(result: dict) -> str:
    out = []
    for title, headers, rows in tables(result):
        out.append(f"### {title[0].upper()}{title[1:]}\n")
        if not rows:
            out.append("Every recorded input is the same.\n")
            continue
        escape = [[c.replace("|", "\\|") for c in cells] for cells in [headers, *rows]]
        out.append("| " + " | ".join(escape[0]) + " |")
        out.append("|" + "---|" * len(headers))
        out += ["| " + " | ".join(cells) + " |" for cells in escape[1:]]
        out.append("")
    out.append(f"**{best_line(result)}**")
    return "\n".join(out) + "\n"


def main(args) -> int:
    """The `compare` verb."""
    runs, _ = resolve(args.targets)
    result = comparison(runs, args.by)
    if args.format == "json":
        print_json(result)
    else:
        text = render_markdown(result) if args.format == "markdown" else render_text(result)
        print(text, end="")
    if args.plot is not None:
        curves = [(run.label, read_jsonl(run.dir / "metrics.jsonl")) for run in runs]
        axis = _one_axis(runs)
        points = None
        if axis is not None:
            by_id = {o["run_id"]: metric_value(o, result["metric"]) for o in result["ranked"]}
            points = [(run.values[axis], by_id[run.id]) for run in runs if axis in run.values]
        path = plot_path(runs, args.plot)
        if plot_comparison(curves, path, axis=axis, points=points, metric=result["metric"]):
            say(f"plot: {path}")
        else:
            say("[yellow]no plot[/]: no run logged a loss")
    return 0


def plot_path(runs: list[Run], asked: Path) -> Path:
    """--plot PNG as given; bare --plot (an empty path): compare.png in the sweep's folder when
    every run is a point of one sweep, else in the first run's runs/<name>/ (never the work tree)."""
    if asked != Path():
        return asked
    sweeps = {(run.data.get("sweep") or {}).get("id") for run in runs}
    first = runs[0].dir.parent
    if len(sweeps) == 1 and None not in sweeps:
        return first / SWEEPS / str(sweeps.pop()) / "compare.png"
    return first / "compare.png"


def _one_axis(runs: list[Run]) -> str | None:
    """The grid key when the runs vary along exactly one (a one-dimensional sweep)."""
    keys = {k for run in runs for k in run.values}
    varying = [k for k in sorted(keys) if len({run.values.get(k) for run in runs}) > 1]
    return varying[0] if len(varying) == 1 else None
