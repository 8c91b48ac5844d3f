"""The run being exported, as every format reads it (ExportRun, load_run), and the errors and
default threshold the formats share. A leaf of the export package: the package's __init__, verify
and the format modules import it, it imports none of them. No torch here either."""

from __future__ import annotations

import importlib.util
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from specforge.core.errors import UsageError
from specforge.modelinfo.prepare import prepare_model
from specforge.runs.runner import spec_evaluation_rows
from specforge.spec.models import Spec

DEFAULT_THRESHOLD = 0.95  # share of held-out rows whose answer must equal the adapter's


class ExportError(Exception):
    """The export could not be built, or did not verify (exit 1)."""


class ExportUnavailable(Exception):
    """The format cannot be built by this installation (exit 2): its module or tools are missing."""


@dataclass
class ExportRun:
    """A finished run, as the export formats need it: its spec, scripts, held-out rows and the
    adapter's answers to them (the reference every export must reproduce)."""

    run_dir: Path
    record: dict  # run.json
    spec: Spec  # the spec as run (run.json's resolved copy)
    scripts: Path  # the folder of the train.py / infer.py that ran
    rows: list[dict]  # the rows the run's evaluate (or infer) step answered, in order
    reference: list[str]  # the tuned adapter's answer to each row
    reference_file: Path
    _infer: ModuleType | None = field(default=None, repr=False)

    def infer(self) -> ModuleType:
        """The run's own infer.py as a module (its main() does not run): load(), build_prompt(),
        answer(), STOP_TOKEN, GENERATION. A GGUF spec's prepared base folder is rebuilt if gone."""
        if self._infer is None:
            prepare_model(self.spec)  # a hash check when the folder is there
            path = self.scripts / "infer.py"
            name = f"specforge_export_infer_{abs(hash(path.resolve()))}"
            found = importlib.util.spec_from_file_location(name, path)
            if found is None or found.loader is None:
                raise ExportError(f"{path} cannot be loaded as a Python module")
            module = importlib.util.module_from_spec(found)
            found.loader.exec_module(module)
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
    rows, reference = _reference_answers(reference_file)
    if eval_path:  # the rows infer.py read, in its order: the reference must be for these
        lines = Path(eval_path).read_text(encoding="utf-8").splitlines()
        source = [json.loads(line) for line in lines if line.strip()]
        if source != rows:
            raise ExportError(
                f"{reference_file} does not answer the rows of {eval_path} "
                f"({len(rows)} vs {len(source)} rows, or their contents differ)"
            )
    return ExportRun(
        run_dir=run_dir,
        record=record,
        spec=spec,
        scripts=Path(record["scripts"]["dir"]),
        rows=rows,
        reference=reference,
        reference_file=reference_file,
    )


def _reference_answers(reference_file: Path) -> tuple[list[dict], list[str]]:
    """The held-out rows of the run's predictions (or examples) file and the adapter's answers."""
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
    return rows, reference
