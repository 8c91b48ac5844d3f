"""Spec -> render plan: every default, branch and derived value decided here, in Python.

The templates only place what the plan holds. Spec values reach generated code only through the
literal emitters in `literals.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from specforge import __version__
from specforge.codegen.literals import assign, kwargs_block
from specforge.spec.models import Spec, is_local_path

RULE = "# " + "-" * 76
SAFE_LABEL = re.compile(r"[^A-Za-z0-9._/+-]")


@dataclass(frozen=True)
class Plan:
    header: str
    name: str
    spec_label: str
    model_label: str
    script_dir: str
    rule: str
    common_constants: list[str]
    train_constants: list[str]
    infer_constants: list[str]
    prompt_args: str  # build_prompt's parameters, and the names passed at its call sites
    chat: bool
    gguf: bool
    model_source: str
    model_kwargs: list[str]
    tokenizer_kwargs: str
    preflight_train: list[str]
    preflight_infer: list[str]
    local_data: bool
    data_builder: str
    peek_format: str | None
    max_samples: bool
    validation: str | None
    quantization: bool
    upcast_trainable: bool
    gradient_checkpointing_py: str
    labels: bool
    fsdp: bool = False


def safe_label(text: str) -> str:
    """A path for a comment or docstring: nothing that could end the comment or the string."""
    return SAFE_LABEL.sub("_", text)[:200] or "_"


def default_token_init(token: str) -> str:
    """`<response|end>` -> `response end`: the token's words, whose rows give a meaningful start."""
    words = re.sub(r"[<>|\[\]{}]+", " ", token).replace("_", " ").split()
    return " ".join(words) or token


def stop_token(spec: Spec) -> str | None:
    """The declared special token the completion ends with (eos or additional)."""
    tokens = spec.tokenizer.special_tokens
    for token in sorted({t for t in [tokens.eos, *tokens.additional] if t}, key=len, reverse=True):
        if spec.prompt.completion.endswith(token):
            return token
    return None


def _dataset_builder(path: str) -> str:
    suffix = PurePosixPath(path).suffix.lower()
    return {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}[suffix]


def _special_tokens_dict(spec: Spec) -> dict:
    tokens = spec.tokenizer.special_tokens
    out: dict = {}
    for key, value in (
        ("bos_token", tokens.bos),
        ("eos_token", tokens.eos),
        ("pad_token", tokens.pad),
    ):
        if value:
            out[key] = value
    if tokens.additional:
        out["additional_special_tokens"] = list(tokens.additional)
    return out


def _lora_kwargs(spec: Spec) -> list[tuple]:
    lora = spec.lora
    return [
        ("r", lora.r, "lora.r", None),
        ("lora_alpha", lora.alpha, "lora.alpha", None),
        ("lora_dropout", lora.dropout, "lora.dropout", None),
        ("target_modules", lora.target_modules, "lora.target_modules", None),
        ("bias", lora.bias, "lora.bias", None),
        ("use_dora", lora.use_dora, "lora.use_dora", None),
        ("use_rslora", lora.use_rslora, "lora.use_rslora", None),
        ("task_type", "CAUSAL_LM", None, "causal language modelling"),
    ]


def padding_free(spec: Spec) -> bool:
    """Padding-free batches are exact with sdpa/eager/flex/flash attention and faster than padding;
    packing replaces them when asked for."""
    t = spec.training
    return (not t.packing) if t.padding_free is None else t.padding_free


