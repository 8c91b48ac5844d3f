"""The `specforge` command: verbs and exit codes only.

Exit codes: 0 ok, 1 invalid spec / stale output / failed run, 2 usage error.
validate, compile, check, diff and schema never import torch, transformers, peft, trl or datasets;
they run in every pre-commit hook, so the CLI uses argparse (no click/typer import cost) and loads
rich only when writing to a terminal.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from specforge import __version__
from specforge.core.console import print_diagnostics, print_json, say
from specforge.core.errors import SpecError, UsageError

if TYPE_CHECKING:
    from specforge.validate.load import LoadedSpec


def load_spec(*args, **kwargs) -> LoadedSpec:
    """specforge.validate.load.load_spec, imported on first use: pydantic's model building is most of
    validate's time, and `check` answers from its verdict cache without it."""
    from specforge.validate.load import load_spec as load

    return load(*args, **kwargs)


SPECS_DIR = Path("specs")


class Exit(Exception):
    def __init__(self, code: int):
        self.code = code


def load_one(path: Path, load=None, **kwargs):
    """The preamble of the verbs that take one spec: a missing file is a usage error (2), a
    spec's diagnostics are printed and exit 1, its warnings are printed. Returns what `load`
    (default load_spec(path, **kwargs)) returned: anything with `warnings`."""
    if not path.is_file():
        raise UsageError(f"{path}: no such spec file")
    try:
        loaded = load(path) if load is not None else load_spec(path, **kwargs)
    except SpecError as err:
        print_diagnostics(err.diagnostics)
        raise Exit(1) from None
    print_diagnostics(loaded.warnings)
    return loaded


def default_specs() -> list[Path]:
    return sorted(p for p in SPECS_DIR.glob("*.yaml") if not p.name.startswith("_"))


def resolve_spec_paths(specs: list[Path] | None) -> list[Path]:
    paths = list(specs) if specs else default_specs()
    if not paths:
        raise UsageError("no specs given and none found in specs/")
    for path in paths:
        if not path.is_file():
            raise UsageError(f"{path}: no such spec file")
    return paths


def load_all(
    paths: list[Path], overrides, allow_remote_code: bool
) -> tuple[list[LoadedSpec], list]:
    """Load every spec, collecting all diagnostics (errors and warnings) across them."""
    loaded, diagnostics = [], []
    for path in paths:
        try:
            item = load_spec(path, overrides, allow_remote_code=allow_remote_code)
        except SpecError as err:
            diagnostics.extend(err.diagnostics)
            continue
        loaded.append(item)
        diagnostics.extend(item.warnings)
    return loaded, diagnostics


def cmd_validate(args) -> int:
    paths = resolve_spec_paths(args.specs)
    loaded, diagnostics = load_all(paths, args.set, args.allow_remote_code)
    failed = any(d.severity == "error" for d in diagnostics)
    if args.format == "json":
        print_json(
            {
                "valid": not failed,
                "specs": [p.as_posix() for p in paths],
                "diagnostics": [d.to_json() for d in diagnostics],
            }
        )
    else:
        print_diagnostics(diagnostics)
        for item in loaded:
            say(f"[green]ok[/] {item.label} ({item.spec.name})")
    return 1 if failed else 0


def cmd_schema(args) -> int:
    from specforge.spec.schema import schema_text

    text = schema_text()
    if args.output is None:
        sys.stdout.write(text)
    else:
        from specforge.core.files import write_atomic

        write_atomic(args.output, text.encode())
    return 0


def load_for_compile(specs, overrides, allow_remote_code: bool) -> list[LoadedSpec]:
    """Load every spec; on any invalid spec (or two specs sharing a name) print all and exit 1."""
    loaded, diagnostics = load_all(resolve_spec_paths(specs), overrides, allow_remote_code)
    print_diagnostics(diagnostics)
    if any(d.severity == "error" for d in diagnostics):
        raise Exit(1)
    owners: dict[str, str] = {}
    for item in loaded:
        if item.spec.name in owners:
            say(
                f"[red]error[/]: {item.label} and {owners[item.spec.name]} share the name "
                f"{item.spec.name!r}"
            )
            raise Exit(1)
        owners[item.spec.name] = item.label
    return loaded


def compile_one(item: LoadedSpec, out_dir: Path) -> dict[str, str]:
    """Compile in memory and remember the output hashes (so a later `check` can skip rendering)."""
    from specforge.codegen.cache import compile_key, remember
    from specforge.codegen.compiler import compile_files

    files = compile_files(item, out_dir.as_posix())
    remember(compile_key(item, out_dir.as_posix()), files)
    return files


