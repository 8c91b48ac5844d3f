"""`specforge export RUN_DIR`: a trained run as artifacts other runtimes load, each verified.

A format is a module of this package (FORMATS) with one function:

    export(run: ExportRun, out_dir: Path, threshold: float) -> verify.ExportResult

It writes the artifact into out_dir (verify.staged_folder swaps it in whole), answers the run's
held-out prompts through the artifact's own runtime, and hands the answers to verify.finish,
which compares them with the adapter's (RUN_DIR/predictions.jsonl) and writes eval.json. A format
whose module is not installed, or whose optional `unavailable()` returns a reason (a tool is
missing), is refused before anything is written. Every export also makes the adapter itself
portable (specforge.runs.model_card). Nothing here imports torch; the format modules do, lazily.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path
from types import ModuleType

from specforge.core import console
from specforge.core.errors import UsageError
from specforge.export import verify
from specforge.export.run import (
    DEFAULT_THRESHOLD,
    ExportError,
    ExportRun,
    ExportUnavailable,
    load_run,
)
from specforge.runs import model_card

__all__ = [
    "ALL",
    "DEFAULT_THRESHOLD",
    "FORMATS",
    "ExportError",
    "ExportRun",
    "ExportUnavailable",
    "export_run",
    "format_module",
    "load_run",
    "main",
    "out_dirs",
    "parse_thresholds",
]

FORMATS = ("merged", "gguf", "ollama")  # `--format all`: in this order (ollama reads the gguf)
ALL = "all"


def format_module(name: str) -> ModuleType:
    """The module that builds `name`; ExportUnavailable when it is not installed or says why not."""
    if name not in FORMATS:
        raise UsageError(f"unknown export format {name!r}; choose from {', '.join(FORMATS)}, all")
    try:
        module = importlib.import_module(f"specforge.export.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"specforge.export.{name}":
            raise  # the module exists but a library it imports at the top is missing: show it
        raise ExportUnavailable(
            f"--format {name} is not available in this version of specforge "
            f"(specforge/export/{name}.py is not there yet)"
        ) from None
    reason = module.unavailable() if hasattr(module, "unavailable") else None
    if reason:
        raise ExportUnavailable(f"--format {name} is not available: {reason}")
    return module


def out_dirs(run_dir: Path, formats: list[str], out: Path | None) -> dict[str, Path]:
    """Default RUN_DIR/export/<format>; --out DIR is the folder of a single format, else the
    parent of one folder per format."""
    if out is None:
        return {name: run_dir / "export" / name for name in formats}
    if len(formats) == 1:
        return {formats[0]: out}
    return {name: out / name for name in formats}


def parse_thresholds(items: list[str] | None, formats: list[str]) -> dict[str, float]:
    """--min-agreement merged=0.95 (or a bare 0.95 for every format) -> {format: threshold}."""
    found = dict.fromkeys(formats, DEFAULT_THRESHOLD)
    for item in items or []:
        name, _, value = item.rpartition("=")
        targets = [name] if name else formats
        if name and name not in FORMATS:
            raise UsageError(f"--min-agreement {item}: unknown format {name!r}")
        try:
            rate = float(value)
        except ValueError:
            rate = -1.0
        if not 0.0 <= rate <= 1.0:
            raise UsageError(f"--min-agreement {item}: the rate must be between 0 and 1")
        found.update(dict.fromkeys(targets, rate))
    return {name: found[name] for name in formats}


def export_run(
    run_dir: Path,
    formats: list[str],
    *,
    out: Path | None = None,
    thresholds: dict[str, float] | None = None,
    quant: str | None = None,
    say=print,
) -> list[verify.ExportResult]:
    """Export `run_dir` in each format, verify each, record each in run.json; the results."""
    modules = {name: format_module(name) for name in formats}  # refuse before writing anything
    run = load_run(run_dir)
    if run.spec.lora is None:  # full fine-tuning: no adapter, and nothing to merge
        if formats == ["merged"]:
            raise ExportError(
                f"{run_dir} is a full fine-tuning run: {run_dir / 'model'} holds the whole "
                "model already, with nothing to merge; load it as it is, or export --format gguf"
            )
        if "merged" in formats:
            formats = [name for name in formats if name != "merged"]
            say(f"merged: skipped, {run_dir / 'model'} is the whole model already (lora: null)")
    else:
        portable = model_card.make_portable(run_dir, run.record)
        verify.record_entry(run_dir, "adapter", portable)
        base = portable["base_model_name_or_path"]
        say(f"adapter: {run_dir / 'adapter'} (base {base}, README.md)")
    refuse_prequantized(run, formats)
    results = []
    for name, folder in out_dirs(run_dir, formats, out).items():
        threshold = (thresholds or {}).get(name, DEFAULT_THRESHOLD)
        started = time.monotonic()
        say(f"{name}: exporting to {folder}")
        try:
            options = {"quant": quant} if name == "gguf" and quant else {}
            result = modules[name].export(run, folder, threshold, **options)
        except ExportError as err:
            result = verify.ExportResult(name, folder, threshold, error=str(err))
        result.total_seconds = round(time.monotonic() - started, 1)
        verify.record_export(run_dir, result)
        say(f"{name}: {result.summary()}")
        results.append(result)
    return results


def refuse_prequantized(run: ExportRun, formats: list[str]) -> None:
    """Every format merges the adapter into the base first (ollama packs the gguf): a GPTQ, AWQ
    or compressed-tensors base holds packed integers that a float update cannot be added to."""
    pre = run.spec.model.prequantized
    if pre is None or not formats:
        return
    raise ExportError(
        f"{run.run_dir} trained its adapter on a {pre.method} checkpoint "
        f"({run.spec.model.name}): its packed {pre.bits}-bit weights cannot take the adapter "
        f"merged in, so --format {', '.join(formats)} cannot be built. The adapter itself is "
        f"exported ({run.run_dir / 'adapter'}): load it on the same checkpoint with peft, or "
        "train on the float weights the checkpoint was quantized from to export a merged model"
    )


def main(args) -> int:
    """The `export` verb (specforge.cli parses; this runs): 0 all verified, 1 any failed."""
    formats = list(FORMATS) if args.format == ALL else [args.format]
    thresholds = parse_thresholds(args.min_agreement, formats)
    if not args.run_dir.is_dir():
        raise UsageError(f"{args.run_dir}: no such run folder")
    try:
        results = export_run(
            args.run_dir,
            formats,
            out=args.out,
            thresholds=thresholds,
            quant=args.quant,
            say=console.say,
        )
    except ExportUnavailable as err:
        print(f"specforge: error: {err}", file=sys.stderr)
        return 2
    except ExportError as err:
        console.say(f"[red]error[/]: {err}")
        return 1
    return 0 if all(result.passed for result in results) else 1
