"""The base model's shape, found without loading weights (or importing torch/transformers).

Sources, first found wins: a local model folder's config.json; the Hub cache's config.json for
the spec's revision; the built-in table (the shipped specs' models, so `explain` answers offline);
a GGUF's metadata. Decoder-only models with Llama-style projections (q, k, v, o, gate, up, down)
are what the parameter and FLOP counts assume.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from specforge.modelinfo.gguf_meta import gguf_tokens, read_metadata
from specforge.modelinfo.vocab import hub_file, package_dir, vocab_tokens
from specforge.spec.models import Spec, is_local_path

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied: bool
    head_dim: int = 0  # 0: hidden // heads
    source: str = ""
    base_tokens: frozenset[str] = frozenset()  # special tokens the base vocabulary already has

    @property
    def dim(self) -> int:
        return self.head_dim or self.hidden // self.heads

    def projection_dims(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each projection of one decoder layer."""
        q, kv = self.heads * self.dim, self.kv_heads * self.dim
        return {
            "q_proj": (self.hidden, q),
            "k_proj": (self.hidden, kv),
            "v_proj": (self.hidden, kv),
            "o_proj": (q, self.hidden),
            "gate_proj": (self.hidden, self.intermediate),
            "up_proj": (self.hidden, self.intermediate),
            "down_proj": (self.intermediate, self.hidden),
        }


# The shipped specs' models, from their published config.json (Mistral) and GGUF header (SmolLM2).
BUILT_IN = {
    "mistralai/Mistral-7B-v0.1": Shape(
        4096, 32, 32, 8, 14336, 32000, False, base_tokens=frozenset({"<s>", "</s>", "<unk>"})
    ),
    "SmolLM2-135M-Instruct": Shape(
        576, 30, 9, 3, 1536, 49152, True, base_tokens=frozenset({"<|im_start|>", "<|im_end|>"})
    ),
}
# transformers' config.json keys -> Shape fields
CONFIG_KEYS = {
    "hidden": "hidden_size",
    "layers": "num_hidden_layers",
    "heads": "num_attention_heads",
    "intermediate": "intermediate_size",
    "vocab": "vocab_size",
}
GGUF_KEYS = {
    "hidden": "embedding_length",
    "layers": "block_count",
    "heads": "attention.head_count",
    "intermediate": "feed_forward_length",
}


def _sizes(values: dict[str, object]) -> dict[str, int] | None:
    """The sizes when every one is a positive int, else None."""
    sizes = {k: v for k, v in values.items() if isinstance(v, int) and v > 0}
    return sizes if len(sizes) == len(values) else None


def _shape(
    sizes: dict[str, int], *, kv_heads: int, tied: bool, head_dim: int, source: str
) -> Shape:
    return Shape(
        hidden=sizes["hidden"],
        layers=sizes["layers"],
        heads=sizes["heads"],
        kv_heads=kv_heads,
        intermediate=sizes["intermediate"],
        vocab=sizes["vocab"],
        tied=tied,
        head_dim=head_dim,
        source=source,
    )


def from_config(config: dict, source: str) -> Shape | None:
    """A Shape from a transformers config.json's dict; None when a size is missing."""
    config = config.get("text_config", config)  # multimodal wrappers nest the language model
    sizes = _sizes({field: config.get(key) for field, key in CONFIG_KEYS.items()})
    if sizes is None:
        return None
    return _shape(
        sizes,
        kv_heads=config.get("num_key_value_heads") or sizes["heads"],
        tied=bool(config.get("tie_word_embeddings", False)),
        head_dim=config.get("head_dim") or 0,
        source=source,
    )


def from_gguf(path: Path) -> Shape | None:
    """A Shape from a GGUF header; the head is taken as untied (the header does not say)."""

    meta = read_metadata(path)
    if not meta or "general.architecture" not in meta:
        return None
    arch = meta["general.architecture"]
    values = {field: meta.get(f"{arch}.{key}") for field, key in GGUF_KEYS.items()}
    tokens = gguf_tokens(path) or []
    values["vocab"] = meta.get(f"{arch}.vocab_size") or len(tokens)
    sizes = _sizes(values)
    if sizes is None:
        return None
    return _shape(
        sizes,
        kv_heads=meta.get(f"{arch}.attention.head_count_kv") or sizes["heads"],
        tied=False,
        head_dim=0,
        source=f"GGUF header {path.name}",
    )


def _read_json(path: Path | None) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path else None
    except (OSError, ValueError):
        return None


def find_shape(spec: Spec, *, hub_cache: bool = True) -> Shape | None:
    """The model's shape, or None when no source has it. `hub_cache=False` reads only sources
    every checkout sees alike (compile's plan must not depend on one machine's cache)."""

    m = spec.model
    folder = None
    if m.package:
        folder = package_dir(m.package)
    elif is_local_path(m.name) or Path(m.name).expanduser().is_dir():
        folder = Path(m.name).expanduser()
    shape: Shape | None = None
    if folder is not None and not m.gguf_file:
        config = _read_json(folder / "config.json")
        shape = from_config(config, f"{folder}/config.json") if config else None
    if shape is None and hub_cache and folder is None:
        path = hub_file(spec, "config.json")
        config = _read_json(path)
        shape = from_config(config, f"Hub cache {path}") if config else None
    if shape is None:
        label = m.name if m.name in BUILT_IN else Path(m.gguf_file or "").stem.split(".")[0]
        if label in BUILT_IN:
            shape = replace(BUILT_IN[label], source=f"specforge's table ({label})")
    if shape is None and folder is not None and m.gguf_file:
        shape = from_gguf(folder / m.gguf_file)
    if shape is None:
        return None
    vocab = vocab_tokens(spec) if hub_cache or folder is not None else None
    if vocab is not None:
        declared = set(spec.tokenizer.special_tokens.all())
        shape = replace(shape, base_tokens=frozenset(declared & vocab))
    return shape
