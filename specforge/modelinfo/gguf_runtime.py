"""A GGUF file opened in llama.cpp (llama-cpp-python, the `export` extra), as both the GGUF
export's verification and `specforge serve --format gguf` run it. llama_cpp is imported only
when a file is opened."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def load_llama(path: Path | str, n_ctx: int) -> Any:
    """The GGUF in llama.cpp, its weights used as stored: extra buffer types (weight repacking)
    off. Shim: on CPUs with AMX, llama.cpp's AMX repack of Q8_0 segfaults at the first decode
    (ggml-org/llama.cpp#20824, seen with llama-cpp-python 0.3.36 here; repacks have also given
    wrong results, #16315), and Llama() has no switch for model_params.use_extra_bufts, so its
    default params are swapped for the one call. test_amx_repack_still_crashes watches it."""
    import llama_cpp.llama_cpp as low
    from llama_cpp import Llama

    defaults = low.llama_model_default_params

    def without_repacking():
        params = defaults()
        params.use_extra_bufts = False
        return params

    low.llama_model_default_params = without_repacking
    # half the cores for prompts too (Llama's default takes all for them): on a busy 2-core
    # machine its OpenMP threads otherwise wait on each other, 10x slower
    threads = max(1, (os.cpu_count() or 2) // 2)
    try:
        return Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
            seed=0,
        )
    finally:
        low.llama_model_default_params = defaults