def compile_all(specs, overrides, allow_remote_code: bool, out_root: Path | None = None):
    """Load and compile every spec in memory: [(output folder, {file: text})]."""
    from specforge.codegen.paths import GENERATED_DIR

    out_root = out_root or Path(GENERATED_DIR)
    loaded = load_for_compile(specs, overrides, allow_remote_code)
    return [
        (out_root / item.spec.name, compile_one(item, out_root / item.spec.name)) for item in loaded
    ]


def cmd_compile(args) -> int:
    from specforge.core.files import EscapeError, write_all

    if args.set and args.out is None:
        raise UsageError(
            "compile --set needs --out DIR: generated/ must match the checked-in specs "
            "(`specforge run --set ...` compiles an overridden run into its run folder)"
        )
    outputs = compile_all(args.specs, args.set, args.allow_remote_code, args.out)
    try:
        written = write_all(outputs)
    except EscapeError as err:
        say(f"[red]error[/]: {err}")
        return 1
    for out_dir, _ in outputs:
        say(f"[green]compiled[/] {out_dir}")
    say(f"{len(written)} file(s) changed")
    return 0


def cmd_check(args) -> int:
    from specforge.codegen import check_cache

    paths = resolve_spec_paths(args.specs)
    overrides = args.set or []
    names = (
        None
        if check_cache.disabled()
        else [check_cache.known_good(p, overrides, args.allow_remote_code) for p in paths]
    )
    if names is None or None in names or len(set(names)) != len(names):
        return full_check(args)
    problems = orphans(set(names)) if not args.specs and not args.set else 0
    if problems:
        say("run `specforge compile` and commit the result")
        return 1
    say(f"[green]ok[/] {len(names)} spec(s) match generated/")
    return 0


def orphans(owned: set[str]) -> int:
    """Report folders of generated/ that no spec owns (when every spec was checked)."""
    from specforge.codegen.paths import GENERATED_DIR

    found = 0
    root = Path(GENERATED_DIR)
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if folder.name not in owned:
            found += 1
            say(f"[red]orphan[/] {folder}: no spec in specs/ is named {folder.name!r}")
    return found


def full_check(args) -> int:
    """Load, compile in memory and compare; stores a verdict for each spec that passes cleanly."""
    from specforge.codegen import check_cache
    from specforge.codegen.cache import compile_key, outputs_on_disk, remembered
    from specforge.codegen.paths import GENERATED_DIR
    from specforge.core.files import changes, strays, unified_diff

    loaded = load_for_compile(args.specs, args.set, args.allow_remote_code)
    problems = 0
    for item in loaded:
        out_dir = Path(GENERATED_DIR) / item.spec.name
        on_disk = outputs_on_disk(out_dir)
        if on_disk and remembered(compile_key(item, out_dir.as_posix())) == on_disk:
            check_cache.record(item, out_dir, args.allow_remote_code, on_disk)
            continue  # same inputs as a compile whose output is byte-identical on disk
        files = compile_one(item, out_dir)
        found = problems
        for path, old, new in changes(out_dir, files):
            problems += 1
            if old is None:  # a diff from /dev/null would print the whole file
                say(f"[red]missing[/]: {path} (run specforge compile)")
                continue
            sys.stdout.write(unified_diff(path, old, new))
            say(f"[red]stale[/] {path}: differs from a fresh compile (stale or edited by hand)")
        for path in strays(out_dir, files):
            problems += 1
            say(f"[red]stray[/] {path}: not produced by the spec")
        if problems == found:  # the disk holds exactly this compile's files
            check_cache.record(item, out_dir, args.allow_remote_code, on_disk)
    if not args.specs and not args.set:  # every spec was compiled: unowned folders are leftovers
        problems += orphans({item.spec.name for item in loaded})
    if problems:
        say("run `specforge compile` and commit the result")
        return 1
    say(f"[green]ok[/] {len(loaded)} spec(s) match generated/")
    return 0


def cmd_diff(args) -> int:
    from specforge.core.files import changes, unified_diff

    outputs = compile_all([args.spec], args.set, args.allow_remote_code)
    found = [c for out_dir, files in outputs for c in changes(out_dir, files)]
    for path, old, new in found:
        sys.stdout.write(unified_diff(path, old, new))
    if not found:
        say("no changes")
    return 1 if found else 0


def cmd_run(args) -> int:
    from specforge.runs.lineage import ParentError
    from specforge.runs.runner import CannotResume, StaleScripts, describe, execute, resume

    if args.dry_run and args.resume is not None:
        raise UsageError("--dry-run describes a new run; it does not combine with --resume")
    loaded = load_one(args.spec, overrides=args.set, allow_remote_code=args.allow_remote_code)
    try:
        if args.dry_run:
            describe(loaded, compile_first=args.compile)
            return 0
        if args.launcher == "slurm":
            from specforge.runs.slurm import submit

            return submit(loaded, compile_first=args.compile)
        if args.resume is not None:
            return resume(loaded, args.resume or None, compile_first=args.compile)
        return execute(loaded, compile_first=args.compile)
    except (StaleScripts, CannotResume, ParentError) as err:
        say(f"[red]error[/]: {err}")
        return 1


