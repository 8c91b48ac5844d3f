"""Spec -> render plan: every default, branch and derived value decided here, in Python.

The plan is plain data, one part per section of the generated scripts (model, tokens, prompt,
data, adapter, training, preflight, inference) and the imports each script needs. Flags and small
enums say which code path exists; the templates write each path out literally (a base training
template with a block per step, one small template per method). Values become literals through
the `py` filter and `const`/`kwargs` (literals.py); no code is built as strings here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Literal

from specforge import __version__
from specforge.core.contract import PREEMPTED_EXIT, safe_label, shell_word
from specforge.modelinfo import cost
from specforge.modelinfo.layout import Layout, compiled_plan, device_of, layout_of
from specforge.modelinfo.prepare import model_key
from specforge.spec.models import ConversationSpec, PreferenceSpec, Spec, is_local_path


@dataclass(frozen=True)
class Value:
    """One config value: `NAME = <literal>  # spec: key; why` (or one keyword in a dict)."""

    name: str
    value: object
    key: str | None = None
    why: str | None = None


@dataclass(frozen=True)
class Meta:
    name: str
    constants: list[Value]  # NAME, SEED
    header: list[str]
    spec_label: str
    script_dir: str
    model_label: str


@dataclass(frozen=True)
class ModelPart:
    constants: list[Value]
    # "hub" (name + revision), "dir" (a local folder), "package" (an installed package's folder)
    # or "gguf" (the plain folder `specforge prepare` writes)
    source: str
    train_attn: Value | None  # ATTN_IMPLEMENTATION as train.py loads it
    infer_attn: Value | None  # ... and infer.py (sdpa where training uses flex_attention)
    quantization: Value | None
    trust_remote_code: bool
    # where train.py places a quantized model: "auto" (bitsandbytes spreads it over the GPUs)
    # or "local_rank" (each torchrun process on its own GPU: accelerate refuses "auto" under
    # DDP); None: the Trainer places it
    train_device_map: Literal["auto", "local_rank"] | None = None
    # model.prequantized: PREQUANTIZED, the checkpoint's format, checked after the weights load
    prequantized: Value | None = None
    # prepare_model_for_kbit_training runs before the adapter: QLoRA, and GPTQ (which peft
    # freezes without upcasting; AWQ and compressed-tensors it would upcast: plain LoRA's path)
    kbit_training: bool = False


@dataclass(frozen=True)
class TokensPart:
    constants: list[Value]  # empty when the spec declares no special token
    pad_excluded: bool  # the pad token is declared: added, never trained


@dataclass(frozen=True)
class PromptPart:
    shared: list[Value]  # both scripts: the prompt and the stop token
    train: list[Value]  # train.py: the completion and how long rows are fitted
    chat: bool
    conversation: bool = False  # a column of chat turns: every assistant turn is a completion
    # dpo/orpo/kto conversations: the turns are the prompt, the answers come from their columns
    preference: bool = False
    # ... the turns' last is the answer (chosen is the prompt's column; kto without completion)
    last_turn: bool = False
    drop_system: bool = False  # prompt.conversation.drop_system: system turns are left out
    if_empty: bool = False  # prompt.if_empty: a row with an empty column takes another prompt
    whole: bool = False  # sft conversations: one example per conversation (examples: whole)
    # the completion ends in a declared token (STOP_TOKEN); else TRL appends the tokenizer's eos
    stop: bool = False


@dataclass(frozen=True)
class DataPart:
    constants: list[Value]
    local: bool
    builder: str | None  # datasets' builder for a local file: json, csv, parquet
    validation: str | None  # "fraction", "split" or None
    max_samples: bool
    peek: str | None  # how --dry-run reads the first local row: jsonl, json, csv
    write_validation: bool  # keep the validation rows for infer.py (labels, no eval_data)
    mixture: bool = False  # dataset.sources: several sources, sampled and mixed
    weighted: bool = False  # ... in proportion to their weights
    eval_builder: str | None = None  # validation "path": datasets' builder for a local eval file


@dataclass(frozen=True)
class TrainingPart:
    lora: list[Value]
    args: list[Value]
    resume: bool  # checkpoints are saved, so --resume finds the newest by itself
    preemption: list[Value]  # the signals that checkpoint and stop, and the exit code after
    fsdp: bool
    push_to_hub: bool
    gradient_checkpointing: bool
    peak_flops: Value  # PEAK_TFLOPS: the device MFU is measured against
    trackio: bool = False  # report_to has trackio: its run is named and carries provenance
    full: bool = False  # lora: null: every weight trains; the run saves a whole model
    # model.adapter (preference methods): training starts from a parent run's "model" (full
    # fine-tuning) or continues its "adapter"; None: from the base model
    parent: Literal["model", "adapter"] | None = None
    # bf16: transformers refuses the config without a GPU unless use_cpu is set; --dry-run
    # sets it there so a laptop can review the spec
    bf16: bool = False
    # launch runs several processes (torchrun): ranks prepare data in turn, agree on a signal
    distributed: bool = False
    # layout tokens: TOKEN_BUDGET, and TokenBudgetTrainer cuts each step's batch by it
    token_budget: Value | None = None
    early_stopping: Value | None = None  # EARLY_STOPPING: EarlyStoppingCallback's arguments
    loraplus: Value | None = None  # LORAPLUS: create_loraplus_optimizer's ratio and rates
    # pissa/olora: the adapter's start is saved, to convert the trained one to a plain LoRA
    initial_adapter: bool = False
    modules_to_save: bool = False  # lora.modules_to_save: whole modules train with the adapter
    unfrozen: Value | None = None  # UNFROZEN_PARAMETERS: full fine-tuning of these names only
    # EXTRA_FORWARDS: forward-only passes per trained token that MFU counts (dpo, kto)
    extra_forwards: Value | None = None
    count_tokens: bool = False  # orpo logs no num_tokens: MetricsFile counts its forwards' own
    # full fine-tuning of half-precision weights: trains fp32 master copies, saves in DTYPE
    master_fp32: bool = False


@dataclass(frozen=True)
class PreflightPart:
    cuda: list[str]  # why this script needs a CUDA GPU (one check, every reason)
    train: list[str]  # templates/preflight/<name>.py.j2 snippets, beside the CUDA check
    infer: list[str]
    infer_cuda: list[str]


@dataclass(frozen=True)
class InferencePart:
    constants: list[Value]
    labels: bool


@dataclass(frozen=True)
class MethodPart:
    """The training method: which TRL trainer, the data it takes, and where the adapter starts."""

    name: str  # dpo, orpo, kto, pretrain, reward (sft has no MethodPart)
    title: str  # for the docstring: "DPO"
    module: str  # where trl 1.16 keeps the trainer
    trainer: str
    config: str
    paired: bool  # prompt/chosen/rejected rows (dpo, orpo); kto: prompt/completion/label
    constants: list[Value]  # the rejected template or the label column
    adapter: Value | None  # ADAPTER: a previous run's adapter that training continues
    reference: str | None  # what the loss compares against, for a comment; orpo has none
    # trl 1.16 adds a frozen "ref" adapter beside "default" to a PeftModel (dpo, kto with LoRA);
    # save_pretrained would write it too (adapter/ref/)
    ref_adapter: bool = False


# Which peft names a script imports: a fresh adapter (LoraConfig, get_peft_model) or a
# parent's (PeftModel), each with prepare_model_for_kbit_training under QLoRA
PeftImport = Literal["new", "new_kbit", "parent", "parent_kbit"]


@dataclass(frozen=True)
class Imports:
    """The imports a script needs beyond those every script has; the template writes each."""

    copy: bool = False  # a frozen copy of the start weights: a full-weight reference model
    csv: bool = False  # --dry-run reads a csv file's first row
    importlib: bool = False  # importlib.util.find_spec: a package's folder, preflight checks
    os: bool = False
    hub: bool = False  # huggingface_hub: the push after training, its token check
    concatenate: bool = False  # datasets.concatenate_datasets: a mixture
    peft: PeftImport | None = None  # None: full fine-tuning, no adapter
    trainable_tokens: bool = False  # peft's TrainableTokensWrapper: new rows on a LoRA model
    bitsandbytes: bool = False
    partial_state: bool = False  # accelerate's PartialState: rank 0 prepares the data first
    loraplus: bool = False  # peft's create_loraplus_optimizer
    re: bool = False  # training.unfrozen_parameters: parameter names matched by pattern
    lora_conversion: bool = False  # pissa/olora: the saved adapter's tensors are completed
    transformers: tuple[str, ...] = ()  # the names `from transformers import` brings


@dataclass(frozen=True)
class Plan:
    meta: Meta
    model: ModelPart
    tokens: TokensPart
    prompt: PromptPart
    data: DataPart
    training: TrainingPart
    preflight: PreflightPart
    inference: InferencePart
    method: MethodPart | None = None  # None: sft
    train_imports: Imports = Imports()
    infer_imports: Imports = Imports()


def default_token_init(token: str) -> str:
    """`<response|end>` -> `response end`: the token's words, whose rows give a meaningful start."""
    words = re.sub(r"[<>|\[\]{}]+", " ", token).replace("_", " ").split()
    return " ".join(words) or token


