"""`specforge prepare`: dequantise the spec's GGUF into a plain model folder and print it."""

from __future__ import annotations

import argparse
from typing import Any

from specforge.cli.common import add_overrides, add_remote_code, add_spec, add_verb, load_one
from specforge.core.console import say


def register(subparsers: Any) -> None:
    sub = add_verb(
        subparsers,
        "prepare",
        run,
        "Dequantise the spec's GGUF into a plain model folder (once; `run` does it too); "
        "print the folder.",
    )
    add_spec(sub)
    add_overrides(sub)
    add_remote_code(sub)


def run(args: argparse.Namespace) -> int:
    # imported here for start-up time: it loads the spec's pydantic models
    from specforge.modelinfo.prepare import PrepareError, prepare_model

    loaded = load_one(  # the model only: data files need not exist yet
        args.spec, overrides=args.set, allow_remote_code=args.allow_remote_code, check_files=False
    )
    try:
        folder = prepare_model(loaded.spec, say=say)
    except PrepareError as err:
        say(f"[red]error[/]: {err}")
        return 1
    if folder is None:
        say(f"{loaded.label}: nothing to prepare (no model.package with a gguf_file)")
        return 0
    print(folder)
    return 0
