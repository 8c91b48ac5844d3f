"""Cross-field rules: what the schema alone cannot say. Each rule has a stable id (shown as [SFnnn]).

Relative paths in a spec (dataset, eval data, local model directories) resolve from the working
directory, which is the project root: specforge and the generated scripts both run from there.
`extends:` paths resolve from the spec file's own folder.
"""

from __future__ import annotations

import csv
import difflib
import json
import re
from collections.abc import Iterator
from pathlib import Path

from specforge.core.errors import Diagnostic
from specforge.modelinfo.vocab import vocab_files, vocab_tokens
from specforge.spec import schedulers
from specforge.spec.models import DPO_LOSSES, KTO_LOSSES, Spec, is_local_path
from specforge.spec.yaml_source import Document
from specforge.validate import full_finetune as full_rules
from specforge.validate import sweep as sweep_rules

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


CHECK_TURNS_ROWS = 2000  # conversations checked at validate time; train.py checks them all


def conversation_problems(path: Path, conversation) -> dict[str, list[int]]:
    """The first rows of a local .jsonl that are not conversations to learn from, as
    {problem: [line numbers]}: the checks train.py makes on every row, made early."""
    roles = {"system": "system", "user": "user", "assistant": "assistant", **conversation.roles}
    role, content = conversation.role_key, conversation.content_key
    problems: dict[str, list[int]] = {}
    try:
        with path.open(encoding="utf-8") as handle:
            for line_no, line in zip(range(1, CHECK_TURNS_ROWS + 1), handle):
                row = json.loads(line) if line.strip() else {}
                turns = row.get(conversation.column) if isinstance(row, dict) else None
                problem = _turns_problem(turns, roles, role, content) if line.strip() else None
                if problem and conversation.column in row:
                    problems.setdefault(problem, []).append(line_no)
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return problems


def _turns_problem(turns, roles: dict, role: str, content: str) -> str | None:
    if not isinstance(turns, list) or not turns:
        return "not a list of turns"
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or turn.get(role) is None:
            return f"a turn has no {role!r}"
        if turn[role] not in roles:
            return f"role {turn[role]!r} is not one of {', '.join(sorted(roles))}"
        if roles[turn[role]] == "assistant" and not str(turn.get(content) or "").strip():
            return "an empty assistant turn"
        if turn.get(content) is None:
            return f"a turn has no {content!r}"
    if "assistant" not in [roles[turn[role]] for turn in turns]:
        return "no assistant turn"
    return None


def files_read(spec: Spec) -> list[Path]:
    """Every file or folder the rules look at (SF009/SF010 and the vocabulary check): `check`'s
    verdict cache fingerprints them, so a change to any of them validates the spec afresh.
    Keep in step with run_rules and vocab_tokens."""
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


