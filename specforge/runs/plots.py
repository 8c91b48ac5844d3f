"""loss.png: training and evaluation loss against step."""

from __future__ import annotations

from pathlib import Path

from specforge.runs.record import read_jsonl


def plot_losses(metrics_path: Path, out_path: Path) -> bool:
    """Draw the curves; False (and no file) when there is nothing to draw."""
    metrics = read_jsonl(metrics_path)
    train = [(m["step"], m["loss"]) for m in metrics if "loss" in m and "step" in m]
    evals = [(m["step"], m["eval_loss"]) for m in metrics if "eval_loss" in m and "step" in m]
    if not train and not evals:
        return False
    import matplotlib

    matplotlib.use("Agg")  # no display; deterministic file output
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train loss", marker=".")
    if evals:
        ax.plot(*zip(*evals), label="eval loss", marker="o")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"{metrics_path.parent.parent.name} / {metrics_path.parent.name}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)
    return True


def plot_comparison(
    curves: list[tuple[str, list[dict]]],
    out_path: Path,
    *,
    axis: str | None = None,
    points: list[tuple[str, float | None]] | None = None,
    metric: str = "",
) -> bool:
    """`specforge compare --plot`: every run's losses on one axes (train a line, eval markers in
    the same colour), and beside it, for a one-key sweep, the metric against the swept value.
    False (and no file) when no run logged a loss."""
    if not any("loss" in m or "eval_loss" in m for _, metrics in curves for m in metrics):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if axis and points else 1
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels, 4.5), dpi=100, squeeze=False)
    ax = axes[0][0]
    for number, (label, metrics) in enumerate(curves):
        colour = f"C{number % 10}"
        train = [(m["step"], m["loss"]) for m in metrics if "loss" in m and "step" in m]
        evals = [(m["step"], m["eval_loss"]) for m in metrics if "eval_loss" in m and "step" in m]
        if train:
            ax.plot(*zip(*train), color=colour, marker=".", label=f"{label} (train)")
        if evals:
            ax.plot(*zip(*evals), color=colour, marker="s", linestyle="--", label=f"{label} (eval)")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("loss: train (line) and eval (squares)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    if panels == 2 and points:
        ax = axes[0][1]
        known = [(x, y) for x, y in points if y is not None]
        try:  # numbers on a numeric axis (a log axis for learning rates and the like)
            xs = [float(x) for x, _ in known]
            ax.plot(xs, [y for _, y in known], marker="o")
            if min(xs) > 0 and max(xs) / min(xs) >= 100:
                ax.set_xscale("log")
            ax.set_xticks(xs, [x for x, _ in known])  # the swept values, as written
        except ValueError:  # names: one bar each
            ax.bar([x for x, _ in known], [y for _, y in known])
        ax.set_xlabel(axis)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} against {axis}")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)
    return True
