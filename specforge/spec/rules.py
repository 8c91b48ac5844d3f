"""Cross-field rules: what the schema alone cannot say. Each rule has a stable id (shown as [SFnnn]).

Relative paths in a spec (dataset, eval data, local model directories) resolve from the working
directory, which is the project root: specforge and the generated scripts both run from there.
`extends:` paths resolve from the spec file's own folder.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path

from specforge.spec import schedulers, sweep_rules
from specforge.spec.errors import Diagnostic
from specforge.spec.models import Spec, is_local_path
from specforge.spec.vocab import vocab_files, vocab_tokens
from specforge.spec.yaml_source import Document

TOKEN_LIKE = re.compile(r"<[^<>\s{}]+>")
PEEK_ROWS = 20


def peek_columns(path: Path) -> set[str] | None:
    """Column names from the first rows of a local data file; None when the format is not peekable."""
    suffix = path.suffix.lower()
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            if suffix == ".csv":
                return set(next(csv.reader(handle), []))
            if suffix == ".jsonl":
                columns: set[str] = set()
                for _, line in zip(range(PEEK_ROWS), handle):
                    if line.strip():
                        row = json.loads(line)
                        if isinstance(row, dict):
                            columns |= set(row)
                return columns
            if suffix == ".json" and path.stat().st_size < 50_000_000:
                data = json.load(handle)
                rows = (
                    data
                    if isinstance(data, list)
                    else next(iter(data.values()), [])
                    if isinstance(data, dict)
                    else []
                )
                return {k for row in rows[:PEEK_ROWS] if isinstance(row, dict) for k in row}
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return None  # parquet: read by the generated script (pyarrow is not a CLI dependency)


def files_read(spec: Spec) -> list[Path]:
    """Every file or folder the rules look at (SF009/SF010 and the vocabulary check): `check`'s
    verdict cache fingerprints them, so a change to any of them validates the spec afresh.
    Keep in step with run_rules and vocab_tokens."""
    paths = []
    if is_local_path(spec.dataset.path):
        paths.append(Path(spec.dataset.path).expanduser())
    if spec.inference.eval_data is not None:
        paths.append(Path(spec.inference.eval_data).expanduser())
    return [*paths, *vocab_files(spec)]


def _prompt_texts(spec: Spec) -> Iterator[tuple[tuple, str]]:
    if spec.prompt.template is not None:
        yield ("prompt", "template"), spec.prompt.template
    for i, message in enumerate(spec.prompt.messages or []):
        yield ("prompt", "messages", i, "content"), message.content
    yield ("prompt", "completion"), spec.prompt.completion


def run_rules(
    spec: Spec, doc: Document, *, allow_remote_code: bool, check_files: bool
) -> list[Diagnostic]:
    found: list[Diagnostic] = []

    def report(rule: str, path: tuple, message: str, *hints: str, severity: str = "error") -> None:
        key = ".".join(str(p) for p in path)
        found.append(Diagnostic(doc.locate(path), message, severity, key, tuple(hints), rule))

    t, ds, inf = spec.training, spec.dataset, spec.inference
    declared = spec.tokenizer.special_tokens.all()
    fields = spec.prompt.prompt_fields() + spec.prompt.completion_fields()

    # SF001: remote code runs arbitrary Python from the Hub.
    if spec.model.trust_remote_code and not allow_remote_code:
        report(
            "SF001",
            ("model", "trust_remote_code"),
            "trust_remote_code runs code from the model repository; refused by default",
            "pass --allow-remote-code on the command line if you trust this model",
        )

    # SF002/SF003: one validation source, and evaluation needs one.
    if ds.validation_fraction is not None and ds.validation_split is not None:
        report(
            "SF002",
            ("dataset", "validation_split"),
            "set validation_fraction or validation_split, not both",
        )
    has_validation = ds.validation_fraction is not None or ds.validation_split is not None
    if t.eval_strategy != "no" and not has_validation:
        report(
            "SF003",
            ("training", "eval_strategy"),
            f"eval_strategy is {t.eval_strategy!r} but there is no validation data",
            "set dataset.validation_fraction (e.g. 0.1) or dataset.validation_split",
            'or set training.eval_strategy: "no"',
        )
    if t.eval_strategy == "steps" and t.eval_steps is None:
        report(
            "SF004",
            ("training", "eval_steps"),
            "eval_strategy is 'steps' but eval_steps is not set",
        )
    if t.save_strategy == "steps" and t.save_steps is None:
        report(
            "SF004",
            ("training", "save_steps"),
            "save_strategy is 'steps' but save_steps is not set",
        )
    if t.save_strategy == "best" and t.eval_strategy == "no":
        report("SF004", ("training", "save_strategy"), "save_strategy 'best' needs evaluation")
    if t.warmup_steps is not None and t.warmup_ratio is not None:
        report(
            "SF004",
            ("training", "warmup_steps"),
            "set warmup_steps or warmup_ratio, not both",
            "remove one (write `warmup_ratio: null` to drop one inherited through `extends`)",
        )
    # A schedule's arguments are checked only when the Trainer builds it, at step 1 of a run.
    for problem in schedulers.check(t.lr_scheduler_type, t.lr_scheduler_kwargs, t.learning_rate):
        path = ("training", "lr_scheduler_kwargs", problem.key)
        report(
            "SF004",
            path if problem.key else ("training", "lr_scheduler_type"),
            problem.message,
            *problem.hints,
        )

    # SF005: mixed precision must agree with the weights' dtype.
    dtype, precision = spec.model.dtype, t.precision
    clash = {("fp16", "bfloat16"), ("bf16", "float16"), ("fp32", "float16"), ("fp32", "bfloat16")}
    if (precision, dtype) in clash:
        report(
            "SF005",
            ("training", "precision"),
            f"precision {precision} does not fit weights loaded as {dtype}",
            {
                "fp16": "use model.dtype: float16 (or float32)",
                "bf16": "use model.dtype: bfloat16",
                "fp32": "use model.dtype: float32, or precision fp16/bf16 to match the weights",
            }[precision],
        )
    if spec.model.attn_implementation == "flash_attention_2" and dtype == "float32":
        report(
            "SF005",
            ("model", "attn_implementation"),
            "flash_attention_2 runs only in float16/bfloat16",
            "set model.dtype: bfloat16 or float16",
        )

    # SF006: the completion must end in a stop token or the model never learns to stop.
    stops = [spec.tokenizer.special_tokens.eos, *spec.tokenizer.special_tokens.additional]
    if not any(tok and spec.prompt.completion.endswith(tok) for tok in stops):
        report(
            "SF006",
            ("prompt", "completion"),
            "completion does not end with the eos or a declared special token; the model never learns to stop",
            'end it with a stop token, e.g. completion: "{output}<response|end>"',
            severity="warning",
        )

    # SF016: TRL's `eos_token` (the stop token) replaces the tokenizer's eos during training, so a
    # different declared eos gets a trained row for a token that never occurs.
    eos, stop = spec.tokenizer.special_tokens.eos, spec.stop_token()
    if eos is not None and stop is not None and stop != eos:
        report(
            "SF016",
            ("tokenizer", "special_tokens", "eos"),
            f"eos {eos} never occurs: TRL makes the completion's stop token {stop} the "
            "tokenizer's eos during training (a new eos row is trained for nothing)",
            f'declare the stop token as eos (eos: "{stop}"), or drop eos',
            severity="warning",
        )

    # SF007: tokens written in templates are declared (or in the base vocabulary when we can read it).
    vocab = vocab_tokens(spec)
    for path, text in _prompt_texts(spec):
        for token in TOKEN_LIKE.findall(text):
            if token in declared or (vocab is not None and token in vocab):
                continue
            if vocab is None:
                report(
                    "SF007",
                    path,
                    f"{token} is not a declared special token",
                    "add it to tokenizer.special_tokens.additional, unless the base vocabulary has it",
                    severity="warning",
                )
            else:
                report(
                    "SF007",
                    path,
                    f"{token} is neither declared nor in the base vocabulary",
                    "add it to tokenizer.special_tokens.additional",
                )
    for token in spec.tokenizer.new_token_init:
        if token not in declared:
            report(
                "SF008",
                ("tokenizer", "new_token_init", token),
                f"{token} is not a declared special token",
            )

    # SF009: prompt fields exist in the data (peeked from local files), answers are evaluable.
    unknown: list[str] = []  # fields reported as not in the data: the examples are not blamed too
    if check_files and is_local_path(ds.path):
        data_path = Path(ds.path).expanduser()
        if not data_path.is_file():
            report(
                "SF009",
                ("dataset", "path"),
                f"local dataset {ds.path} does not exist",
                "relative paths resolve from the project root (where you run specforge)",
            )
        else:
            columns = peek_columns(data_path)
            unknown = [f for f in fields if columns is not None and f not in columns]
            if unknown:
                report(
                    "SF010",
                    ("prompt",),
                    f"field(s) {', '.join(unknown)} not in the dataset's columns "
                    f"({', '.join(sorted(columns)) or 'none'})",
                    "fix the {field} names in the templates",
                )
    if check_files and inf.eval_data is not None:
        eval_path = Path(inf.eval_data).expanduser()
        if not eval_path.is_file():
            report(
                "SF009",
                ("inference", "eval_data"),
                f"eval file {inf.eval_data} does not exist",
                "relative paths resolve from the project root (where you run specforge)",
            )
        elif eval_path.suffix != ".jsonl":
            report("SF009", ("inference", "eval_data"), "eval data must be a .jsonl file")
    local_model = spec.model.package is None and is_local_path(spec.model.name)
    if check_files and local_model and not Path(spec.model.name).expanduser().is_dir():
        report(
            "SF009", ("model", "name"), f"local model directory {spec.model.name} does not exist"
        )
    prompt_fields = spec.prompt.prompt_fields()
    for i, example in enumerate(inf.examples):
        missing = [f for f in prompt_fields if f not in example and f not in unknown]
        if missing:
            report(
                "SF010",
                ("inference", "examples", i),
                f"example lacks field(s) {', '.join(missing)}",
            )
    completion_fields = spec.prompt.completion_fields()
    if inf.labels is not None and inf.answer_column is None and len(completion_fields) != 1:
        report(
            "SF011",
            ("inference", "labels"),
            "cannot tell which column holds the answer",
            "set inference.answer_column",
        )

    # SF012: batching layout.
    if t.packing and t.padding_free:
        report("SF012", ("training", "padding_free"), "packing and padding_free exclude each other")
    if ds.validation_split is not None and is_local_path(ds.path):
        report(
            "SF002",
            ("dataset", "validation_split"),
            "a local file has one split",
            "use dataset.validation_fraction",
        )
    if t.packing and spec.model.attn_implementation not in ("flash_attention_2", "flex_attention"):
        report(
            "SF012",
            ("training", "packing"),
            "packing without flash or flex attention builds a dense mask per packed row: "
            "more memory, no gain",
            "use padding_free (the default) or attn_implementation: flash_attention_2 / flex_attention",
            severity="warning",
        )

    # SF013: sampling knobs do nothing under greedy decoding.
    if not inf.do_sample and (inf.temperature is not None or inf.top_p is not None):
        report(
            "SF013",
            ("inference", "do_sample"),
            "temperature/top_p are ignored with greedy decoding",
            "set do_sample: true or remove them",
            severity="warning",
        )
    # SF015: launch settings that cannot work together.
    launch = spec.launch
    if launch.slurm is not None:
        if launch.slurm.nodes != launch.nnodes:
            report(
                "SF015",
                ("launch", "slurm", "nodes"),
                f"slurm.nodes is {launch.slurm.nodes} but launch.nnodes is {launch.nnodes}",
            )
        if launch.slurm.gpus_per_node not in (0, launch.nproc_per_node):
            report(
                "SF015",
                ("launch", "slurm", "gpus_per_node"),
                f"slurm.gpus_per_node is {launch.slurm.gpus_per_node} but launch.nproc_per_node "
                f"is {launch.nproc_per_node}",
            )
    elif launch.nnodes > 1 and launch.rdzv_endpoint is None:
        report(
            "SF015",
            ("launch", "rdzv_endpoint"),
            "multi-node runs need the rendezvous host:port",
            "set launch.rdzv_endpoint to node 0's address, or add a launch.slurm block",
        )
    if (
        launch.strategy == "fsdp"
        and t.gradient_checkpointing
        and launch.fsdp.activation_checkpointing
    ):
        report(
            "SF015",
            ("training", "gradient_checkpointing"),
            "use launch.fsdp.activation_checkpointing alone under FSDP (both recompute twice)",
        )
    if launch.strategy == "fsdp" and spec.model.quantization is not None:
        report(
            "SF015",
            ("launch", "strategy"),
            "FSDP with a quantized base model is not supported here",
            "use strategy: ddp for QLoRA",
        )
    found += sweep_rules.check(spec, doc)
    return found