def _prompt_texts(spec: Spec) -> Iterator[tuple[tuple, str]]:
    if spec.prompt.template is not None:
        yield ("prompt", "template"), spec.prompt.template
    for i, message in enumerate(spec.prompt.messages or []):
        yield ("prompt", "messages", i, "content"), message.content
    if spec.prompt.completion is not None:
        yield ("prompt", "completion"), spec.prompt.completion
    if spec.prompt.rejected is not None:
        yield ("prompt", "rejected"), spec.prompt.rejected


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
    fields += spec.prompt.rejected_fields()
    if spec.prompt.label_field is not None:
        fields.append(spec.prompt.label_field)

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
    completion = spec.prompt.completion
    if completion is not None and not any(tok and completion.endswith(tok) for tok in stops):
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
    sources = ds.source_list()
    for i, source in enumerate(sources):
        if not (check_files and is_local_path(source.path)):
            continue
        where = ("dataset", "path") if ds.sources is None else ("dataset", "sources", i, "path")
        data_path = Path(source.path).expanduser()
        if not data_path.is_file():
            report(
                "SF009",
                where,
                f"local dataset {source.path} does not exist",
                "relative paths resolve from the project root (where you run specforge)",
            )
            continue
        columns = peek_columns(data_path)
        if columns is None:
            continue
        conversation = spec.prompt.conversation
        if conversation is not None and data_path.suffix.lower() == ".jsonl":
            for problem, lines in conversation_problems(data_path, conversation).items():
                shown = ", ".join(map(str, lines[:10])) + (" ..." if len(lines) > 10 else "")
                report(
                    "SF020",
                    ("prompt", "conversation"),
                    f"{source.path} line(s) {shown}: {problem}",
                    "fix the rows, or map the data's names under prompt.conversation "
                    "(role_key, content_key, roles)",
                )
        mapped = {field: source.columns.get(field, field) for field in fields}
        missing = [f for f in fields if mapped[f] not in columns]
        unknown += [f for f in missing if f not in unknown]
        if missing and ds.sources is None:
            report(
                "SF010",
                ("prompt",),
                f"field(s) {', '.join(missing)} not in the dataset's columns "
                f"({', '.join(sorted(columns)) or 'none'})",
                "set prompt.conversation.column"
                if spec.prompt.conversation is not None
                else "fix the {field} names in the templates",
            )
        elif missing:
            report(
                "SF020",
                ("dataset", "sources", i),
                f"source {source.path} does not map to the prompt: column(s) "
                f"{', '.join(mapped[f] for f in missing)} not in its columns "
                f"({', '.join(sorted(columns)) or 'none'})",
                "map them under `columns:`, e.g. columns: {"
                + ", ".join(f"{f}: <its column>" for f in missing)
                + "}",
            )
    for i, source in enumerate(ds.sources or []):
        for field in source.columns:
            if field not in fields:
                report(
                    "SF020",
                    ("dataset", "sources", i, "columns", field),
                    f"{field} is not a prompt column ({', '.join(fields)})",
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
    for i, example in enumerate(inf.examples if spec.prompt.conversation is None else []):
        missing = [f for f in prompt_fields if f not in example and f not in unknown]
        if missing:
            report(
                "SF010",
                ("inference", "examples", i),
                f"example lacks field(s) {', '.join(missing)}",
            )
    if spec.prompt.conversation is not None:
        if inf.answer_column is not None:
            report(
                "SF020",
                ("inference", "answer_column"),
                "a conversation's answer is its last assistant turn; answer_column does not apply",
            )
        if inf.examples:
            report(
                "SF020",
                ("inference", "examples"),
                "examples are rows of text columns; a conversation spec answers inference.eval_data",
                "move them into a .jsonl file of conversations and set inference.eval_data",
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
    if ds.validation_split is not None and ds.path is not None and is_local_path(ds.path):
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
    method_rules(spec, report)
    full_rules.check(spec, report)  # SF032/SF033: lora: null

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
        limit = slurm_seconds(launch.slurm.time)
        if launch.slurm.signal_seconds >= limit:
            report(
                "SF015",
                ("launch", "slurm", "signal_seconds"),
                f"signal_seconds is {launch.slurm.signal_seconds} but the time limit is "
                f"{launch.slurm.time} ({limit} s): the signal would come before training starts",
                "leave the time a step and a checkpoint take, e.g. 300",
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


def slurm_seconds(time: str) -> int:
    """A Slurm time limit, [D-]HH:MM:SS (the schema's pattern), in seconds."""
    days, _, clock = time.rpartition("-")
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return int(days or 0) * 86400 + hours * 3600 + minutes * 60 + seconds


PAIRED = ("dpo", "orpo")


def method_rules(spec: Spec, report) -> None:
    """SF030: each method's data fields and hyperparameters, and what only some methods take."""
    method, p, pref = spec.method, spec.prompt, spec.preference
    if method in PAIRED and p.rejected is None:
        report(
            "SF030",
            ("prompt",),
            f"method {method} trains on preference pairs but prompt.rejected is not set",
            'add the dispreferred answer, e.g. rejected: "{rejected}<response|end>" '
            "(prompt.completion is the preferred one)",
        )
    if method == "kto" and p.label_field is None:
        report(
            "SF030",
            ("prompt",),
            "method kto needs prompt.label_field: the column saying whether a row's completion "
            "is desirable",
            "add label_field: label (a column of true/false)",
        )
    if method != "kto" and p.label_field is not None:
        report("SF030", ("prompt", "label_field"), f"label_field is for kto, not {method}")
    if method not in PAIRED and p.rejected is not None:
        report(
            "SF030",
            ("prompt", "rejected"),
            f"rejected is for dpo/orpo, not {method}",
            *(
                ["kto takes one completion a row, labelled by label_field"]
                if method == "kto"
                else []
            ),
        )
    if method == "sft":
        for key, value in (("preference",), pref), (("model", "adapter"), spec.model.adapter):
            if value is not None:
                report(
                    "SF030",
                    key,
                    f"{'.'.join(key)} is for dpo/orpo/kto, not sft",
                    "set method: dpo (or orpo, kto), or remove it",
                )
    if spec.model.adapter is not None and spec.lora is not None and "lora" in spec.model_fields_set:
        report(
            "SF030",
            ("lora",),
            "lora is not used: training continues model.adapter's LoRA (its adapter_config.json)",
            "remove the lora section",
            severity="warning",
        )
    if pref is not None and pref.loss_type is not None:
        allowed = {"dpo": DPO_LOSSES, "kto": KTO_LOSSES, "orpo": ()}.get(method, ())
        if method != "sft" and pref.loss_type not in allowed:
            report(
                "SF030",
                ("preference", "loss_type"),
                f"loss_type {pref.loss_type!r} is not a {method} loss"
                + (f" ({', '.join(allowed)})" if allowed else " (orpo has one loss)"),
                *suggest_hint(pref.loss_type, allowed),
            )
    if pref is not None and pref.sft_weight is not None and method != "dpo":
        why = "orpo's loss already holds one" if method == "orpo" else "its trainer has no sft loss"
        report("SF030", ("preference", "sft_weight"), f"sft_weight is for dpo, not {method}: {why}")
    if pref is not None and method != "kto":
        for key in ("desirable_weight", "undesirable_weight"):
            if key in pref.model_fields_set:
                report("SF030", ("preference", key), f"{key} is for kto, not {method}")
    if method != "sft":
        for key, on in (
            (("dataset", "sources"), spec.dataset.sources),
            (
                ("prompt", "conversation"),
                p.conversation,
            ),
        ):
            if on is not None:
                report(
                    "SF030",
                    key,
                    f"{'.'.join(key)} is for sft; {method} reads one source of flat rows",
                    "use dataset.path and prompt.template/completion (or prompt.messages)",
                )
    if method != "sft" and p.truncate_field is not None:
        report(
            "SF030",
            ("prompt", "truncate_field"),
            f"truncate_field is for sft: {method} drops (and counts) rows over training.max_length",
            "remove it, or raise training.max_length",
        )
    if method != "sft":
        t = spec.training
        for key, on in (("packing", t.packing), ("padding_free", t.padding_free)):
            if on:
                report(
                    "SF030",
                    ("training", key),
                    f"{key} is for sft; trl 1.16's {method} trainer pads each batch",
                )
    if method in PAIRED and p.rejected is not None and spec.stop_token():
        stop = spec.stop_token()
        if not p.rejected.endswith(stop):
            report(
                "SF030",
                ("prompt", "rejected"),
                f"rejected does not end with the stop token {stop} that completion ends with",
                "both answers should end alike, so the pair differs only in the answer",
                severity="warning",
            )


def suggest_hint(value: str, allowed) -> list[str]:
    close = difflib.get_close_matches(value, list(allowed), n=1)
    return [f"did you mean `{close[0]}`?"] if close else []
