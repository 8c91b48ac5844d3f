"""Cross-field rules: what the schema alone cannot say, one function per check, grouped by topic.

Each topic module registers its rules (validate/registry.py) when imported; importing this
package imports them all. `run_rules` runs them over a validated spec.
"""

from __future__ import annotations

from pathlib import Path

from specforge.core.errors import Diagnostic
from specforge.modelinfo.vocab import vocab_files
from specforge.spec.models import Spec, is_local_path
from specforge.spec.yaml_source import Document
from specforge.validate.registry import Context, check_all
from specforge.validate.rules import (  # noqa: F401  (imported to register their rules)
    data,
    full_finetune,
    launch,
    method,
    model,
    modes,
    sweep,
    tokens,
    training,
)

__all__ = ["files_read", "run_rules"]


def run_rules(
    spec: Spec, doc: Document, *, allow_remote_code: bool, check_files: bool
) -> list[Diagnostic]:
    """Every registered rule's diagnostics for `spec`, in rule-id order."""
    ctx = Context(spec, doc, allow_remote_code=allow_remote_code, check_files=check_files)
    return check_all(ctx)


def files_read(spec: Spec) -> list[Path]:
    """Every file or folder the rules look at (SF009/SF010/SF020 and the vocabulary check):
    `check`'s verdict cache fingerprints them, so a change to any of them validates the spec
    afresh. Keep in step with the rules in data.py and the vocabulary look-up."""
    paths = [
        Path(source.path).expanduser()
        for source in spec.dataset.source_list()
        if is_local_path(source.path)
    ]
    if spec.inference.eval_data is not None:
        paths.append(Path(spec.inference.eval_data).expanduser())
    if is_local_path(spec.model.name) and not spec.model.gguf_file:
        # training.layout auto plans from the folder's config.json (codegen/plan.py)
        paths.append(Path(spec.model.name).expanduser() / "config.json")
    return [*paths, *vocab_files(spec)]
