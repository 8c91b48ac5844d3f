"""Parameter counts as peft's `print_trainable_parameters` reports them for the generated train.py
(with `lora: null`, full fine-tuning: every base weight trains)."""

from __future__ import annotations

from dataclasses import dataclass, field

from specforge.modelinfo.shape import PROJECTIONS, Shape
from specforge.spec.models import Spec


@dataclass(frozen=True)
class Params:
    base: int  # every base weight after the new token rows are added
    matmul: int  # base weights that take part in a matmul (projections + lm_head)
    lora: dict[str, int]  # LoRA A + B per target module, all layers
    token_rows: int  # the new tokens' trainable rows (peft trainable_token_indices)
    new_tokens: list[str]
    trained_tokens: list[str]
    full: bool = False  # full fine-tuning: the base weights are the trained ones
    lora_from: str | None = None  # the parent adapter whose r and targets were counted
    saved: dict[str, int] = field(default_factory=dict)  # lora.modules_to_save's trained copies

    @property
    def trainable(self) -> int:
        if self.full:
            return self.base
        return sum(self.lora.values()) + self.token_rows + sum(self.saved.values())

    @property
    def total(self) -> int:
        return self.base if self.full else self.base + self.trainable


def new_tokens(spec: Spec, shape: Shape) -> tuple[list[str], list[str]]:
    """(added to the vocabulary, trained): train.py trains every added token's row but padding's."""
    declared = spec.tokenizer.special_tokens
    added = [t for t in declared.all() if t not in shape.base_tokens]
    return added, [t for t in added if t != declared.pad]


def count(spec: Spec, shape: Shape, parent_lora: dict | None = None) -> Params:
    """The parameters `shape` gets under `spec`; `parent_lora` is the adapter_config.json of the
    adapter model.adapter continues (specforge.runs.lineage.parent_lora_config), whose r and targets
    peft trains instead of the spec's lora section."""
    added, trained = new_tokens(spec, shape)
    vocab = shape.vocab + len(added)  # the tokenizer's length; models sized to it are resized
    dims = shape.projection_dims()
    per_layer = sum(i * o for i, o in dims.values())
    norms = (2 * shape.layers + 1) * shape.hidden  # RMSNorm weights: two per layer, one final
    heads = 1 if shape.tied else 2
    base = shape.layers * per_layer + heads * vocab * shape.hidden + norms
    matmul = shape.layers * per_layer + vocab * shape.hidden
    if spec.lora is None:  # full fine-tuning: the new rows train as part of the embeddings
        return Params(
            base=base,
            matmul=matmul,
            lora={},
            token_rows=0,
            new_tokens=added,
            trained_tokens=trained,
            full=True,
        )
    r, targets, dora, lora_from = lora_settings(spec, parent_lora)
    lora = {}
    for target in PROJECTIONS if targets == "all-linear" else targets:
        if target in dims:
            fan_in, fan_out = dims[target]
            extra = fan_out if dora else 0  # DoRA's magnitude vector
            lora[target] = shape.layers * (r * (fan_in + fan_out) + extra)
        else:
            lora[target] = 0  # a module this shape does not have: peft would refuse it
    saved = saved_modules(spec, shape, vocab)
    # peft's TrainableTokensWrapper: one delta row per trained token for the embedding, and one
    # for an untied lm_head (a tied head shares the embedding's delta); none for a layer that
    # trains whole (modules_to_save)
    whole = {name for name in TIED if any(name.endswith(e) for e in saved)}
    rows = (0 if whole else 1) if shape.tied else len(TIED) - len(whole)
    token_rows = len(trained) * shape.hidden * rows
    return Params(
        base=base,
        matmul=matmul,
        lora=lora,
        token_rows=token_rows,
        new_tokens=added,
        trained_tokens=trained,
        lora_from=lora_from,
        saved=saved,
    )


TIED = ("model.embed_tokens", "lm_head")  # one weight in a tied model


def module_sizes(shape: Shape, vocab: int) -> dict[str, int]:
    """Each weight-holding module of the Llama-style model train.py builds, by its full name
    (as peft matches names), with its parameter count."""
    sizes = {"model.embed_tokens": vocab * shape.hidden, "lm_head": vocab * shape.hidden}
    sizes["model.norm"] = shape.hidden
    for layer in range(shape.layers):
        prefix = f"model.layers.{layer}"
        for name, (fan_in, fan_out) in shape.projection_dims().items():
            block = "mlp" if name in ("gate_proj", "up_proj", "down_proj") else "self_attn"
            sizes[f"{prefix}.{block}.{name}"] = fan_in * fan_out
        sizes[f"{prefix}.input_layernorm"] = shape.hidden
        sizes[f"{prefix}.post_attention_layernorm"] = shape.hidden
    return sizes


def saved_modules(spec: Spec, shape: Shape, vocab: int) -> dict[str, int]:
    """The weights each lora.modules_to_save entry trains: peft trains a whole copy of every
    module whose name ends with the entry (`norm` is every layer's norms too), each module once.
    A tied head and embedding are one copy (ensure_weight_tying)."""
    assert spec.lora is not None
    taken: set[str] = set()
    saved: dict[str, int] = {}
    for entry in spec.lora.modules_to_save:
        saved[entry] = 0
        for name, size in module_sizes(shape, vocab).items():
            if not name.endswith(entry) or name in taken:
                continue
            tied_twin = shape.tied and name in TIED and taken & set(TIED)
            taken.add(name)
            saved[entry] += 0 if tied_twin else size
    return saved


def lora_settings(spec: Spec, config: dict | None) -> tuple[int, list[str] | str, bool, str | None]:
    """(r, target modules, DoRA, the parent adapter they come from): a run that continues an
    adapter (model.adapter) trains that adapter's LoRA (`config`, when it could be read), not the
    spec's lora section."""
    if spec.model.adapter is not None:
        targets = (config or {}).get("target_modules")
        if config and isinstance(targets, list) and isinstance(config.get("r"), int):
            dora = bool(config.get("use_dora"))
            return config["r"], sorted(targets, key=_projection_order), dora, spec.model.adapter
    if spec.lora is None:
        raise ValueError("full fine-tuning (lora: null) trains no LoRA: count() says so first")
    return spec.lora.r, spec.lora.target_modules, spec.lora.use_dora, None


def _projection_order(name: str) -> tuple[int, str]:
    return (PROJECTIONS.index(name) if name in PROJECTIONS else len(PROJECTIONS), name)
