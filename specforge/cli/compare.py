"""`specforge compare`: runs side by side (what differs, the outcomes), a sweep's points ranked by a
metric; specforge.experiments.compare does the work."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from specforge.cli.common import add_verb


def register(subparsers: Any) -> None:
    sub = add_verb(
        subparsers,
        "compare",
        run,
        "Compare runs side by side: what differs (spec keys, scripts, versions, data, git) and "
        "the outcomes; a sweep's points ranked by a metric.",
    )
    sub.add_argument(
        "targets",
        nargs="+",
        metavar="RUN_OR_SWEEP",
        help="a run folder, a run id, or a sweep id (its points' latest runs)",
    )
    sub.add_argument("--format", choices=["text", "json", "markdown"], default="text")
    sub.add_argument(
        "--by",
        metavar="METRIC",
        help="rank by a held-out metric of the tuned model (accuracy, macro_f1, ...) or "
        "eval_loss/train_loss (default: the sweep's metric, else accuracy, else the first there is)",
    )
    sub.add_argument(
        "--plot",
        nargs="?",
        const=Path(),  # the default place: specforge.experiments.compare.plot_path
        type=Path,
        metavar="PNG",
        help="write the loss curves overlaid (and, for a one-key sweep, the metric against the "
        "swept value) to PNG (default: compare.png in the sweep's folder, else in runs/<name>/)",
    )


def run(args: argparse.Namespace) -> int:
    # imported here for start-up time: it loads the spec's pydantic models
    from specforge.experiments.compare import main

    return main(args)
