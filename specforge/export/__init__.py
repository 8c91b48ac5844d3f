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
import importlib.util
import inspect
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from specforge.core.errors import UsageError

FORMATS = ("merged", "gguf", "ollama")  # `--format all`: in this order (ollama reads the gguf)
ALL = "all"
DEFAULT_THRESHOLD = 0.95  # share of held-out rows whose answer must equal the adapter's


class ExportError(Exception):
    """The export could not be built, or did not verify (exit 1)."""


class ExportUnavailable(Exception):
    """The format cannot be built by this installation (exit 2): its module or tools are missing."""


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


@dataclass
class ExportRun:
    """A finished run, as the export formats need it: its spec, scripts, held-out rows and the
    adapter's answers to them (the reference every export must reproduce)."""

    run_dir: Path
    record: dict  # run.json
    spec: object  # specforge.spec.models.Spec, the spec as run (run.json's resolved copy)
    scripts: Path  # the folder of the train.py / infer.py that ran
    rows: list[dict]  # the rows the run's evaluate (or infer) step answered, in order
    reference: list[str]  # the tuned adapter's answer to each row
    reference_file: Path
    _infer: ModuleType | None = field(default=None, repr=False)

    def infer(self) -> ModuleType:
        """The run's own infer.py as a module (its main() does not run): load(), build_prompt(),
        answer(), STOP_TOKEN, GENERATION. A GGUF spec's prepared base folder is rebuilt if gone."""
        if self._infer is None:
            from specforge.modelinfo.prepare import prepare_model

            prepare_model(self.spec)  # a hash check when the folder is there
            path = self.scripts / "infer.py"
            name = f"specforge_export_infer_{abs(hash(path.resolve()))}"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            self._infer = module
        return self._infer

    def load_adapter(self):
        """(PeftModel, tokenizer) exactly as the run's evaluation loaded them (infer.py's load)."""
        try:
            return self.infer().load(self.run_dir)
        except SystemExit as err:  # infer.py reports a missing model folder or token mismatch so
            raise ExportError(f"infer.py could not load {self.run_dir}: {err}") from None

    @property
    def tokenizer_dir(self) -> Path:
        """The run's saved tokenizer: beside its adapter, or its whole model (lora: null)."""
        return self.run_dir / ("model" if self.spec.lora is None else "adapter")

    def prompts(self) -> list[str]:
        """infer.py's prompts for the held-out rows (a chat prompt needs the run's tokenizer)."""
        infer = self.infer()
        if len(inspect.signature(infer.build_prompt).parameters) == 1:
            return [infer.build_prompt(row) for row in self.rows]
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_dir)
        return [infer.build_prompt(row, tokenizer) for row in self.rows]


def load_run(run_dir: Path) -> ExportRun:
    """The run in `run_dir`, checked: it succeeded and its adapter answered held-out rows."""
    from specforge.runs.runner import spec_evaluation_rows
    from specforge.spec.models import Spec

    record_path = run_dir / "run.json"
    if not record_path.is_file():
        raise UsageError(f"{run_dir}: no such run folder (no run.json there)")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    if record.get("status") != "succeeded":
        raise ExportError(
            f"{run_dir} has status {record.get('status')!r} (failed step: "
            f"{record.get('failed_step')}); only a succeeded run can be exported"
        )
    spec = Spec.model_validate(record["spec"]["resolved"])
    eval_path = spec_evaluation_rows(spec, run_dir)
    reference_file = run_dir / ("predictions.jsonl" if eval_path else "examples.jsonl")
    if not reference_file.is_file():
        raise ExportError(f"{reference_file} is missing: the adapter's answers to compare with")
    rows, reference = [], []
    for line in reference_file.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            reference.append(str(row.pop("prediction")))
            rows.append(row)
    if not rows:
        raise ExportError(f"{reference_file} holds no rows to verify an export with")
    if eval_path:  # the rows infer.py read, in its order: the reference must be for these
        lines = Path(eval_path).read_text(encoding="utf-8").splitlines()
        source = [json.loads(line) for line in lines if line.strip()]
        if source != rows:
            raise ExportError(
                f"{reference_file} does not answer the rows of {eval_path} "
                f"({len(rows)} vs {len(source)} rows, or their contents differ)"
            )
    scripts = Path(record["scripts"]["dir"])
    return ExportRun(run_dir, record, spec, scripts, rows, reference, reference_file)


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
) -> list:
    """Export `run_dir` in each format, verify each, record each in run.json; the results."""
    from specforge.export import verify
    from specforge.runs import model_card as adapter

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
        portable = adapter.make_portable(run_dir, run.record)
        verify.record_entry(run_dir, "adapter", portable)
        base = portable["base_model_name_or_path"]
        say(f"adapter: {run_dir / 'adapter'} (base {base}, README.md)")
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


def main(args) -> int:
    """The `export` verb (specforge.cli parses; this runs): 0 all verified, 1 any failed."""
    from specforge.core.console import say

    formats = list(FORMATS) if args.format == ALL else [args.format]
    thresholds = parse_thresholds(args.min_agreement, formats)
    if not args.run_dir.is_dir():
        raise UsageError(f"{args.run_dir}: no such run folder")
    try:
        results = export_run(
            args.run_dir, formats, out=args.out, thresholds=thresholds, quant=args.quant, say=say
        )
    except ExportUnavailable as err:
        print(f"specforge: error: {err}", file=sys.stderr)
        return 2
    except ExportError as err:
        say(f"[red]error[/]: {err}")
        return 1
    return 0 if all(result.passed for result in results) else 1
