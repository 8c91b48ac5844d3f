"""The report's charts: matplotlib figures rendered to inline SVG strings.

SVG keeps the page one file and prints sharp; text stays text (`svg.fonttype: none`), so a chart
is a few kilobytes and the page's font draws it. Every chart gets its own id salt: the page holds
many SVGs, and matplotlib's clip-path and marker ids would otherwise collide between them.
"""

from __future__ import annotations

import io
import itertools
import re
from dataclasses import dataclass, field

COLOURS = ("#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777")


@dataclass
class Series:
    label: str
    points: list[tuple[float, float]]
    colour: str | None = None
    dashed: bool = False
    markers: bool = False


@dataclass
class Chart:
    title: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    xlabel: str = "step"
    log: bool | None = None  # None: a log axis when the values span more than LOG_SPAN
    percent: bool = False
    width: float = 4.6
    height: float = 2.9


LOG_SPAN = 8.0  # max/min beyond which a linear axis squashes the end of a loss curve flat


def wants_log(chart: Chart) -> bool:
    if chart.log is not None:
        return chart.log
    values = [y for s in chart.series for _, y in s.points]
    if not values or min(values) <= 0:
        return False
    return max(values) / min(values) > LOG_SPAN


_salts = itertools.count(1)  # one per chart drawn in this process


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display
    import matplotlib.pyplot as plt

    return plt


def to_svg(fig) -> str:
    """The figure as an <svg> element: no XML prolog, no metadata, scaled by CSS."""
    plt = _pyplot()
    buffer = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"sf{next(_salts)}"}):
        fig.savefig(
            buffer,
            format="svg",
            metadata={"Creator": None, "Date": None, "Format": None, "Type": None},
        )
    plt.close(fig)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.DOTALL)
    # ids nothing points at (figure_1, axes_1, ...) would repeat from chart to chart
    used = set(re.findall(r"#([\w.-]+)", svg))
    svg = re.sub(r' id="([^"]*)"', lambda m: m.group(0) if m.group(1) in used else "", svg)
    # the page sizes the chart; the viewBox keeps its proportions
    return re.sub(r'^<svg([^>]*?) width="[^"]*" height="[^"]*"', r"<svg\1", svg, count=1)


def _style(ax) -> None:
    ax.grid(alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=8)


def line_chart(chart: Chart) -> str | None:
    """The chart as SVG; None when no series has a point."""
    series = [s for s in chart.series if s.points]
    if not series:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(chart.width, chart.height), dpi=100)
    for number, s in enumerate(series):
        xs, ys = zip(*s.points)
        ax.plot(
            xs,
            ys,
            label=s.label,
            color=s.colour or COLOURS[number % len(COLOURS)],
            linestyle="--" if s.dashed else "-",
            marker="o" if s.markers or len(xs) == 1 else None,
            markersize=3.5,
            linewidth=1.6,
        )
    if wants_log(chart):
        ax.set_yscale("log")
    if chart.percent:
        from matplotlib.ticker import PercentFormatter

        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    elif not wants_log(chart):  # 0.0199 reads better than "1e-6+1.999e-2" over the axis
        ax.ticklabel_format(axis="y", useOffset=False)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    steps = {x for s in series for x, _ in s.points}
    if len(steps) == 1:  # one logged step (an eval at the end): a step either side, not 2.025
        (only,) = steps
        ax.set_xlim(only - 1, only + 1)
    ax.set_title(chart.title + (" (log scale)" if wants_log(chart) else ""), fontsize=10)
    ax.set_xlabel(chart.xlabel, fontsize=8)
    ax.set_ylabel(chart.ylabel, fontsize=8)
    _style(ax)
    if len(series) > 1:
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return to_svg(fig)


def bar_chart(
    title: str, bars: list[tuple[str, float]], *, ylabel: str, percent: bool = False
) -> str | None:
    """One bar per (label, value); None without bars."""
    if not bars:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 2.9), dpi=100)
    labels, values = zip(*bars)
    ax.bar(range(len(bars)), values, color=COLOURS[0])
    ax.set_xticks(range(len(bars)), labels, fontsize=7, rotation=20 if len(bars) > 4 else 0)
    if percent:
        from matplotlib.ticker import PercentFormatter

        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel, fontsize=8)
    _style(ax)
    fig.tight_layout()
    return to_svg(fig)