def padding_free(spec: Spec) -> bool:
    """Batches without padding, masks from position_ids: exact with sdpa/eager/flex/flash attention
    and faster than padding, so the default. Packed rows are too (no attention across documents),
    except `wrapped` ones: one token stream cut every max_length tokens."""
    t = spec.training
    if t.packing:
        return t.packing_strategy != "wrapped"
    return True if t.padding_free is None else t.padding_free


# -- sections --------------------------------------------------------------------------------


def header_lines(label: str, spec_sha256: str) -> list[str]:
    """The generated-file header every compiled file starts with (scripts and batch script)."""
    return [
        f"# Code generated by specforge {__version__} from {label}. DO NOT EDIT.",
        f"# spec-sha256: {spec_sha256}",
        f"# Regenerate: specforge compile {label}",
    ]


def _meta(spec: Spec, spec_label: str, spec_sha256: str, script_dir: str, overrides: int) -> Meta:
    label = safe_label(spec_label)
    header = header_lines(label, spec_sha256)
    if overrides:
        header.append(
            f"# With {overrides} --set override(s): see spec.resolved.yaml beside this file."
        )
    constants = [Value("NAME", spec.name, "name"), Value("SEED", spec.seed, "seed")]
    return Meta(
        spec.name, constants, header, label, safe_label(script_dir), safe_label(spec.model.name)
    )


def _model(spec: Spec) -> ModelPart:
    m = spec.model
    # a name that is not where the weights load from stays in the docstring, not in the code
    constants = [] if m.gguf_file or m.package else [Value("MODEL_NAME", m.name, "model.name")]
    if m.gguf_file:
        source = "gguf"
        constants.append(
            Value("MODEL_DIR", model_key(spec), "model.gguf_file", "in SPECFORGE_CACHE")
        )
    elif m.package:
        source = "package"
        constants.append(Value("MODEL_PACKAGE", m.package, "model.package"))
    elif is_local_path(m.name):
        source = "dir"
    else:
        source = "hub"
        constants.append(Value("MODEL_REVISION", m.revision, "model.revision"))
    constants.append(Value("DTYPE", m.dtype, "model.dtype"))
    if m.config_overrides:
        why = "set on the model's config as it loads"
        constants.append(
            Value("CONFIG_OVERRIDES", dict(m.config_overrides), "model.config_overrides", why)
        )
    train_attn = infer_attn = None
    if m.attn_implementation != "auto":
        train_attn = infer_attn = Value(
            "ATTN_IMPLEMENTATION", m.attn_implementation, "model.attn_implementation"
        )
    if m.attn_implementation == "flex_attention":
        # generation recompiles flex for every new shape (120 rows: 114 s against 14 s with sdpa
        # on an H200); sdpa computes the same attention
        infer_attn = Value("ATTN_IMPLEMENTATION", "sdpa", None, "training's flex_attention")
    quantization = None
    fsdp = spec.launch.strategy == "fsdp"
    if m.quantization is not None:
        q = m.quantization
        settings: dict[str, str | bool] = {
            f"load_in_{q.bits}bit": True,
            "bnb_4bit_quant_type": q.quant_type,
            "bnb_4bit_use_double_quant": q.double_quant,
            "bnb_4bit_compute_dtype": q.compute_dtype,
        }
        storage = None
        if fsdp:  # SF015: 4 bits and a float model.dtype
            settings["bnb_4bit_quant_storage"] = m.dtype
            storage = "4-bit weights stored in DTYPE: FSDP shards them with the rest"
        quantization = Value("QUANTIZATION", settings, "model.quantization", storage)
    prequantized = None
    if m.prequantized is not None:
        why = "loaded as the checkpoint's own quantization_config says"
        prequantized = Value("PREQUANTIZED", m.prequantized.method, "model.prequantized", why)
    device_map: Literal["auto", "local_rank"] | None = None
    # a quantized model is not moved by the Trainer: placed as it loads
    if (quantization is not None or prequantized is not None) and not fsdp:
        device_map = "local_rank" if spec.launch.world_size() > 1 else "auto"
    return ModelPart(
        constants,
        source,
        train_attn,
        infer_attn,
        quantization,
        m.trust_remote_code,
        device_map,
        prequantized=prequantized,
        # under FSDP not for QLoRA: it would upcast the other weights to float32, and FSDP
        # shards the 4-bit weights together with them, all in DTYPE (bnb_4bit_quant_storage)
        kbit_training=(quantization is not None and not fsdp)
        or prequantized_method(spec) == "gptq",
    )


def prequantized_method(spec: Spec) -> str | None:
    """model.prequantized's format, or None for float (or bitsandbytes) weights."""
    return spec.model.prequantized.method if spec.model.prequantized else None


def _special_tokens_dict(spec: Spec) -> dict:
    tokens = spec.tokenizer.special_tokens
    out: dict[str, str | list[str]] = {
        key: value
        for key, value in (
            ("bos_token", tokens.bos),
            ("eos_token", tokens.eos),
            ("pad_token", tokens.pad),
        )
        if value
    }
    if tokens.additional:
        out["extra_special_tokens"] = list(tokens.additional)  # the transformers 5 key
    return out


