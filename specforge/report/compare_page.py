"""The page for a sweep or for several runs: the table `specforge compare` prints, ranked
(specforge.experiments.compare builds it; this module only lays it out), every run's curves
overlaid, the held-out metric per run, and what differs between the runs."""

from __future__ import annotations

from pathlib import Path

from specforge.experiments.compare import (
    SWEEPS,
    Run,
    best_line,
    comparison,
    metric_value,
    resolve,
    tables,
)
from specforge.report.charts import COLOURS, Chart, Series, bar_chart, line_chart
from specforge.report.curves import logged_steps, points
from specforge.report.html import el, esc, note, table, text
from specforge.report.page import REPORT_FILE, document, report_run, write_page
from specforge.runs.record import RUNS_DIR, read_jsonl

OVERLAID = (("loss", "loss"), ("eval_loss", "eval loss"), ("learning_rate", "learning rate"))


def _overlaid(runs: list[Run], labels: dict[str, str], first: str = "") -> str:
    curves = {run.id: read_jsonl(run.dir / "metrics.jsonl") for run in runs}
    charts = []
    for key, name in OVERLAID:
        series = [
            Series(
                labels[run.id],
                points(curves[run.id], key),
                COLOURS[i % len(COLOURS)],
                markers=key == "eval_loss",
            )
            for i, run in enumerate(runs)
        ]
        svg = line_chart(
            Chart(
                name,
                name,
                series,
                log=False if key == "learning_rate" else None,
                width=5.6,
                height=3.4,
            )
        )
        if svg is not None:
            charts.append(el("figure", svg, class_="chart", data_chart=name))
    if not charts and not first:
        return note("No run logged a loss: nothing to draw.")
    return el("div", first + "".join(charts), class_="charts")


def _metric_chart(result: dict, labels: dict[str, str]) -> str:
    metric = result["metric"]
    bars = [
        (labels[o["run_id"]], value)
        for o in result["ranked"]
        if (value := metric_value(o, metric)) is not None
    ]
    svg = bar_chart(f"{metric} per run (ranked)", bars, ylabel=metric)
    return el("figure", svg, class_="chart", data_chart=metric) if svg else ""


def _stopped(runs: list[Run]) -> str:
    rows = []
    for run in runs:
        if run.data.get("status") == "succeeded":
            continue
        metrics = read_jsonl(run.dir / "metrics.jsonl")
        rows.append(
            [
                text("code", run.id),
                text(
                    "span", run.data.get("status") or "-", class_=f"status {run.data.get('status')}"
                ),
                esc(run.data.get("failed_step") or "-"),
                esc(logged_steps(metrics) or "none"),
            ]
        )
    if not rows:
        return ""
    return text("h3", "Runs that did not succeed") + table(
        ["run", "status", "stopped in", "last logged step"], rows, id_="not-succeeded"
    )


def _tables(result: dict) -> list[str]:
    """compare's three tables as HTML: the runs, what differs, the outcomes ranked (the last
    keeps compare's title, which says the metric and its direction)."""
    out = []
    ids = ("compared-runs", "differs", "ranked")
    for (title, headers, rows), id_ in zip(tables(result), ids):
        if not rows:
            out.append(note("Every recorded input is the same."))
            continue
        body = table(headers, [[esc(c) for c in row] for row in rows], id_=id_)
        heading = text("h3", title[0].upper() + title[1:]) if id_ == "ranked" else ""
        out.append(heading + body)
    return out


def compare_page(runs: list[Run], sweeps: list[dict], by: str | None) -> str:
    result = comparison(runs, by)
    index = {r["run_id"]: f"#{i + 1}" for i, r in enumerate(result["runs"])}
    labels = {
        run.id: f"{index[run.id]} {run.label}" if run.values else index[run.id] for run in runs
    }
    listing, differs, ranked = _tables(result)
    if sweeps:
        what = ", ".join(f"Sweep {s.get('sweep_id')} of {s.get('name')}" for s in sweeps)
    else:
        what = f"Comparison of {len(runs)} runs"
    top = el(
        "header",
        text("h1", what)
        + text("p", f"{len(runs)} runs, ranked by {result['metric']}.", class_="when")
        + text(
            "p",
            best_line(result),
            class_="best-line",
            id="compare-best",
            data_best=result["best"],
            data_metric=result["metric"],
        ),
        id="headline",
    )
    sections = [
        ("ranked-runs", "Outcomes", ranked + _stopped(runs)),
        ("curves", "Curves, overlaid", _overlaid(runs, labels, _metric_chart(result, labels))),
        ("differs-section", "What differs", differs),
        ("runs", "The runs", listing + _paths(runs, index)),
    ]
    return document(f"{what} · specforge report", sections, top)


def _paths(runs: list[Run], index: dict[str, str]) -> str:
    rows = [
        [esc(index[run.id]), text("code", run.dir.as_posix()), esc(run.data.get("status") or "-")]
        for run in runs
    ]
    return table(["", "folder (each has its own report.html)", "status"], rows, id_="run-folders")


def default_output(runs: list[Run], sweeps: list[dict], root: Path = RUNS_DIR) -> Path:
    """A sweep's page sits in its folder; a comparison's in the current folder."""
    if len(sweeps) == 1 and len(runs) >= 1:
        return root / sweeps[0]["name"] / SWEEPS / sweeps[0]["sweep_id"] / REPORT_FILE
    return Path(REPORT_FILE)


def report_targets(targets: list[str], out: Path | None, by: str | None = None) -> Path:
    """The page for run folders, run ids and sweep ids: one run's page, or a comparison's."""
    runs, sweeps = resolve(targets)
    if len(runs) == 1 and not sweeps:
        return report_run(runs[0].dir, out, runs[0].data)
    return write_page(compare_page(runs, sweeps, by), out or default_output(runs, sweeps))
