"""GGUF cache: cold vs warm load of SmolLM2 through the generated script's own path.

Each measurement runs in a fresh child process that imports generated/quickstart/train.py as a
module, then times `module.model_source()` (sha256 of the GGUF, and on a cold cache the
dequantise-and-save) and `AutoModelForCausalLM.from_pretrained(source)`. Imports are not timed.

  cold  SPECFORGE_CACHE points at an empty temp dir (dequantise, write safetensors)
  warm  the same dir again (hash the GGUF, load safetensors)

    .venv/bin/python benchmarks/gguf_cache.py             # 1 cold + 3 warm, ~1-2 min on 2 cores
    .venv/bin/python benchmarks/gguf_cache.py --warm 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import importlib.util, json, sys, time
script = sys.argv[1]
spec = importlib.util.spec_from_file_location("generated_train", script)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
from transformers import AutoModelForCausalLM

t0 = time.perf_counter()
source = module.model_source()
t1 = time.perf_counter()
model = AutoModelForCausalLM.from_pretrained(source)
t2 = time.perf_counter()
params = sum(p.numel() for p in model.parameters())
print("RESULT " + json.dumps({"source_s": t1 - t0, "load_s": t2 - t1, "total_s": t2 - t0, "params": params}))
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--script",
        default="generated/quickstart/train.py",
        help="generated train.py to load through (default: %(default)s)",
    )
    parser.add_argument(
        "--cold",
        type=int,
        default=1,
        help="cold loads, each into a new empty cache (default: %(default)s)",
    )
    parser.add_argument(
        "--warm",
        type=int,
        default=3,
        help="warm loads from the last cold cache (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout", type=float, default=300, help="seconds per child (default: %(default)s)"
    )
    return parser.parse_args(argv)


def measure(script: Path, cache: Path, timeout: float) -> dict:
    env = {
        **os.environ,
        "SPECFORGE_CACHE": str(cache),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(script)],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(
            f"child failed (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return json.loads(lines[-1][len("RESULT ") :])


def main(argv=None) -> int:
    args = parse_args(argv)
    script = (REPO / args.script).resolve()
    if not script.is_file():
        sys.exit(f"{script}: not found (run `specforge compile` first)")
    cold, warm = [], []
    with tempfile.TemporaryDirectory(prefix="sf-gguf-cache-") as tmp:
        cache = Path(tmp) / "cache-0"
        for i in range(max(args.cold, 1)):
            cache = Path(tmp) / f"cache-{i}"
            cache.mkdir()
            cold.append(measure(script, cache, args.timeout))
            print(f"  cold {i}: {cold[-1]['total_s']:.2f} s", flush=True)
        for i in range(args.warm):
            warm.append(measure(script, cache, args.timeout))
            print(f"  warm {i}: {warm[-1]['total_s']:.2f} s", flush=True)
        size = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())

    def med(rows, key):
        return statistics.median(r[key] for r in rows) if rows else float("nan")

    print()
    print(
        f"model: {args.script} model_source(), {cold[0]['params'] / 1e6:.1f} M parameters; cache {size / 2**20:.0f} MiB"
    )
    print("| cache | runs | model_source() s | from_pretrained s | total s (median) |")
    print("|---|---|---|---|---|")
    for name, rows in (("cold", cold), ("warm", warm)):
        if rows:
            print(
                f"| {name} | {len(rows)} | {med(rows, 'source_s'):.2f} | {med(rows, 'load_s'):.2f} | {med(rows, 'total_s'):.2f} |"
            )
    if warm:
        print()
        print(f"speedup cold / warm: {med(cold, 'total_s') / med(warm, 'total_s'):.1f}x")
        print(
            f"  warm model_source() share (hashing the GGUF): {med(warm, 'source_s') / med(warm, 'total_s'):.0%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