def _tokens(spec: Spec, vocab: set[str] | frozenset[str] | None) -> TokensPart:
    declared = spec.tokenizer.special_tokens.all()
    if not declared:
        return TokensPart([], False)
    pad = spec.tokenizer.special_tokens.pad
    explicit = spec.tokenizer.new_token_init
    # Tokens the base vocabulary already has keep their rows: no start row to choose.
    new = [t for t in declared if vocab is None or t not in vocab or t in explicit]
    init = {t: explicit.get(t, default_token_init(t)) for t in new}
    constants = [
        Value("SPECIAL_TOKENS", _special_tokens_dict(spec), "tokenizer.special_tokens"),
        Value(
            "NEW_TOKEN_INIT",
            init,
            "tokenizer.new_token_init",
            "a new token's row starts as the mean of this text's rows",
        ),
    ]
    return TokensPart(constants, pad is not None)


def _conversation(spec: Spec) -> PromptPart:
    c = spec.prompt.conversation
    assert c is not None  # _prompt sends only conversations here
    roles = {"system": "system", "user": "user", "assistant": "assistant", **c.roles}
    shared = [
        Value("CONVERSATION_COLUMN", c.column, "prompt.conversation.column"),
        Value("ROLE_KEY", c.role_key, "prompt.conversation.role_key"),
        Value("CONTENT_KEY", c.content_key, "prompt.conversation.content_key"),
        Value("ROLES", roles, "prompt.conversation.roles", "the data's role names"),
    ]
    if c.chat_template is not None:
        shared.append(Value("CHAT_TEMPLATE", c.chat_template, "prompt.conversation.chat_template"))
    preference = spec.method != "sft"
    last_turn = preference and (
        c.chosen == c.column if spec.method != "kto" else c.completion in (None, c.column)
    )
    if preference:  # the answer infer.py's predictions are scored against, too
        shared += _gold_column(spec, c)
    return PromptPart(
        shared,
        [],
        False,
        True,
        preference=preference,
        last_turn=last_turn,
        drop_system=c.drop_system,
        whole=not preference and c.examples == "whole",
    )


def _prompt(spec: Spec) -> PromptPart:
    # a reward model generates nothing: no stop token
    p, stop = spec.prompt, None if spec.method == "reward" else spec.stop_token()
    if p.conversation is not None:
        return _conversation(spec)
    if p.text_column is not None:  # pretrain: raw text, in both scripts
        return PromptPart([Value("TEXT_COLUMN", p.text_column, "prompt.text_column")], [], False)
    if p.messages is not None:
        shared = [
            Value(
                "PROMPT_MESSAGES",
                [[msg.role, msg.content] for msg in p.messages],
                "prompt.messages",
                "rendered by the tokenizer's chat template",
            )
        ]
    else:
        shared = [Value("PROMPT_TEMPLATE", p.template, "prompt.template")]
    if p.if_empty:
        why = "a row whose column is empty takes this prompt instead"
        alternatives = {
            column: alt if isinstance(alt, str) else [[m.role, m.content] for m in alt]
            for column, alt in p.if_empty.items()
        }
        shared.append(Value("PROMPT_IF_EMPTY", alternatives, "prompt.if_empty", why))
    fields = Value(
        "PROMPT_FIELDS", p.prompt_fields(), "prompt.messages" if p.messages else "prompt.template"
    )
    if p.messages is None:  # a chat prompt's fields are only checked in the data: train.py's
        shared.append(fields)
    if stop is not None:  # else TRL ends each completion with the tokenizer's eos
        why = "rows end with it; generation stops"
        shared.append(Value("STOP_TOKEN", stop, "prompt.completion", why))
    train = [
        *([fields] if p.messages is not None else []),
        Value("COMPLETION_TEMPLATE", p.completion, "prompt.completion"),
        Value("COMPLETION_FIELDS", p.completion_fields(), "prompt.completion"),
        Value(
            "TRUNCATE_FIELD",
            p.truncate_field or p.prompt_fields()[-1],
            "prompt.truncate_field",
            "cut here, never the answer",
        ),
    ]
    chat, stops = p.messages is not None, stop is not None
    return PromptPart(shared, train, chat, if_empty=bool(p.if_empty), stop=stops)


BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
PEEKABLE = {".jsonl": "jsonl", ".json": "json", ".csv": "csv"}


def _source_load(source) -> dict:
    """load_dataset's arguments for one source of a mixture."""
    if is_local_path(source.path):
        builder = BUILDERS[PurePosixPath(source.path).suffix.lower()]
        return {"path": builder, "data_files": source.path, "split": source.split}
    load = {"path": source.path}
    if source.name is not None:
        load["name"] = source.name
    if source.data_files is not None:
        load["data_files"] = source.data_files
    return load | {"revision": source.revision, "split": source.split}


def _source_name(source) -> str:
    """How train_summary.json names a source: its path, with a Hub config and split if any."""
    name = source.path + (f":{source.name}" if source.name else "")
    return (
        name if is_local_path(source.path) or source.split == "train" else f"{name}[{source.split}]"
    )


def _mixture(spec: Spec) -> DataPart:
    ds = spec.dataset
    assert ds.sources is not None  # _data sends only mixtures here
    sources = [
        {
            "name": _source_name(source),
            "load": _source_load(source),
            "weight": source.weight,
            "max_samples": source.max_samples,
            "columns": {theirs: ours for ours, theirs in source.columns.items()},
        }
        for source in ds.sources
    ]
    fields = list(dict.fromkeys(spec.prompt.prompt_fields() + spec.prompt.completion_fields()))
    constants = [
        Value("SOURCES", sources, "dataset.sources", "columns: theirs -> the prompt's"),
        Value("COLUMNS", fields, "prompt", "the shape every source is mapped to"),
    ]
    if ds.validation_fraction is not None:
        constants.append(
            Value(
                "VALIDATION_FRACTION",
                ds.validation_fraction,
                "dataset.validation_fraction",
                "seeded split of the mixture",
            )
        )
    validation = "fraction" if ds.validation_fraction is not None else None
    if ds.eval_path is not None:
        validation = "path"
        constants += _eval_constants(spec)
    constants.append(Value("MAX_LENGTH", spec.training.max_length, "training.max_length"))
    weighted = ds.sources[0].weight is not None
    return DataPart(
        constants,
        True,
        None,
        validation,
        False,
        None,
        _write_validation(spec, validation),
        True,
        weighted,
        eval_builder=_eval_builder(spec),
    )


def _data(spec: Spec) -> DataPart:
    if spec.dataset.sources is not None:
        return _mixture(spec)
    ds = spec.dataset
    assert ds.path is not None  # a single source: the schema requires path or sources
    local = is_local_path(ds.path)
    suffix = PurePosixPath(ds.path).suffix.lower() if local else ""
    constants = [Value("DATASET_PATH", ds.path, "dataset.path")]
    if not local:
        if ds.config_name is not None:
            constants.append(Value("DATASET_CONFIG", ds.config_name, "dataset.config_name"))
        constants.append(Value("DATASET_REVISION", ds.revision, "dataset.revision"))
    if not local or ds.split != "train":
        # a local file is datasets' "train" split; a slice (train[:20%]) applies as on the Hub
        constants.append(Value("DATASET_SPLIT", ds.split, "dataset.split"))
    validation = None
    if ds.validation_fraction is not None:
        validation = "fraction"
        constants.append(
            Value(
                "VALIDATION_FRACTION",
                ds.validation_fraction,
                "dataset.validation_fraction",
                "seeded split",
            )
        )
    elif ds.validation_split is not None:
        validation = "split"
        constants.append(Value("VALIDATION_SPLIT", ds.validation_split, "dataset.validation_split"))
    elif ds.eval_path is not None:
        validation = "path"
        constants += _eval_constants(spec)
    if ds.max_samples is not None:
        constants.append(
            Value("MAX_SAMPLES", ds.max_samples, "dataset.max_samples", "sampled with the seed")
        )
    constants.append(Value("MAX_LENGTH", spec.training.max_length, "training.max_length"))
    return DataPart(
        constants,
        local,
        BUILDERS[suffix] if local else None,
        validation,
        ds.max_samples is not None,
        PEEKABLE.get(suffix),
        _write_validation(spec, validation),
        eval_builder=_eval_builder(spec),
    )


