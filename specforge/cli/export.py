"""`specforge export`: a run as a merged model folder, GGUF or Ollama model, each verified against
the adapter; specforge.export does the work (its formats import torch only when they run)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from specforge.cli.common import add_verb

# specforge.export.FORMATS and ALL, named here because importing specforge.export loads the run
# machinery (jinja2, the spec's models) and every verb's parser is built at start-up;
# tests/cli/test_cli_validate.py checks the two agree.
FORMAT_CHOICES = ("merged", "gguf", "ollama", "all")


def register(subparsers: Any) -> None:
    sub = add_verb(
        subparsers,
        "export",
        run,
        "Export a run (merged model folder, GGUF, Ollama), each verified against the adapter "
        "on the run's held-out rows; the adapter folder is made portable too.",
    )
    sub.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder, runs/<name>/<id>")
    sub.add_argument("--format", required=True, choices=FORMAT_CHOICES, help="what to build")
    sub.add_argument(
        "--out",
        type=Path,
        help="the export's folder (default RUN_DIR/export/FORMAT; with `all`, one folder per format in it)",
    )
    sub.add_argument(
        "--quant",
        metavar="TYPE",
        help="gguf: the quantised file beside the f16 one (q8_0, default; q4_0, q4_k_m, q5_k_m, q6_k)",
    )
    sub.add_argument(
        "--min-agreement",
        action="append",
        metavar="[FORMAT=]RATE",
        help="share of held-out answers that must equal the adapter's (default 0.95), e.g. "
        "merged=0.99 (repeatable)",
    )


def run(args: argparse.Namespace) -> int:
    # imported here for start-up time (see FORMAT_CHOICES)
    from specforge.export import main

    return main(args)
