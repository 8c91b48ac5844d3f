"""A run's curves from metrics.jsonl: loss, learning rate, grad norm, throughput and MFU, token
accuracy, and for preference runs the reward accuracy and margins. A curve the trainer did not
log is named as not recorded rather than drawn empty."""

from __future__ import annotations

from specforge.report.charts import Chart, Series, line_chart
from specforge.report.html import el, note, num, pct

TRAIN, EVAL = "#2563eb", "#ea580c"


def points(metrics: list[dict], key: str) -> list[tuple[float, float]]:
    return [
        (m["step"], m[key])
        for m in metrics
        if isinstance(m.get(key), int | float) and isinstance(m.get("step"), int | float)
    ]


def _pair(metrics: list[dict], key: str, *, eval_key: str | None = None) -> list[Series]:
    """The train series of `key` and the eval series (`eval_<key>`), eval dashed with markers."""
    return [
        Series("train", points(metrics, key), colour=TRAIN),
        Series("eval", points(metrics, eval_key or f"eval_{key}"), EVAL, dashed=True, markers=True),
    ]


def run_charts(metrics: list[dict]) -> list[tuple[str, Chart]]:
    """(name, chart) for every curve a run can have; empty ones are filtered by the caller."""
    return [
        ("loss", Chart("loss", "loss", _pair(metrics, "loss"))),
        ("learning rate", Chart("learning rate", "lr", [Series("lr", points(metrics, "learning_rate"))], log=False)),
        ("grad norm", Chart("grad norm", "norm", [Series("grad norm", points(metrics, "grad_norm"))])),
        ("tokens/s", Chart("throughput", "tokens/s", [Series("tokens/s", points(metrics, "tokens_per_second"))], log=False)),
        ("MFU", Chart("model FLOPs utilisation", "MFU", [Series("MFU", points(metrics, "mfu"))], log=False, percent=True)),
        ("token accuracy", Chart("mean token accuracy", "accuracy", _pair(metrics, "mean_token_accuracy"), log=False, percent=True)),
        ("reward accuracy", Chart("reward accuracy", "accuracy", _pair(metrics, "rewards/accuracies"), log=False, percent=True)),
        ("reward margin", Chart("reward margin (chosen - rejected)", "margin", _pair(metrics, "rewards/margins"), log=False)),
    ]  # fmt: skip


PREFERENCE_ONLY = {"reward accuracy", "reward margin"}


def curves_section(metrics: list[dict], results: dict, *, preference: bool) -> str:
    """The grid of charts, the mean throughput the record holds, and what was not logged."""
    drawn, absent = [], []
    for name, chart in run_charts(metrics):
        svg = line_chart(chart)
        if svg is not None:
            drawn.append(el("figure", svg, class_="chart", data_chart=name))
        elif preference or name not in PREFERENCE_ONLY:
            absent.append(name)
    body = el("div", "".join(drawn), class_="charts") if drawn else ""
    speed = results.get("throughput")
    if speed:
        body += el(
            "p",
            f"Mean over {speed.get('intervals')} logged intervals: "
            f"{num(speed.get('tokens_per_second'), 1)} tokens/s, MFU {pct(speed.get('mfu'), 2)}.",
        )
    if not metrics:
        body += note("metrics.jsonl: not recorded (training logged nothing).")
    elif absent:
        body += note(f"Not recorded by this run: {', '.join(absent)}.")
    return body


def logged_steps(metrics: list[dict]) -> int | None:
    steps = [m["step"] for m in metrics if isinstance(m.get("step"), int)]
    return max(steps) if steps else None