def _write_validation(spec: Spec, validation: str | None) -> bool:
    """infer.py scores the validation rows after training: against labels, or (pretrain,
    reward) by perplexity or pairwise accuracy; inference.eval_data replaces them."""
    scored = spec.inference.labels is not None or spec.method in ("pretrain", "reward")
    return validation is not None and scored and spec.inference.eval_data is None


def _eval_constants(spec: Spec) -> list[Value]:
    """dataset.eval_path: the rows evaluated during training, apart from the training data."""
    ds = spec.dataset
    assert ds.eval_path is not None  # _data and _mixture ask only then
    constants = [Value("EVAL_PATH", ds.eval_path, "dataset.eval_path")]
    if not is_local_path(ds.eval_path) or ds.eval_split is not None:
        split = ds.eval_split or "train"
        why = None if ds.eval_split else "a dataset's default split"
        constants.append(Value("EVAL_SPLIT", split, "dataset.eval_split", why))
    return constants


def _eval_builder(spec: Spec) -> str | None:
    path = spec.dataset.eval_path
    if path is None or not is_local_path(path):
        return None
    return BUILDERS[PurePosixPath(path).suffix.lower()]


def _lora(spec: Spec) -> list[Value]:
    lora = spec.lora
    if lora is None:  # full fine-tuning: no adapter to configure
        return []
    return [
        Value("r", lora.r, "lora.r"),
        Value("lora_alpha", lora.alpha, "lora.alpha"),
        Value("lora_dropout", lora.dropout, "lora.dropout"),
        Value("target_modules", lora.target_modules, "lora.target_modules"),
        Value("bias", lora.bias, "lora.bias"),
        *([Value("use_dora", True, "lora.use_dora")] if lora.use_dora else []),
        *([Value("use_rslora", True, "lora.use_rslora")] if lora.use_rslora else []),
        *_lora_extras(spec),
        *_lora_task(spec),
    ]


def _lora_task(spec: Spec) -> list[Value]:
    if spec.method != "reward":
        return [Value("task_type", "CAUSAL_LM", None, "causal language modelling")]
    task = Value("task_type", "SEQ_CLS", None, "a sequence score: the reward")
    if spec.lora is not None and spec.lora.modules_to_save:  # SF070: "score" is among them
        return [task]
    why = "the new score head trains and saves with the adapter"
    return [task, Value("modules_to_save", ["score"], None, why)]


def _lora_extras(spec: Spec) -> list[Value]:
    """The start of the adapter and the modules trained whole beside it."""
    lora = spec.lora
    assert lora is not None  # _lora sends only adapters here
    extras = []
    if lora.init_lora_weights != "default":
        why = None
        if lora.init_lora_weights.startswith(("pissa", "olora")):
            why = "moves part of the base weights; saved converted to plain LoRA"
        extras.append(
            Value("init_lora_weights", lora.init_lora_weights, "lora.init_lora_weights", why)
        )
    if lora.modules_to_save:
        why = "trained whole, saved with the adapter"
        extras.append(
            Value("modules_to_save", list(lora.modules_to_save), "lora.modules_to_save", why)
        )
        why = "a tied head stays tied to its trained embeddings"
        extras.append(Value("ensure_weight_tying", True, "lora.modules_to_save", why))
    return extras


def _loraplus(spec: Spec) -> Value | None:
    lora = spec.lora
    if lora is None or lora.loraplus_lr_ratio is None:
        return None
    settings: dict[str, float] = {"loraplus_lr_ratio": lora.loraplus_lr_ratio}
    if lora.loraplus_lr_embedding is not None:
        settings["loraplus_lr_embedding"] = lora.loraplus_lr_embedding
    settings["loraplus_weight_decay"] = spec.training.weight_decay
    return Value("LORAPLUS", settings, "lora.loraplus_lr_ratio", "B matrices: lr x the ratio")


def _optimizer_args(spec: Spec) -> list[Value]:
    """The optimiser and its own settings: AdamW's betas and epsilon, GaLore's targets."""
    t = spec.training
    args = [Value("optim", t.optim, "training.optim")]
    for key in ("adam_beta1", "adam_beta2", "adam_epsilon"):
        if getattr(t, key) is not None:
            args.append(Value(key, getattr(t, key), f"training.{key}"))
    if t.optim_target_modules is not None:
        targets = t.optim_target_modules
        value = targets if isinstance(targets, str) else list(targets)
        args.append(Value("optim_target_modules", value, "training.optim_target_modules"))
    if t.optim_args:
        # transformers parses one "key=value,key=value" string
        text = ",".join(f"{key}={value}" for key, value in t.optim_args.items())
        args.append(Value("optim_args", text, "training.optim_args"))
    return args


def _warmup(spec: Spec) -> Value:
    value = spec.training.warmup_value()
    if isinstance(value, int):
        return Value("warmup_steps", value, "training.warmup_steps")
    return Value("warmup_steps", value, "training.warmup_ratio", "a float below 1 is a ratio")


@dataclass(frozen=True)
class LayoutValues:
    """The values `training.layout: auto`/`tokens` may change, each naming where it came from."""

    batch: Value
    accumulation: Value
    checkpointing: Value
    token_budget: Value | None = None  # TOKEN_BUDGET: layout tokens' micro-batches


def layout_values(spec: Spec) -> LayoutValues:
    """The recipe's batch, accumulation and checkpointing, or the auto plan's where it differs
    (explain's compiled_plan: only sources every checkout reads alike, no Hub cache)."""
    t = spec.training
    batch = Value(
        "per_device_train_batch_size",
        t.per_device_train_batch_size,
        "training.per_device_train_batch_size",
    )
    accumulation = Value(
        "gradient_accumulation_steps",
        t.gradient_accumulation_steps,
        "training.gradient_accumulation_steps",
    )
    ckpt = t.gradient_checkpointing
    checkpointing = Value(
        "activation_checkpointing",
        ckpt,
        "training.gradient_checkpointing",
        "non-reentrant" if ckpt else None,
    )
    recipe = LayoutValues(batch, accumulation, checkpointing)
    if layout_of(spec) == "recipe":
        return recipe
    device = device_of(spec)
    plan = compiled_plan(spec, device)
    if layout_of(spec) == "tokens":
        return _token_values(spec, plan, recipe) or recipe
    if plan is None or plan.layout != "auto":  # no shape to plan with, or nothing fits
        return recipe
    rows = plan.rows_per_step
    if plan.batch != t.per_device_train_batch_size:
        batch = Value(batch.name, plan.batch, "training.layout", f"auto: {rows} rows per step")
    if plan.accumulation != t.gradient_accumulation_steps:
        why = "auto: same loss"
        accumulation = Value(accumulation.name, plan.accumulation, "training.layout", why)
    if plan.checkpointing != ckpt:
        why = f"auto: fits {device.name} (est. {plan.memory_gib:.0f} GiB)"
        if plan.checkpointing:
            why = f"auto: needed on {device.name}"
        checkpointing = Value(checkpointing.name, plan.checkpointing, "training.layout", why)
    return LayoutValues(batch, accumulation, checkpointing)


