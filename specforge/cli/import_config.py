"""`specforge import`: turn an axolotl or LLaMA-Factory config into a spec, and say exactly what
was not carried over. Exit 0: everything that affects training was carried; 1: something that
affects training was not (the spec is written only with --allow-partial), or the config is out of
scope; 2: usage errors."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from specforge.cli.common import add_verb
from specforge.core.errors import UsageError


def register(subparsers: Any) -> None:
    sub = add_verb(
        subparsers,
        "import",
        run,
        "Turn an axolotl or LLaMA-Factory config into a spec; list every key not carried over.",
    )
    sub.add_argument("config", type=Path, metavar="CONFIG", help="the config file (YAML)")
    sub.add_argument(
        "--from", dest="tool", choices=["axolotl", "llamafactory"], help="default: detected"
    )
    sub.add_argument(
        "--dataset-info",
        type=Path,
        metavar="PATH",
        help="LLaMA-Factory's dataset_info.json (default: dataset_dir, beside the config, ./data)",
    )
    sub.add_argument(
        "-o", "--output", type=Path, help="the spec to write (default: specs/NAME.yaml)"
    )
    sub.add_argument(
        "--allow-partial",
        action="store_true",
        help="write the spec even when settings that affect training could not be carried over",
    )


def report_lines(result) -> list[str]:
    """Every source key not carried over one to one, by kind, with the reason."""
    # imported here for start-up time: the importers package loads the spec's pydantic models
    from specforge.importers.result import IGNORED, KINDS, NO_EFFECT, UNSUPPORTED

    lines = []
    for kind in KINDS:
        found = [d for d in result.dropped if d.kind == kind]
        if not found:
            continue
        title = "unsupported (affects training)" if kind == UNSUPPORTED else kind
        lines.append(f"  {title}:")
        if kind in (NO_EFFECT, IGNORED):  # one line per reason, the keys joined
            reasons: dict[str, list[str]] = {}
            for d in found:
                reasons.setdefault(d.reason, []).append(d.key)
            lines += [f"    {', '.join(keys)}: {reason}" for reason, keys in reasons.items()]
        else:
            lines += [f"    {d.key}: {d.reason}" for d in found]
    return lines


def run(args: argparse.Namespace) -> int:
    # imported here for start-up time: the importers load the spec's pydantic models
    from specforge.core.console import print_diagnostics
    from specforge.core.files import write_atomic
    from specforge.importers import import_config
    from specforge.importers.emit import TOOL_NAMES, render, validate

    result = import_config(args.config, args.tool, args.dataset_info)
    output = args.output or Path("specs") / f"{result.name}.yaml"
    print(f"{args.config}: {TOOL_NAMES[result.tool]} config")
    if result.refused is not None:
        print(f"refused: {result.refused}; nothing written")
        return 1
    lines = report_lines(result)
    print("not carried over:" if lines else "every key was carried over")
    print("\n".join([*lines, *(f"note: {n}" for n in result.notes)]))
    text = render(result)
    errors, warnings = validate(text, output.as_posix())
    blocking = result.blocking
    if errors and blocking:  # the spec lacks what could not be carried (its data, its method)
        print(
            f"without the unsupported settings above there is no valid spec; {output} not written"
        )
        return 1
    print_diagnostics(errors + warnings)
    if errors:
        print(f"the imported spec does not validate; {output} not written")
        return 1
    if blocking and not args.allow_partial:
        print(
            f"{len(blocking)} setting(s) that affect training could not be carried over; "
            f"{output} not written (pass --allow-partial to write it anyway)"
        )
        return 1
    if output.exists():
        raise UsageError(f"{output} exists; remove it or choose another -o")
    output.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(output, text.encode())
    print(
        f"wrote {output}" + (f" (partial: {len(blocking)} setting(s) missing)" if blocking else "")
    )
    return 1 if blocking else 0