def _training_kwargs(spec: Spec, stop: str | None) -> list[tuple]:
    t = spec.training
    pf = padding_free(spec)
    items = [
        ("seed", spec.seed, "seed", None),
        ("data_seed", spec.seed, "seed", None),
        (
            "per_device_train_batch_size",
            t.per_device_train_batch_size,
            "training.per_device_train_batch_size",
            None,
        ),
        (
            "per_device_eval_batch_size",
            t.per_device_eval_batch_size,
            "training.per_device_eval_batch_size",
            None,
        ),
        (
            "gradient_accumulation_steps",
            t.gradient_accumulation_steps,
            "training.gradient_accumulation_steps",
            None,
        ),
        ("num_train_epochs", t.num_train_epochs, "training.num_train_epochs", None),
        (
            "max_steps",
            t.max_steps if t.max_steps is not None else -1,
            "training.max_steps",
            None if t.max_steps is not None else "-1: epochs decide",
        ),
        ("learning_rate", t.learning_rate, "training.learning_rate", None),
        ("lr_scheduler_type", t.lr_scheduler_type, "training.lr_scheduler_type", None),
        ("warmup_steps", t.warmup_ratio, "training.warmup_ratio", "a float below 1 is a ratio"),
        ("weight_decay", t.weight_decay, "training.weight_decay", None),
        ("optim", t.optim, "training.optim", None),
        ("max_grad_norm", t.max_grad_norm, "training.max_grad_norm", None),
        ("fp16", t.precision == "fp16", "training.precision", None),
        ("bf16", t.precision == "bf16", "training.precision", None),
        # transformers 5 name; `gradient_checkpointing` is its deprecated alias (gone in v6)
        (
            "activation_checkpointing",
            t.gradient_checkpointing,
            "training.gradient_checkpointing",
            None,
        ),
    ]
    if t.gradient_checkpointing:
        items.append(
            ("activation_checkpointing_kwargs", {"use_reentrant": False}, None, "non-reentrant")
        )
    items += [
        ("eval_strategy", t.eval_strategy, "training.eval_strategy", None),
    ]
    if t.eval_steps is not None:
        items.append(("eval_steps", t.eval_steps, "training.eval_steps", None))
    items += [
        ("logging_steps", t.logging_steps, "training.logging_steps", None),
        ("save_strategy", t.save_strategy, "training.save_strategy", None),
    ]
    if t.save_steps is not None:
        items.append(("save_steps", t.save_steps, "training.save_steps", None))
    if t.save_total_limit is not None:
        items.append(("save_total_limit", t.save_total_limit, "training.save_total_limit", None))
    items += [
        ("completion_only_loss", True, None, "loss on the completion only"),
        (
            "padding_free",
            pf,
            "training.padding_free",
            "exact with sdpa/eager/flex/flash: masks come from position_ids" if pf else None,
        ),
        ("packing", t.packing, "training.packing", None),
        # padding-free without packing does not truncate; rows are fitted to MAX_LENGTH first.
        (
            "max_length",
            t.max_length if t.packing else None,
            "training.max_length",
            "rows are fitted to MAX_LENGTH before training" if not t.packing else None,
        ),
    ]
    if stop is not None:
        items.append(
            ("eos_token", stop, "prompt.completion", "the completion's stop token; never doubled")
        )
    if t.use_liger_kernel:
        items.append(("use_liger_kernel", True, "training.use_liger_kernel", None))
    items += [
        ("report_to", list(t.report_to), "training.report_to", None),
        ("push_to_hub", t.push_to_hub, "training.push_to_hub", None),
    ]
    if t.push_to_hub:
        items.append(
            (
                "hub_model_id",
                t.hub_model_id or spec.name,
                "training.hub_model_id",
                None if t.hub_model_id else "default: the spec's name",
            )
        )
        items.append(("hub_private_repo", t.hub_private_repo, "training.hub_private_repo", None))
    return items + _distributed_kwargs(spec)


WRAP_POLICIES = {
    "transformer_layer": "TRANSFORMER_BASED_WRAP",
    "size": "SIZE_BASED_WRAP",
    "none": "NO_WRAP",
}