def _token_values(spec: Spec, plan: Layout | None, recipe: LayoutValues) -> LayoutValues | None:
    """Layout tokens: the step's rows as one batch, which TokenBudgetTrainer cuts into
    micro-batches of TOKEN_BUDGET tokens. None (the recipe) where the plan kept the recipe, or
    where no model shape to plan with and no training.token_budget leave no budget."""
    t = spec.training
    if (plan is None and t.token_budget is None) or (plan and plan.layout != "tokens"):
        return None
    key = "training.token_budget" if t.token_budget else "training.layout"
    checkpointing = recipe.checkpointing
    if plan is None:  # the spec's budget; no shape to estimate its memory with
        budget = Value("TOKEN_BUDGET", t.token_budget, key, "a longer row trains alone")
    else:
        device = device_of(spec)
        why = (
            f"{plan.micro_batches} micro-batch(es) a step expected, {plan.micro_batches_worst} "
            f"at worst; est. {plan.memory_gib:.0f} of {device.memory_gib:.0f} GiB on {device.name}"
        )
        budget = Value("TOKEN_BUDGET", plan.token_budget, key, why)
        if plan.checkpointing != checkpointing.value:
            why = "tokens: needed to fit" if plan.checkpointing else "tokens: the budget fits"
            checkpointing = Value(checkpointing.name, plan.checkpointing, "training.layout", why)
    rows = t.per_device_train_batch_size * t.gradient_accumulation_steps
    return LayoutValues(
        batch=Value(recipe.batch.name, rows, "training.layout", f"tokens: {rows} rows a step"),
        accumulation=Value(
            recipe.accumulation.name, 1, "training.layout", "tokens: cut by TOKEN_BUDGET"
        ),
        checkpointing=checkpointing,
        token_budget=budget,
    )


def _peak_flops(spec: Spec) -> Value:
    device = device_of(spec)
    why = "measured fp32 matmul" if device.name == "cpu" else "dense fp16/bf16"
    return Value("PEAK_TFLOPS", device.peak_tflops, "training.gpu", f"{device.name}: {why}")


def _extra_forwards(spec: Spec) -> Value | None:
    passes = cost.extra_forwards(spec)
    if not passes:
        return None
    why = "the reference's" if passes == 1 else "the reference's, and both models' KL passes"
    return Value("EXTRA_FORWARDS", passes, "method", f"forward-only passes per token: {why}")


def _optimisation_args(spec: Spec, layout: LayoutValues) -> list[Value]:
    """Batches, steps, the optimiser and its schedule, precision and checkpointing."""
    t = spec.training
    args = [
        Value("seed", spec.seed, "seed", "the data order too (data_seed defaults to it)"),
        layout.batch,
        Value(
            "per_device_eval_batch_size",
            t.per_device_eval_batch_size,
            "training.per_device_eval_batch_size",
        ),
        layout.accumulation,
        Value("num_train_epochs", t.num_train_epochs, "training.num_train_epochs"),
        Value(
            "max_steps",
            -1 if t.max_steps is None else t.max_steps,
            "training.max_steps",
            "-1: epochs decide" if t.max_steps is None else None,
        ),
        Value("learning_rate", t.learning_rate, "training.learning_rate"),
        Value("lr_scheduler_type", t.lr_scheduler_type, "training.lr_scheduler_type"),
    ]
    if t.lr_scheduler_kwargs:
        args.append(
            Value(
                "lr_scheduler_kwargs", dict(t.lr_scheduler_kwargs), "training.lr_scheduler_kwargs"
            )
        )
    return [
        *args,
        _warmup(spec),
        Value("weight_decay", t.weight_decay, "training.weight_decay"),
        *_optimizer_args(spec),
        Value("max_grad_norm", t.max_grad_norm, "training.max_grad_norm"),
        Value("fp16", t.precision == "fp16", "training.precision"),
        Value("bf16", t.precision == "bf16", "training.precision"),
        # the transformers 5 name; `gradient_checkpointing` is its deprecated alias
        layout.checkpointing,
        *_memory_args(spec),
    ]


def _memory_args(spec: Spec) -> list[Value]:
    """TF32 matmuls and activation offloading, written only where the spec sets them."""
    t, args = spec.training, []
    if t.tf32 is not None:
        args.append(Value("tf32", t.tf32, "training.tf32"))
    if t.activation_offloading:
        why = "to CPU memory in the forward, back for the backward"
        args.append(Value("activation_offloading", True, "training.activation_offloading", why))
    return args


def _evaluation_args(spec: Spec) -> list[Value]:
    """When the run evaluates, logs and saves checkpoints."""
    t = spec.training
    args = [Value("eval_strategy", t.eval_strategy, "training.eval_strategy")]
    if t.eval_steps is not None:
        args.append(Value("eval_steps", t.eval_steps, "training.eval_steps"))
    args.append(Value("logging_steps", t.logging_steps, "training.logging_steps"))
    if t.max_steps is not None and t.max_steps < 2 * t.logging_steps:
        why = "a short run logs step 1 too: a curve and a tokens/s interval"
        args.append(Value("logging_first_step", True, "training.max_steps", why))
    args.append(Value("save_strategy", t.save_strategy, "training.save_strategy"))
    if t.save_steps is not None:
        args.append(Value("save_steps", t.save_steps, "training.save_steps"))
    if t.save_total_limit is not None and t.save_strategy != "no":
        args.append(Value("save_total_limit", t.save_total_limit, "training.save_total_limit"))
    if t.early_stopping_patience is not None:
        why = "training ends with the best checkpoint's weights"
        args.append(Value("load_best_model_at_end", True, "training.early_stopping_patience", why))
    # save_strategy "best" needs a metric too: transformers 5.23 refuses it without one
    best = t.save_strategy == "best" or t.early_stopping_patience is not None
    if t.metric_for_best_model is not None or best:
        metric = t.metric_for_best_model or "eval_loss"
        note = None if t.metric_for_best_model else "the default: lower is better"
        args.append(Value("metric_for_best_model", metric, "training.metric_for_best_model", note))
    return args


def _sft_args(spec: Spec) -> list[Value]:
    """SFTConfig's own: the loss on completions, how rows are batched, the stop token."""
    t, stop, pf = spec.training, spec.stop_token(), padding_free(spec)
    args = [
        Value("completion_only_loss", True, None, "loss on the completion only"),
        Value(
            "padding_free",
            pf,
            "training.packing" if t.packing else "training.padding_free",
            "exact: masks from position_ids" if pf else None,
        ),
        Value("packing", t.packing, "training.packing"),
        *_packing_strategy(spec, "bfd"),
        Value(
            "max_length",
            t.max_length if t.packing else None,
            "training.max_length",
            None if t.packing else "rows fit MAX_LENGTH first",
        ),
    ]
    if stop is not None:
        args.append(Value("eos_token", stop, "prompt.completion", "the stop token"))
    return args


