"""`specforge schema`: the spec's JSON Schema, to stdout or a file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from specforge.cli.common import add_verb
from specforge.core.files import write_atomic


def register(subparsers: Any) -> None:
    sub = add_verb(subparsers, "schema", run, "Print the spec's JSON Schema.")
    sub.add_argument("--output", "-o", type=Path, help="write to a file instead of stdout")


def run(args: argparse.Namespace) -> int:
    # imported here for start-up time: the schema builds pydantic's models
    from specforge.spec.schema import schema_text

    text = schema_text()
    if args.output is None:
        sys.stdout.write(text)
    else:
        write_atomic(args.output, text.encode())
    return 0