def _distributed_kwargs(spec: Spec) -> list[tuple]:
    """Multi-process settings; absent for single-process specs (nothing to review there)."""
    launch = spec.launch
    items: list[tuple] = []
    if launch.backend != "auto":
        items.append(("ddp_backend", launch.backend, "launch.backend", None))
    if launch.world_size() > 1 and launch.strategy == "ddp":
        # LoRA leaves most parameters frozen; no search for unused ones each step
        items.append(("ddp_find_unused_parameters", False, "launch.strategy", None))
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
        items.append(("fsdp", True, "launch.strategy", None))
        items.append(("fsdp_config", config, "launch.fsdp", "FSDP2; layers from the model"))
    return items


SHELL_SAFE = re.compile(r"^[A-Za-z0-9_.,:/@%+=-]+$")


def _shell_word(value: str) -> str:
    """A value for the batch script: already pattern-checked by the schema; checked again here."""
    if not SHELL_SAFE.match(value):
        raise ValueError(f"{value!r} is not safe in a batch script")
    return value


def slurm_plan(spec: Spec, spec_label: str, spec_sha256: str, script_dir: str) -> dict:
    """Everything submit.sbatch.j2 places; every spec value shell-safe."""
    launch, slurm = spec.launch, spec.launch.slurm
    label = safe_label(spec_label)
    port = (launch.rdzv_endpoint or "localhost:29500").rsplit(":", 1)[1]
    return {
        "header": "\n".join(
            [
                f"# Code generated by specforge {__version__} from {label}. DO NOT EDIT.",
                f"# spec-sha256: {spec_sha256}",
                f"# Regenerate: specforge compile {label}",
            ]
        ),
        "name": spec.name,
        "job_name": _shell_word(spec.name),
        "spec_label": label,
        "script_dir": _shell_word(safe_label(script_dir)),
        "nodes": slurm.nodes,
        "nproc_per_node": launch.nproc_per_node,
        "gpus_per_node": slurm.gpus_per_node,
        "cpus_per_task": slurm.cpus_per_task,
        "time": _shell_word(slurm.time),
        "partition": _shell_word(slurm.partition) if slurm.partition else None,
        "account": _shell_word(slurm.account) if slurm.account else None,
        "extra": [_shell_word(option) for option in slurm.extra_sbatch],
        "port": int(port),
    }