def cmd_prepare(args) -> int:
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


def cmd_explain(args) -> int:
    from specforge.explain import Unknown, explain, render_text

    loaded = load_one(args.spec, overrides=args.set, allow_remote_code=args.allow_remote_code)
    try:
        report = explain(loaded.spec, args.gpu)
    except Unknown as err:
        say(f"[red]error[/]: {loaded.label}: {err}")
        return 1
    if args.format == "json":
        print_json(report)
    else:
        print(render_text(report))
    return 0


def cmd_sweep(args) -> int:
    from specforge.experiments.sweep import describe, load_sweep, run_sweep
    from specforge.experiments.sweep_slurm import submit_array

    sweep = load_one(
        args.spec, lambda path: load_sweep(path, args.set, args.grid, args.allow_remote_code)
    )
    if args.dry_run:
        describe(sweep)
        return 0
    return submit_array(sweep) if args.launcher == "slurm" else run_sweep(sweep)


def cmd_compare(args) -> int:
    from specforge.experiments.compare import main as compare_main

    return compare_main(args)


def cmd_export(args) -> int:
    from specforge.export import main as export_main

    return export_main(args)


RUN_COLUMNS = (
    ("name", "spec"),
    ("run_id", "run"),
    ("status", "status"),
    ("steps", "steps"),
    ("final_train_loss", "train loss"),
    ("final_eval_loss", "eval loss"),
    ("accuracy_tuned", "acc tuned"),
    ("lenient_accuracy_tuned", "lenient tuned"),
    ("accuracy_base", "acc base"),
    ("lenient_accuracy_base", "lenient base"),
    ("sweep", "sweep"),
)
# shown only when some listed run has them (runs recorded before infer.py reported them do not)
OPTIONAL_COLUMNS = ("lenient_accuracy_tuned", "lenient_accuracy_base", "sweep")


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def cmd_runs(args) -> int:
    """List runs; reading a record applies the dead-runner rule (and rewrites it)."""
    from specforge.runs.record import base_side, list_runs, summary_row

    name = args.spec
    if name is not None and Path(name).is_file():  # a spec file: its runs (by the spec's name)
        try:
            name = load_spec(Path(name), None, allow_remote_code=True, check_files=False).spec.name
        except SpecError as err:
            print_diagnostics(err.diagnostics)
            return 1
    from specforge.experiments.runs_table import export, select

    runs = select(list_runs(name), status=args.status, sweep=args.sweep)
    if args.export:
        export(runs, args.export)
        return 0
    rows = [summary_row(run_dir, data) for run_dir, data in runs]
    if args.format == "json":
        print_json(rows)
        return 0
    columns = [
        (key, label)
        for key, label in RUN_COLUMNS
        if key not in OPTIONAL_COLUMNS or any(row[key] is not None for row in rows)
    ]
    # a run that continued a parent (model.adapter) scored that parent on the base side
    side = base_side(row["base_model"] for row in rows)
    columns = [(key, label.replace(" base", f" {side}")) for key, label in columns]
    table = [[_cell(row[key]) for key, _ in columns] for row in rows]
    headers = [label for _, label in columns]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        rich_table = Table(header_style="bold")
        for header in headers:
            rich_table.add_column(header, no_wrap=header in ("spec", "run"))
        for cells in table:
            rich_table.add_row(*cells)
        Console().print(rich_table)
    else:  # piped: plain aligned columns, one run a line, for grep and awk
        widths = [max(len(c) for c in column) for column in zip(headers, *table)]
        for cells in [headers, *table]:
            print("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
    if not rows:
        say(f"no runs under runs/{name or ''}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="specforge",
        description="Compile a YAML experiment spec into reviewable train.py / infer.py, and run it.",
    )
    parser.add_argument("--version", action="version", version=f"specforge {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    def add(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    def spec_list(sub):
        sub.add_argument(
            "specs",
            nargs="*",
            type=Path,
            metavar="SPEC",
            help="spec files (default: specs/*.yaml, except _partials)",
        )

    def remote(sub):
        sub.add_argument(
            "--allow-remote-code", action="store_true", help="permit model.trust_remote_code: true"
        )

    def overrides(sub):
        sub.add_argument(
            "--set",
            action="append",
            default=None,
            metavar="KEY=VALUE",
            help="override a value, e.g. --set lora.r=8 (repeatable)",
        )

    sub = add(
        "validate",
        cmd_validate,
        "Check specs: schema and cross-field rules, every problem located.",
    )
    spec_list(sub)
    overrides(sub)
    remote(sub)
    sub.add_argument("--format", choices=["text", "json"], default="text")

    sub = add("schema", cmd_schema, "Print the spec's JSON Schema.")
    sub.add_argument("--output", "-o", type=Path, help="write to a file instead of stdout")

    sub = add("compile", cmd_compile, "Write generated/<name>/ (atomically, all or nothing).")
    spec_list(sub)
    overrides(sub)
    remote(sub)
    sub.add_argument(
        "--out", type=Path, help="output root instead of generated/ (needed with --set)"
    )

    sub = add("check", cmd_check, "Fail with a diff when generated/ is stale or edited by hand.")
    spec_list(sub)
    overrides(sub)
    remote(sub)

    sub = add(
        "diff",
        cmd_diff,
        "Show what compile would change, without writing "
        "(with --set: what an override would change in the code).",
    )
    sub.add_argument("spec", type=Path, metavar="SPEC")
    overrides(sub)
    remote(sub)

    sub = add("run", cmd_run, "Compile-check, then run train.py and infer.py; record the run.")
    sub.add_argument("spec", type=Path, metavar="SPEC")
    overrides(sub)
    remote(sub)
    sub.add_argument("--compile", action="store_true", help="recompile generated/<name> if stale")
    sub.add_argument("--dry-run", action="store_true", help="print what would run")
    sub.add_argument(
        "--launcher",
        choices=["local", "slurm"],
        default="local",
        help="slurm: submit generated/<name>/submit.sbatch with sbatch",
    )
    sub.add_argument(
        "--resume",
        nargs="?",
        const="",
        metavar="RUN_ID",
        help="continue an unfinished run in its folder, from its last checkpoint "
        "(default: the spec's latest run that did not succeed)",
    )

    sub = add(
        "explain",
        cmd_explain,
        "Predict a spec's cost (parameters, tokens and FLOPs per step, memory, time) and show "
        "the execution plan; loads no weights.",
    )
    sub.add_argument("spec", type=Path, metavar="SPEC")
    overrides(sub)
    remote(sub)
    sub.add_argument(
        "--gpu",
        choices=["H200", "H100", "A100-80GB", "cpu"],
        help="plan for this device (default: training.gpu)",
    )
    sub.add_argument("--format", choices=["text", "json"], default="text")

    sub = add(
        "sweep",
        cmd_sweep,
        "Run one experiment per point of a grid (--grid or the spec's sweep:), grouped under a "
        "sweep id; the same command again runs only the points not yet succeeded.",
    )
    sub.add_argument("spec", type=Path, metavar="SPEC")
    sub.add_argument(
        "--grid",
        action="append",
        default=None,
        metavar="KEY=V1,V2",
        help="a swept key and its values, e.g. --grid lora.r=8,16 (repeatable; replaces the "
        "spec's sweep.grid)",
    )
    overrides(sub)
    remote(sub)
    sub.add_argument("--dry-run", action="store_true", help="print the sweep id and its points")
    sub.add_argument(
        "--launcher",
        choices=["local", "slurm"],
        default="local",
        help="local: the points one after another here; slurm: one array job, a task per point",
    )

    sub = add(
        "compare",
        cmd_compare,
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
        const=Path("compare.png"),
        type=Path,
        metavar="PNG",
        help="write the loss curves overlaid (and, for a one-key sweep, the metric against the "
        "swept value) to PNG (default compare.png)",
    )

    sub = add(
        "prepare",
        cmd_prepare,
        "Dequantise the spec's GGUF into a plain model folder (once; `run` does it too); "
        "print the folder.",
    )
    sub.add_argument("spec", type=Path, metavar="SPEC")
    overrides(sub)
    remote(sub)

    from specforge.export import ALL, FORMATS  # names only: the formats load when they run

    sub = add(
        "export",
        cmd_export,
        "Export a run (merged model folder, GGUF, Ollama), each verified against the adapter "
        "on the run's held-out rows; the adapter folder is made portable too.",
    )
    sub.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder, runs/<name>/<id>")
    sub.add_argument("--format", required=True, choices=[*FORMATS, ALL], help="what to build")
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

    sub = add("runs", cmd_runs, "List runs: status, steps, losses, accuracy; filter; export.")
    sub.add_argument(
        "spec", nargs="?", metavar="SPEC", help="a spec file or name (default: every spec's runs)"
    )
    sub.add_argument("--format", choices=["text", "json"], default="text")
    sub.add_argument(
        "--status",
        action="append",
        metavar="STATUS",
        help="only runs with this status: succeeded, failed, interrupted, running, ... "
        "(repeatable)",
    )
    sub.add_argument("--sweep", metavar="SWEEP_ID", help="only the runs of this sweep")
    sub.add_argument(
        "--export",
        choices=["jsonl", "csv"],
        help="print every selected record instead of the table: jsonl (each run.json) or csv "
        "(one row a run: summary, metrics, every resolved spec key)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
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
