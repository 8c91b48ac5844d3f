"""loss.png: training and evaluation loss against step."""

from __future__ import annotations

from pathlib import Path

from specforge.record import read_jsonl


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