def build_plan(
    spec: Spec, spec_label: str, spec_sha256: str, script_dir: str, overrides: int = 0
) -> Plan:
    m, ds, t, inf = spec.model, spec.dataset, spec.training, spec.inference
    label = safe_label(spec_label)
    chat = spec.prompt.messages is not None
    gguf = m.gguf_file is not None
    stop = stop_token(spec)
    local = is_local_path(ds.path)
    suffix = PurePosixPath(ds.path).suffix.lower() if local else ""
    declared = spec.tokenizer.special_tokens.all()
    token_init = {
        tok: spec.tokenizer.new_token_init.get(tok, default_token_init(tok)) for tok in declared
    }

    header = [
        f"# Code generated by specforge {__version__} from {label}. DO NOT EDIT.",
        f"# spec-sha256: {spec_sha256}",
        f"# Regenerate: specforge compile {label}",
    ]
    if overrides:
        header.append(
            f"# With {overrides} --set override(s): see spec.resolved.yaml beside this file."
        )

    common = [
        assign("NAME", spec.name, "name"),
        assign("SEED", spec.seed, "seed"),
        "",
        "# model",
        assign("MODEL_NAME", m.name, "model.name"),
    ]
    if m.package:
        common.append(
            assign("MODEL_PACKAGE", m.package, "model.package", "weights ship in this package")
        )
    if gguf:
        common.append(
            assign("GGUF_FILE", m.gguf_file, "model.gguf_file", "dequantised once, then cached")
        )
    if not m.package:
        common.append(assign("MODEL_REVISION", m.revision, "model.revision"))
    common.append(assign("DTYPE", m.dtype, "model.dtype"))
    if m.attn_implementation not in ("auto", "flex_attention"):
        common.append(
            assign("ATTN_IMPLEMENTATION", m.attn_implementation, "model.attn_implementation")
        )
    if m.quantization is not None:
        q = m.quantization
        common.append(
            kwargs_block(
                "QUANTIZATION",
                [
                    (f"load_in_{q.bits}bit", True, "model.quantization.bits", None),
                    ("bnb_4bit_quant_type", q.quant_type, "model.quantization.quant_type", None),
                    (
                        "bnb_4bit_use_double_quant",
                        q.double_quant,
                        "model.quantization.double_quant",
                        None,
                    ),
                    (
                        "bnb_4bit_compute_dtype",
                        q.compute_dtype,
                        "model.quantization.compute_dtype",
                        None,
                    ),
                ],
            )
        )
    common += [
        "",
        "# tokenizer",
        assign("SPECIAL_TOKENS", _special_tokens_dict(spec), "tokenizer.special_tokens"),
        assign(
            "NEW_TOKENS",
            declared,
            "tokenizer.special_tokens",
            "trained only if the vocabulary lacks them",
        ),
        assign(
            "NEW_TOKEN_INIT",
            token_init,
            "tokenizer.new_token_init",
            "start rows: mean of this text's rows",
        ),
        "",
        "# prompt: one template for training and inference",
    ]
    if chat:
        common.append(
            assign(
                "PROMPT_MESSAGES",
                [[msg.role, msg.content] for msg in spec.prompt.messages],
                "prompt.messages",
                "rendered by the tokenizer's chat template",
            )
        )
    else:
        common.append(assign("PROMPT_TEMPLATE", spec.prompt.template, "prompt.template"))
    common.append(assign("PROMPT_FIELDS", spec.prompt.prompt_fields(), "prompt.template"))
    common.append(
        assign(
            "STOP_TOKEN",
            stop or "",
            "prompt.completion",
            "training ends rows with it; generation stops on it",
        )
    )

    train = ["", "# data", assign("DATASET_PATH", ds.path, "dataset.path")]
    if m.attn_implementation == "flex_attention":  # a training kernel: infer.py uses sdpa (below)
        train[1:1] = [
            "# model",
            assign("ATTN_IMPLEMENTATION", m.attn_implementation, "model.attn_implementation"),
            "",
        ]
    if not local:
        train.append(assign("DATASET_REVISION", ds.revision, "dataset.revision"))
        train.append(assign("DATASET_SPLIT", ds.split, "dataset.split"))
    if ds.validation_fraction is not None:
        train.append(
            assign(
                "VALIDATION_FRACTION",
                ds.validation_fraction,
                "dataset.validation_fraction",
                "seeded split",
            )
        )
    if ds.validation_split is not None:
        train.append(assign("VALIDATION_SPLIT", ds.validation_split, "dataset.validation_split"))
    if ds.max_samples is not None:
        train.append(assign("MAX_SAMPLES", ds.max_samples, "dataset.max_samples"))
    truncate = spec.prompt.truncate_field or spec.prompt.prompt_fields()[-1]
    train += [
        assign("COMPLETION_TEMPLATE", spec.prompt.completion, "prompt.completion"),
        assign("COMPLETION_FIELDS", spec.prompt.completion_fields(), "prompt.completion"),
        assign("MAX_LENGTH", t.max_length, "training.max_length"),
        assign(
            "TRUNCATE_FIELD",
            truncate,
            "prompt.truncate_field",
            "long rows lose text here, never the answer",
        ),
        "",
        "# lora: new token rows are trained and saved with the adapter (trainable_token_indices)",
        kwargs_block("LORA_CONFIG", _lora_kwargs(spec)),
        "",
        "# optimisation, evaluation, output: every value explicit, none left to library defaults",
        kwargs_block("TRAINING_ARGS", _training_kwargs(spec, stop)),
    ]

    generation = [
        ("max_new_tokens", inf.max_new_tokens, "inference.max_new_tokens", None),
        (
            "do_sample",
            inf.do_sample,
            "inference.do_sample",
            "greedy" if not inf.do_sample else None,
        ),
        ("repetition_penalty", inf.repetition_penalty, "inference.repetition_penalty", None),
    ]
    if inf.do_sample:
        if inf.temperature is not None:
            generation.append(("temperature", inf.temperature, "inference.temperature", None))
        if inf.top_p is not None:
            generation.append(("top_p", inf.top_p, "inference.top_p", None))
    infer = ["", "# inference", kwargs_block("GENERATION", generation)]
    if m.attn_implementation == "flex_attention":
        infer[1:1] = [
            "# model: flex_attention (model.attn_implementation) is for training, where it skips",
            "# the cross-row blocks of padding-free batches; generation recompiles it for every new",
            "# shape (120 held-out rows: 114 s against 14 s with sdpa on an H200), and sdpa",
            "# computes the same attention",
            assign("ATTN_IMPLEMENTATION", "sdpa"),
            "",
        ]
    if inf.labels is not None:
        answer = inf.answer_column or spec.prompt.completion_fields()[0]
        infer.append(assign("LABELS", list(inf.labels), "inference.labels"))
        infer.append(assign("ANSWER_COLUMN", answer, "inference.answer_column"))
    infer.append(assign("EXAMPLES", [dict(e) for e in inf.examples], "inference.examples"))

    model_kwargs = []
    if not m.package:
        model_kwargs.append("revision=MODEL_REVISION,")
    model_kwargs.append("dtype=DTYPE,")
    if m.attn_implementation != "auto":
        model_kwargs.append("attn_implementation=ATTN_IMPLEMENTATION,")
    if m.quantization is not None:
        model_kwargs.append("quantization_config=BitsAndBytesConfig(**QUANTIZATION),")
        model_kwargs.append('device_map="auto",')
    if m.trust_remote_code:
        model_kwargs.append("trust_remote_code=True,")
    tokenizer_kwargs = "" if m.package else ", revision=MODEL_REVISION"
    if m.trust_remote_code:
        tokenizer_kwargs += ", trust_remote_code=True"

    model_checks = []
    if m.attn_implementation == "flash_attention_2":
        model_checks.append("flash_attn")
    if m.quantization is not None:
        model_checks.append("quantization")
    train_checks = list(model_checks)
    if m.attn_implementation == "flex_attention":
        train_checks.append("flex")
    if t.precision in ("fp16", "bf16"):
        train_checks.append(t.precision)
    if "wandb" in t.report_to:
        train_checks.append("wandb")
    if [r for r in t.report_to if r != "wandb"]:
        train_checks.append("tracker")
    if t.push_to_hub:
        train_checks.append("hub")
    if t.use_liger_kernel:
        train_checks.append("liger")

    return Plan(
        header="\n".join(header),
        name=spec.name,
        spec_label=label,
        model_label=safe_label(m.name),
        script_dir=safe_label(script_dir),
        rule=RULE,
        common_constants=common,
        train_constants=train,
        infer_constants=infer,
        prompt_args="row, tokenizer" if chat else "row",
        chat=chat,
        gguf=gguf,
        model_source="package" if m.package else "name",
        model_kwargs=model_kwargs,
        tokenizer_kwargs=tokenizer_kwargs,
        preflight_train=train_checks,
        preflight_infer=model_checks,
        local_data=local,
        data_builder=f'"{_dataset_builder(ds.path)}"' if local else "",
        peek_format={".jsonl": "jsonl", ".json": "json", ".csv": "csv"}.get(suffix),
        max_samples=ds.max_samples is not None,
        validation="fraction"
        if ds.validation_fraction is not None
        else "split"
        if ds.validation_split
        else None,
        quantization=m.quantization is not None,
        upcast_trainable=m.dtype in ("float16", "bfloat16") or m.quantization is not None,
        gradient_checkpointing_py=repr(t.gradient_checkpointing),
        labels=inf.labels is not None,
        fsdp=spec.launch.strategy == "fsdp",
    )
