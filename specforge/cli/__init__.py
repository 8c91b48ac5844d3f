"""The `specforge` command: the top-level parser, the verb registry, and exit codes.

Exit codes: 0 ok, 1 invalid spec / stale output / failed run, 2 usage error.

Each verb is a module of this package with two functions:

    register(subparsers) -> None   adds its parser (common.add_verb) with func=run
    run(args) -> int               the verb; returns the exit code

VERBS below lists the modules in the order `specforge --help` shows them, with the verbs each
registers (a module may register a few related verbs). Adding a verb = one module here + a line
in VERBS. A command that names its verb imports only that verb's module. Arguments several verbs
take (a spec list, --set, --allow-remote-code) and the one-spec preamble (load_one) live in
common.py; a UsageError raised anywhere in a verb
exits 2 with `specforge: error: ...`, common.Exit(code) exits with that code.

validate, compile, check, diff and schema never import torch, transformers, peft, trl or datasets;
they run in every pre-commit hook, so the CLI uses argparse (no click/typer import cost), loads
rich only when writing to a terminal, and a verb module imports its heavy parts inside `run`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from specforge import __version__
from specforge.cli.common import Exit
from specforge.core.errors import UsageError

# The verb modules, in `specforge --help` order, with the verbs each registers.
VERBS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("validate", ("validate",)),
    ("schema", ("schema",)),
    ("compile", ("compile",)),
    ("check", ("check",)),
    ("diff", ("diff",)),
    ("run", ("run",)),
    ("explain", ("explain",)),
    ("sweep", ("sweep",)),
    ("compare", ("compare",)),
    ("report", ("report",)),
    ("prepare", ("prepare",)),
    ("export", ("export",)),
    ("import_config", ("import",)),
    ("serve", ("chat", "serve")),
    ("runs", ("runs",)),
)


def verb_module(module: str) -> ModuleType:
    return importlib.import_module(f"specforge.cli.{module}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command's parser. With `only` (a verb name) just that verb's module is imported and
    registered: `specforge validate` runs in every pre-commit hook, and importing all fifteen
    verb modules to parse its arguments was a fifth of its start-up."""
    parser = argparse.ArgumentParser(
        prog="specforge",
        description="Compile a YAML experiment spec into reviewable train.py / infer.py, and run it.",
    )
    parser.add_argument("--version", action="version", version=f"specforge {__version__}")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for module, verbs in VERBS:
        if only is None or only in verbs:
            verb_module(module).register(subparsers)
    return parser


def _named_verb(argv: list[str]) -> str | None:
    """The verb argv starts with, when it names one (else the whole parser answers: --help,
    --version, a typo)."""
    if argv and any(argv[0] in verbs for _, verbs in VERBS):
        return argv[0]
    return None


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    args = build_parser(only=_named_verb(argv)).parse_args(argv)
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