def _reporting_args(spec: Spec) -> list[Value]:
    """Kernels, where metrics go, and the Hub push."""
    t = spec.training
    args = []
    if t.use_liger_kernel:
        args.append(Value("use_liger_kernel", True, "training.use_liger_kernel"))
    args.append(Value("report_to", list(t.report_to), "training.report_to"))
    if "trackio" in t.report_to:
        # transformers would create a static Space on a Hub push and after a Space-logged run
        why = "local-first: no Space unless TRACKIO_SPACE_ID names one"
        args.append(Value("trackio_static_space_id", False, None, why))
    if t.push_to_hub:
        args += [
            Value(
                "push_to_hub",
                True,
                "training.push_to_hub",
                "the model, after training" if spec.lora is None else "the adapter, after training",
            ),
            Value(
                "hub_model_id",
                t.hub_model_id or spec.name,
                "training.hub_model_id",
                None if t.hub_model_id else "the spec's name",
            ),
            Value("hub_private_repo", t.hub_private_repo, "training.hub_private_repo"),
        ]
    return args


def _training_args(spec: Spec, layout: LayoutValues) -> list[Value]:
    """SFTConfig's arguments, in the order a reader looks for them."""
    return [
        *_optimisation_args(spec, layout),
        *_evaluation_args(spec),
        *_sft_args(spec),
        *_reporting_args(spec),
        *_distributed_args(spec),
    ]


WRAP_POLICIES = {
    "transformer_layer": "TRANSFORMER_BASED_WRAP",
    "size": "SIZE_BASED_WRAP",
    "none": "NO_WRAP",
}


def _distributed_args(spec: Spec) -> list[Value]:
    """Multi-process settings; absent for single-process specs (nothing to review there)."""
    launch = spec.launch
    args: list[Value] = []
    if launch.backend != "auto":
        args.append(Value("ddp_backend", launch.backend, "launch.backend"))
    if launch.world_size() > 1 and launch.strategy == "ddp":
        # every parameter that trains gets a gradient each step; transformers' default for a
        # PeftModel (not a PreTrainedModel) is True: a graph search every step
        why = "no search for unused parameters each step"
        args.append(Value("ddp_find_unused_parameters", False, "launch.strategy", why))
    if launch.strategy == "fsdp":
        fsdp = launch.fsdp
        config = {
            "version": 2,
            "auto_wrap_policy": WRAP_POLICIES[fsdp.wrap_policy],
            "activation_checkpointing": fsdp.activation_checkpointing,
            "cpu_offload": fsdp.cpu_offload,
        }
        if fsdp.wrap_policy == "size":
            config["min_num_params"] = fsdp.min_num_params
        args.append(Value("fsdp", True, "launch.strategy"))
        args.append(Value("fsdp_config", config, "launch.fsdp", "FSDP2; layers from the model"))
    return args


def _training(spec: Spec) -> TrainingPart:
    t, layout = spec.training, layout_values(spec)
    return TrainingPart(
        lora=_lora(spec),
        args=_method_args(spec, layout),
        resume=t.save_strategy != "no",
        preemption=[
            Value(
                "PREEMPTION_SIGNALS",
                sorted({"SIGTERM", spec.launch.preemption_signal}),
                "launch.preemption_signal",
                "+ SIGTERM",
            ),
            Value("PREEMPTED", PREEMPTED_EXIT, None, "exit code then (EX_TEMPFAIL): run --resume"),
        ],
        fsdp=spec.launch.strategy == "fsdp",
        push_to_hub=t.push_to_hub,
        gradient_checkpointing=bool(layout.checkpointing.value),
        peak_flops=_peak_flops(spec),
        trackio="trackio" in t.report_to,
        full=spec.lora is None,
        parent=_parent(spec),
        bf16=t.precision == "bf16",
        distributed=spec.launch.world_size() > 1,
        token_budget=layout.token_budget,
        loraplus=_loraplus(spec),
        initial_adapter=spec.lora is not None
        and spec.lora.init_lora_weights.startswith(("pissa", "olora")),
        modules_to_save=spec.lora is not None and bool(spec.lora.modules_to_save),
        unfrozen=_unfrozen(spec),
        extra_forwards=_extra_forwards(spec),
        count_tokens=spec.method == "orpo",
        master_fp32=spec.lora is None and spec.model.dtype != "float32",
        early_stopping=_early_stopping(spec),
    )


def _method_args(spec: Spec, layout: LayoutValues) -> list[Value]:
    """The trainer config's arguments for the spec's method."""
    if spec.method == "sft":
        return _training_args(spec, layout)
    if spec.method == "pretrain":
        return _pretrain_args(spec, layout)
    if spec.method == "reward":
        return _reward_args(spec, layout)
    return _preference_args(spec, layout)


PACKING_WHY = {
    "bfd": "whole rows binned best-fit-decreasing; a longer row loses its end",
    "bfd_split": "a row longer than max_length continues in the next sequence, never cut",
    "wrapped": "one token stream cut every max_length tokens",
}


def _packing_strategy(spec: Spec, default: str) -> list[Value]:
    """TRL's packing_strategy, where rows are packed: the spec's, else the method's default."""
    t = spec.training
    if not t.packing:
        return []
    strategy = t.packing_strategy or default
    return [Value("packing_strategy", strategy, "training.packing_strategy", PACKING_WHY[strategy])]


def _pretrain_args(spec: Spec, layout: LayoutValues) -> list[Value]:
    """SFTConfig on raw text: the loss on every token, documents packed into max_length rows."""
    t = spec.training
    args = [a for a in _training_args(spec, layout) if a.name not in SFT_ONLY_ARGS]
    args += [
        Value("completion_only_loss", False, None, "raw text: the loss on every token"),
        Value("dataset_text_field", spec.prompt.text_column, "prompt.text_column"),
        Value("packing", t.packing, "training.packing"),
    ]
    args += _packing_strategy(spec, "bfd_split")
    pf = padding_free(spec)
    if t.packing_strategy == "wrapped":
        why = "wrapped rows: a row's tokens attend to the earlier documents in it"
        args.append(Value("padding_free", pf, "training.packing_strategy", why))
    elif t.packing:
        why = "packed rows: masks from position_ids, no attention across documents"
        args.append(Value("padding_free", pf, "training.packing", why))
    else:
        exact = "exact: masks from position_ids" if pf else None
        args.append(Value("padding_free", pf, "training.padding_free", exact))
    why = "rows are packed to this length" if t.packing else "a longer document loses its end"
    args.append(Value("max_length", t.max_length, "training.max_length", why))
    return args


def _reward_args(spec: Spec, layout: LayoutValues) -> list[Value]:
    """RewardConfig: the shared arguments; rows that do not fit were dropped already."""
    args = [a for a in _training_args(spec, layout) if a.name not in SFT_ONLY_ARGS]
    why = "rows fit already"
    return [*args, Value("max_length", spec.training.max_length, "training.max_length", why)]


