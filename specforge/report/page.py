"""Assemble a report page and write it: one self-contained HTML file (inline CSS, inline SVG,
no script, nothing fetched), for one run, or for a sweep or a set of runs side by side."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from specforge import __version__
from specforge.core.files import write_atomic
from specforge.report.curves import curves_section, logged_steps
from specforge.report.evaluation import evaluation_section
from specforge.report.headline import headline, where_it_stopped
from specforge.report.html import el, esc, pre, section, text
from specforge.report.provenance import data_section, provenance_section, resolved_spec, spec_diff
from specforge.report.run_data import RunView, load_run, log_tail
from specforge.runs.record import now_iso

REPORT_FILE = "report.html"
PREFERENCE = ("dpo", "orpo", "kto")


def stylesheet() -> str:
    return files("specforge.report").joinpath("style.css").read_text(encoding="utf-8")


def document(title: str, sections: list[tuple[str, str, str]], top: str = "") -> str:
    """The page: `top` (the headline), then each (anchor, title, body) as a section, with a
    contents line linking to them within the page."""
    links = "".join(el("a", esc(name), href=f"#{anchor}") for anchor, name, _ in sections)
    body = top + el("nav", links) + "".join(section(a, n, b) for a, n, b in sections)
    footer = text(
        "footer", f"Written by specforge {__version__} at {now_iso()} from the run records alone."
    )
    return (
        "<!DOCTYPE html>\n"
        + el(
            "html",
            el(
                "head",
                '<meta charset="utf-8">'
                + '<meta name="viewport" content="width=device-width, initial-scale=1">'
                + text("title", title)
                + el("style", stylesheet()),
            )
            + el("body", el("main", body + footer)),
            lang="en",
        )
        + "\n"
    )


def stop_box(view: RunView) -> str:
    """Where a run that did not succeed stopped, and the end of the failing step's log."""
    if view.record.get("status") == "succeeded":
        return ""
    planned = (view.resolved.get("training") or {}).get("max_steps")
    planned = planned if isinstance(planned, int) and planned > 0 else None
    body = text("p", where_it_stopped(view, logged_steps(view.metrics), planned), id="stopped-at")
    if note := view.record.get("interrupted"):
        body += text("p", note)
    if view.record.get("status") in ("interrupted", "preempted"):
        spec = view.record.get("spec") or {}
        again = " ".join(
            ["specforge run", spec.get("path") or "SPEC"]
            + [f"--set {o}" for o in spec.get("overrides") or []]
            + ["--resume", view.record.get("run_id") or view.dir.name]
        )
        body += el("p", esc("Continue it with ") + text("code", again) + esc("."))
    tail = log_tail(view.dir, view.record.get("failed_step"))
    if tail is not None:
        body += text("p", f"The last lines of {tail[0]}:") + pre(tail[1], class_="log")
    return el("div", body, class_="stopped", id="stopped")


def run_page(view: RunView) -> str:
    preference = view.method in PREFERENCE
    sections = [
        (
            "curves",
            "Training curves",
            curves_section(view.metrics, view.results, preference=preference),
        ),
        ("evaluation", "Held-out evaluation", evaluation_section(view)),
        ("data", "Data", data_section(view)),
    ]
    diff = spec_diff(view)
    if diff is not None:
        sections.append(("diff", "Spec changes", diff))
    sections += [
        ("provenance", "Provenance", provenance_section(view)),
        ("spec", "Spec as run", resolved_spec(view)),
    ]
    name = view.record.get("name") or view.dir.parent.name
    title = f"{name} {view.record.get('run_id') or view.dir.name} · specforge report"
    return document(title, sections, headline(view) + stop_box(view))


def write_page(html: str, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, html.encode("utf-8"))
    return out


def report_run(run_dir: Path, out: Path | None = None, record: dict | None = None) -> Path:
    """Write the run's page (default RUN_DIR/report.html); returns its path."""
    view = load_run(run_dir, record)
    return write_page(run_page(view), out or run_dir / REPORT_FILE)
