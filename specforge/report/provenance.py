"""What exactly ran, and on what: the data report, the provenance (spec, script and data
sha256s, git, library versions, hardware, attempts, the parent chain, exports with their
verdicts), the spec diff against the parent or the `--set` overrides, and the resolved spec."""

from __future__ import annotations

import json

import yaml

from specforge.experiments.compare import flatten
from specforge.report.charts import bar_chart
from specforge.report.html import (
    el,
    esc,
    key_values,
    missing,
    note,
    num,
    pct,
    pre,
    short_sha,
    table,
    text,
)
from specforge.report.run_data import RunView

SHA_KEYS = ("sha256", "revision", "commit")


def _value(key: str, value: object) -> str:
    """A recorded value; null and an empty list read "none" (recorded as nothing, which is not
    the same as not recorded)."""
    if value is None or value == "[]":
        return el("span", "none", class_="missing")
    if isinstance(value, str) and key.endswith(SHA_KEYS) and len(value) in (40, 64):
        return short_sha(value)
    if isinstance(value, bool | int | float):
        return num(value)
    return missing(value)


def data_section(view: RunView) -> str:
    summary = view.summary
    if not summary:
        return note("Data report: not recorded (train_summary.json is written when training ends).")
    rows = []
    for split in ("train", "validation"):
        part = summary.get(split)
        if isinstance(part, dict):
            rows.append(
                [esc(split)]
                + [num(part.get(k)) for k in ("rows", "truncated", "dropped")]
                + [num(part.get(k)) for k in ("tokens_p50", "tokens_p90", "tokens_max")]
            )
    headers = ["split", "rows", "truncated", "dropped", "tokens p50", "p90", "max"]
    body = table(headers, rows, id_="data-splits")
    facts = [("label share", pct(summary.get("label_share")) + esc(" of tokens carry a label"))]
    if view.tuned and view.tuned.get("n") is not None:
        facts.append(("held-out rows", num(view.tuned["n"])))
    if summary.get("new_tokens"):
        facts.append(("new tokens", esc(", ".join(summary["new_tokens"]))))
    body += key_values(facts)
    body += note(
        "Token-length histogram: not recorded (train_summary.json holds the 50th and 90th "
        "percentiles and the maximum, shown above)."
    )
    return body + _mixture(summary.get("sources"))


def _mixture(sources: dict | None) -> str:
    if not sources:
        return ""
    total = sum(sources.values()) or 1
    rows = [[esc(name), num(count), pct(count / total)] for name, count in sources.items()]
    chart = bar_chart(
        "mixture: share of rows drawn",
        [(name, count / total) for name, count in sources.items()],
        ylabel="share",
        percent=True,
    )
    out = text("h3", "Mixture") + table(["source", "rows drawn", "share"], rows, id_="mixture")
    return out + (el("figure", chart, class_="chart") if chart else "")


def _flat_table(data: dict | None, id_: str) -> str:
    if not data:
        return note("not recorded")
    return key_values(((k, _value(k, v)) for k, v in flatten(data).items()), id_=id_)


def _attempts(record: dict) -> str:
    rows = [
        [
            esc(a.get("started_at") or "-"),
            num(a.get("duration_s"), 1),
            text("span", a.get("status") or "-", class_=f"status {a.get('status')}"),
            esc(a.get("failed_step") or "-"),
            esc(a.get("resumed_from") or "-"),
            esc(a.get("host") or "-"),
        ]
        for a in record.get("attempts") or []
    ]
    headers = ["started", "seconds", "status", "failed step", "resumed from", "host"]
    return table(headers, rows, id_="attempts")


def _parents(view: RunView) -> str:
    if not view.parents:
        return note("No parent: the run started from the base model.")
    rows = []
    for depth, link in enumerate(view.parents, 1):
        parent, record = link["parent"], link["record"] or {}
        status = record.get("status") or parent.get("status")
        rows.append(
            [
                esc(depth),
                text("code", parent.get("run_id") or "-"),
                esc(parent.get("name") or record.get("name") or "-"),
                esc(status or "-"),
                text("code", parent.get("path") or "-"),
                short_sha(parent.get("adapter_sha256") or parent.get("model_sha256")),
            ]
        )
    headers = ["depth", "run", "spec", "status", "folder", "weights sha256"]
    return table(headers, rows, id_="parents")


