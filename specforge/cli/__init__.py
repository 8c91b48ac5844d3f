"""The `specforge` command: the top-level parser, the verb registry, and exit codes.

Exit codes: 0 ok, 1 invalid spec / stale output / failed run, 2 usage error.

Each verb is a module of this package with two functions:

    register(subparsers) -> None   adds its parser (common.add_verb) with func=run
    run(args) -> int               the verb; returns the exit code

VERBS below lists them in the order `specforge --help` shows them. Adding a verb = one module
here + its name in the import below and a line in VERBS (a module may register a few related
verbs). Arguments several verbs take (a spec list, --set, --allow-remote-code)
and the one-spec preamble (load_one) live in common.py; a UsageError raised anywhere in a verb
exits 2 with `specforge: error: ...`, common.Exit(code) exits with that code.

validate, compile, check, diff and schema never import torch, transformers, peft, trl or datasets;
they run in every pre-commit hook, so the CLI uses argparse (no click/typer import cost), loads
rich only when writing to a terminal, and a verb module imports its heavy parts inside `run`.
"""

from __future__ import annotations

import argparse
import sys

from specforge import __version__
from specforge.cli import (
    check,
    compare,
    compile,
    diff,
    explain,
    export,
    import_config,
    prepare,
    report,
    run,
    runs,
    schema,
    serve,
    sweep,
    validate,
)
from specforge.cli.common import Exit
from specforge.core.errors import UsageError

# The verbs, in `specforge --help` order.
VERBS = (
    validate,
    schema,
    compile,
    check,
    diff,
    run,
    explain,
    sweep,
    compare,
    report,
    prepare,
    export,
    import_config,
    serve,
    runs,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="specforge",
        description="Compile a YAML experiment spec into reviewable train.py / infer.py, and run it.",
    )
    parser.add_argument("--version", action="version", version=f"specforge {__version__}")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb in VERBS:
        verb.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as err:
        print(f"specforge: error: {err}", file=sys.stderr)
        return 2
    except Exit as exit_:
        return exit_.code


def entry() -> None:
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `specforge diff ... | head`: the reader left; not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    sys.exit(code)