def _early_stopping(spec: Spec) -> Value | None:
    t = spec.training
    if t.early_stopping_patience is None:
        return None
    settings = {
        "early_stopping_patience": t.early_stopping_patience,
        "early_stopping_threshold": t.early_stopping_threshold or 0.0,
    }
    why = "evaluations without improvement, then stop"
    return Value("EARLY_STOPPING", settings, "training.early_stopping_patience", why)


def _unfrozen(spec: Spec) -> Value | None:
    patterns = spec.training.unfrozen_parameters
    if spec.lora is not None or not patterns:
        return None
    why = "re.match on parameter names; the rest stay frozen"
    return Value("UNFROZEN_PARAMETERS", list(patterns), "training.unfrozen_parameters", why)


def _parent(spec: Spec) -> Literal["model", "adapter"] | None:
    if spec.method == "sft" or spec.model.adapter is None:
        return None
    return "model" if spec.lora is None else "adapter"


# trl 1.16: DPO and KTO are in trl; ORPO moved to trl.experimental.orpo. pretrain is SFTTrainer
# on a plain text column (the loss on every token); reward is RewardTrainer (a score head)
TRAINERS = {
    "dpo": ("DPO", "trl", "DPOTrainer", "DPOConfig"),
    "orpo": ("ORPO", "trl.experimental.orpo", "ORPOTrainer", "ORPOConfig"),
    "kto": ("KTO", "trl", "KTOTrainer", "KTOConfig"),
    "pretrain": ("continued pretraining", "trl", "SFTTrainer", "SFTConfig"),
    "reward": ("reward model", "trl", "RewardTrainer", "RewardConfig"),
}
DEFAULT_LOSS = {"dpo": "sigmoid", "kto": "kto"}
SFT_ONLY_ARGS = {
    "completion_only_loss",
    "padding_free",
    "packing",
    "packing_strategy",
    "max_length",
    "eos_token",
}


def _method(spec: Spec) -> MethodPart | None:
    if spec.method == "sft":
        return None
    title, module, trainer, config = TRAINERS[spec.method]
    p, paired = spec.prompt, spec.method in ("dpo", "orpo", "reward")
    c = p.conversation
    if spec.method == "pretrain":
        constants = []  # the text column is the prompt part's: infer.py reads it too
    elif c is not None:
        constants = _answer_columns(spec, c)
    elif paired:
        constants = [
            Value("REJECTED_TEMPLATE", p.rejected, "prompt.rejected", "the dispreferred answer"),
            Value("REJECTED_FIELDS", p.rejected_fields(), "prompt.rejected"),
        ]
    else:
        constants = [Value("LABEL_FIELD", p.label_field, "prompt.label_field", "true: desirable")]
    adapter, full = None, spec.lora is None
    if spec.model.adapter is not None:
        why = "training starts from these weights" if full else "training continues this adapter"
        adapter = Value("ADAPTER", spec.model.adapter, "model.adapter", why)
    reference = None
    if spec.method in ("orpo", "pretrain", "reward"):  # no reference model
        pass
    elif full:
        reference = "a frozen copy of the start weights"
    else:
        # trl copies the start adapter into a frozen "ref" one (a fresh one: B = 0, the base)
        reference = "the parent adapter, frozen" if adapter else "a frozen copy of the new adapter"
    return MethodPart(
        spec.method,
        title,
        module,
        trainer,
        config,
        paired,
        constants,
        adapter,
        reference,
        ref_adapter=reference is not None and not full,
    )


def _gold_column(spec: Spec, c: ConversationSpec) -> list[Value]:
    """A preference conversation's answer column that both scripts read: the preferred one
    (kto: the answer's; none where it is the conversation's last turn)."""
    key = "prompt.conversation"
    if spec.method != "kto":
        return [Value("CHOSEN_COLUMN", c.chosen, f"{key}.chosen", "the preferred answer")]
    if c.completion in (None, c.column):  # the conversation's last turn is the answer
        return []
    return [Value("COMPLETION_COLUMN", c.completion, f"{key}.completion", "the answer")]


def _answer_columns(spec: Spec, c: ConversationSpec) -> list[Value]:
    """A preference conversation's columns only train.py reads (beside _gold_column's)."""
    if spec.method != "kto":
        why = "the dispreferred answer"
        return [Value("REJECTED_COLUMN", c.rejected, "prompt.conversation.rejected", why)]
    return [Value("LABEL_FIELD", spec.prompt.label_field, "prompt.label_field", "true: desirable")]


def _preference_args(spec: Spec, layout: LayoutValues) -> list[Value]:
    """The trainer's arguments: the shared ones without SFT's, then the method's own."""
    pref = spec.preference or PreferenceSpec.model_validate({})  # null: the defaults
    beta_why = (
        "weight of the odds-ratio term" if spec.method == "orpo" else "higher: nearer the reference"
    )
    args = [a for a in _training_args(spec, layout) if a.name not in SFT_ONLY_ARGS]
    args.append(
        Value("max_length", spec.training.max_length, "training.max_length", "rows fit already")
    )
    args.append(Value("beta", pref.beta, "preference.beta", beta_why))
    if spec.method in DEFAULT_LOSS:
        loss = pref.loss_type or DEFAULT_LOSS[spec.method]
        if pref.sft_weight is None:
            args.append(Value("loss_type", loss, "preference.loss_type"))
        else:  # trl adds the losses, weighted
            sft = "and sft: preference.sft_weight"
            args.append(Value("loss_type", [loss, "sft"], "preference.loss_type", sft))
            weights = [1.0, pref.sft_weight]
            args.append(Value("loss_weights", weights, "preference.sft_weight", "the sft one last"))
    if spec.method == "kto":
        for key in ("desirable_weight", "undesirable_weight"):
            args.append(Value(key, getattr(pref, key), f"preference.{key}"))
    return args


def _preflight(spec: Spec) -> PreflightPart:
    m, t = spec.model, spec.training
    infer_cuda = []
    if m.attn_implementation == "flash_attention_2":
        infer_cuda.append("model.attn_implementation flash_attention_2 (or use sdpa)")
    if m.quantization is not None:
        infer_cuda.append("model.quantization (bitsandbytes)")
    cuda = list(infer_cuda)
    if m.attn_implementation == "flex_attention":
        # torch 2.13 has no FlexAttention backward on CPU, and its CPU kernels fail to compile
        cuda.append("model.attn_implementation flex_attention (or use sdpa)")
    if t.precision == "fp16":
        cuda.append("training.precision fp16 (or use fp32)")
    cuda += _cuda_settings(spec) + _optimizer_cuda(spec)
    infer = []
    if m.attn_implementation == "flash_attention_2":
        infer.append("flash_attn")
    if m.quantization is not None:
        infer.append("quantization")
    if m.prequantized is not None:  # its packages: templates/preflight/gptq.py.j2, ...
        infer.append(PREQUANTIZED_CHECKS[m.prequantized.method])
    train = list(infer)
    if t.precision == "bf16":
        train.append("bf16")
    if "wandb" in t.report_to:
        train.append("wandb")
    if "mlflow" in t.report_to:
        train.append("mlflow")
    if "trackio" in t.report_to:
        train.append("trackio")
    if [r for r in t.report_to if r != "wandb"]:
        train.append("tracker")
    if t.push_to_hub:
        train.append("hub")
    if t.use_liger_kernel:
        train.append("liger")
    train += _optimizer_checks(spec)
    return PreflightPart(cuda, train, infer, infer_cuda)