def _exports(record: dict) -> str:
    exports = record.get("exports") or {}
    if not exports:
        return note("No exports recorded (`specforge export RUN_DIR` adds them).")
    rows = []
    for key, entry in exports.items():
        if "passed" in entry:
            verdict = "passed" if entry["passed"] else f"FAILED: {entry.get('error')}"
            agreement = (
                f"{pct(entry.get('agreement'))} of {num(entry.get('n'))} rows "
                f"(threshold {pct(entry.get('threshold'), 0)})"
            )
        else:  # the adapter folder made portable at the end of the run: nothing to verify
            verdict, agreement = "written", esc("-")
        state = "ok" if verdict in ("passed", "written") else "bad"
        rows.append(
            [
                esc(key),
                text("code", entry.get("path") or "-"),
                agreement,
                text("span", verdict, class_=state),
            ]
        )
    return table(["export", "path", "agreement with the adapter", "verdict"], rows, id_="exports")


def provenance_section(view: RunView) -> str:
    record = view.record
    spec = record.get("spec") or {}
    git = record.get("git") or {}
    dirty = git.get("dirty")
    facts = [
        ("spec", text("code", spec.get("path") or "-")),
        ("spec sha256", short_sha(spec.get("sha256"))),
        ("overrides", esc(" ".join(f"--set {o}" for o in spec.get("overrides") or []) or "none")),
        ("git commit", short_sha(git.get("commit"))),
        ("working tree", missing(dirty, esc("dirty (uncommitted changes)" if dirty else "clean"))),
        ("seed", num(record.get("seed"))),
        ("effective batch size", num(record.get("effective_batch_size"))),
        ("processes", num(record.get("world_size"))),
        ("run folder", text("code", view.dir.as_posix())),
    ]
    scripts = (record.get("scripts") or {}).get("sha256") or {}
    body = key_values(facts, id_="provenance")
    body += text("h3", "Scripts") + key_values(
        ((n, short_sha(s)) for n, s in scripts.items()), id_="scripts"
    )
    body += text("h3", "Data") + _flat_table(record.get("data"), "data-fingerprint")
    body += text("h3", "Model") + _flat_table(record.get("model"), "model-fingerprint")
    body += el(
        "div",
        el("div", text("h3", "Library versions") + _flat_table(record.get("versions"), "versions"))
        + el("div", text("h3", "Hardware") + _flat_table(record.get("device"), "hardware")),
        class_="columns",
    )
    body += text("h3", "Attempts") + _attempts(record)
    body += text("h3", "Parent chain") + _parents(view)
    body += text("h3", "Exports") + _exports(record)
    return body


def spec_diff(view: RunView) -> str | None:
    """The `--set` overrides and, for a run with a parent, the resolved spec keys that differ
    from the parent's; None when there is neither."""
    out = ""
    overrides = (view.record.get("spec") or {}).get("overrides") or []
    if overrides:
        rows = [
            [text("code", o.split("=", 1)[0]), text("code", o.split("=", 1)[-1])] for o in overrides
        ]
        out += text("h3", "--set overrides") + table(["key", "value"], rows, id_="overrides")
    parent = (view.parents[0]["record"] if view.parents else None) or None
    if parent is not None:
        mine = flatten(view.resolved)
        theirs = flatten((parent.get("spec") or {}).get("resolved") or {})
        keys = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        rows = [[text("code", k), esc(_show(theirs.get(k))), esc(_show(mine.get(k)))] for k in keys]
        out += text("h3", f"Against the parent run {parent.get('run_id')}")
        out += table(["key", "parent", "this run"], rows, id_="parent-diff", class_="diff")
    elif view.parents:
        out += note("The parent's run.json is not readable: no diff against it.")
    return out or None


def _show(value: object) -> str:
    return "(absent)" if value is None else value if isinstance(value, str) else json.dumps(value)


def resolved_spec(view: RunView) -> str:
    """The spec as run: spec.resolved.yaml as written beside the scripts, else run.json's."""
    path = view.dir / "spec.resolved.yaml"
    try:
        shown = path.read_text(encoding="utf-8")
    except OSError:
        shown = yaml.safe_dump(view.resolved, sort_keys=False, allow_unicode=True)
    return el(
        "details", el("summary", esc("resolved spec")) + pre(shown), open="open", class_="spec"
    )