def _cuda_settings(spec: Spec) -> list[str]:
    """Training settings transformers or trl refuse (or crash on) without a CUDA GPU."""
    t, reasons = spec.training, []
    if t.tf32:
        reasons.append("training.tf32 (Ampere or newer; or set it null)")
    if t.activation_offloading:
        reasons.append("training.activation_offloading (or set it false)")
    return reasons


BNB_OPTIMIZERS = {"adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit"}
BNB_OPTIMIZERS |= {"galore_adamw_8bit", "galore_adamw_8bit_layerwise"}


def _optimizer_cuda(spec: Spec) -> list[str]:
    """bitsandbytes' paged optimizers page their state through CUDA's unified memory."""
    optim = spec.training.optim
    return [f"training.optim {optim} (or adamw_8bit)"] if optim.startswith("paged_") else []


def _optimizer_checks(spec: Spec) -> list[str]:
    """The packages training.optim needs beyond transformers: the Trainer would import them only
    when it builds the optimizer, after the weights load."""
    optim, checks = spec.training.optim, []
    if optim.startswith("galore_"):
        checks.append("galore")
    if optim in BNB_OPTIMIZERS and spec.model.quantization is None:  # else that check says it
        checks.append("optim_bitsandbytes")
    if optim in ("adamw_torch_4bit", "adamw_torch_8bit"):
        checks.append("optim_torchao")
    return checks


def _inference(spec: Spec) -> InferencePart:
    inf = spec.inference
    generation: dict[str, float | bool] = {
        "max_new_tokens": inf.max_new_tokens,
        "do_sample": inf.do_sample,
    }
    if inf.do_sample:
        if inf.temperature is not None:
            generation["temperature"] = inf.temperature
        if inf.top_p is not None:
            generation["top_p"] = inf.top_p
    generation["repetition_penalty"] = inf.repetition_penalty
    constants = [
        Value(
            "GENERATION",
            generation,
            "inference",
            None if inf.do_sample else "greedy",
        )
    ]
    if spec.method == "reward":  # it scores the answers, generates none
        constants = []
    constants.append(Value("EXAMPLES", [dict(e) for e in inf.examples], "inference.examples"))
    if spec.method == "pretrain":
        why = "held-out text is scored in windows this long, as training packed it"
        constants.append(Value("MAX_LENGTH", spec.training.max_length, "training.max_length", why))
    return InferencePart(constants, inf.labels is not None)


# model.prequantized's format -> the preflight snippet naming the packages it loads with
PREQUANTIZED_CHECKS = {"gptq": "gptq", "awq": "awq", "compressed-tensors": "compressed_tensors"}
# preflight checks that call importlib.util.find_spec
FIND_SPEC_CHECKS = {"flash_attn", "quantization", "wandb", "mlflow", "tracker", "liger", "trackio"}
FIND_SPEC_CHECKS |= {"galore", "optim_bitsandbytes", "optim_torchao"}
FIND_SPEC_CHECKS |= set(PREQUANTIZED_CHECKS.values())


def _peft_import(model: ModelPart, training: TrainingPart) -> PeftImport | None:
    if training.full:
        return None
    kbit = model.kbit_training
    if training.parent is not None:
        return "parent_kbit" if kbit else "parent"
    return "new_kbit" if kbit else "new"


def _train_imports(plan: Plan) -> Imports:
    m, t, pf = plan.model, plan.training, set(plan.preflight.train)
    return Imports(
        copy=t.full and plan.method is not None and plan.method.reference is not None,
        csv=plan.data.peek == "csv",
        importlib=m.source == "package" or bool(FIND_SPEC_CHECKS & pf),
        os=m.source == "gguf"
        or bool({"wandb", "mlflow", "hub"} & pf)
        or t.trackio
        or m.train_device_map == "local_rank",
        hub=t.push_to_hub,
        concatenate=plan.data.mixture,
        peft=_peft_import(m, t),
        trainable_tokens=bool(plan.tokens.constants) and not t.full,
        bitsandbytes=m.quantization is not None,
        partial_state=t.distributed,
        loraplus=t.loraplus is not None,
        re=t.unfrozen is not None,
        lora_conversion=t.initial_adapter,
        transformers=_transformers_names(plan, infer=False),
    )


def _transformers_names(plan: Plan, *, infer: bool) -> tuple[str, ...]:
    """What a script imports from transformers: a reward model is a sequence classifier."""
    reward = plan.method is not None and plan.method.name == "reward"
    names = ["AutoModelForSequenceClassification" if reward else "AutoModelForCausalLM"]
    names.append("AutoTokenizer")
    if plan.model.quantization is not None:
        names.append("BitsAndBytesConfig")
    if not infer:
        if plan.training.early_stopping is not None:
            names.append("EarlyStoppingCallback")
        names.append("TrainerCallback")
    return (*names, "set_seed")


def _infer_imports(plan: Plan) -> Imports:
    m = plan.model
    return Imports(
        importlib=m.source == "package",
        os=m.source == "gguf",
        peft=None if plan.training.full else "parent",
        bitsandbytes=m.quantization is not None,
        transformers=_transformers_names(plan, infer=True),
    )


def build_plan(
    spec: Spec,
    spec_label: str,
    spec_sha256: str,
    script_dir: str,
    overrides: int = 0,
    vocab: set[str] | frozenset[str] | None = None,
) -> Plan:
    """The whole plan; `vocab` is the base model's vocabulary where validation could read it."""
    plan = Plan(
        meta=_meta(spec, spec_label, spec_sha256, script_dir, overrides),
        model=_model(spec),
        tokens=_tokens(spec, vocab),
        prompt=_prompt(spec),
        data=_data(spec),
        training=_training(spec),
        preflight=_preflight(spec),
        inference=_inference(spec),
        method=_method(spec),
    )
    # the imports follow from the parts: each names what the script's code uses
    return replace(plan, train_imports=_train_imports(plan), infer_imports=_infer_imports(plan))


def slurm_plan(spec: Spec, spec_label: str, spec_sha256: str, script_dir: str) -> dict:
    """Everything submit.sbatch.j2 places; every spec value shell-safe."""
    launch, slurm = spec.launch, spec.launch.slurm
    assert slurm is not None  # compile_files asks only where launch.slurm is set
    label = safe_label(spec_label)
    port = (launch.rdzv_endpoint or "localhost:29500").rsplit(":", 1)[1]
    return {
        "header": "\n".join(header_lines(label, spec_sha256)),
        "name": spec.name,
        "job_name": shell_word(spec.name),
        "spec_label": label,
        "script_dir": shell_word(safe_label(script_dir)),
        "nodes": slurm.nodes,
        "nproc_per_node": launch.nproc_per_node,
        "gpus_per_node": slurm.gpus_per_node,
        "cpus_per_task": slurm.cpus_per_task,
        "time": shell_word(slurm.time),
        "partition": shell_word(slurm.partition) if slurm.partition else None,
        "account": shell_word(slurm.account) if slurm.account else None,
        "extra": [shell_word(option) for option in slurm.extra_sbatch],
        "port": int(port),
        "signal": launch.preemption_signal.removeprefix("SIG"),
        "signal_seconds": slurm.signal_seconds,
        "preempted": PREEMPTED_EXIT,
    }
