"""GGUF model folder: `specforge prepare` cold vs warm, then the generated script's plain load.

Since the GGUF dequantisation left the generated scripts, `specforge prepare SPEC` writes a plain
model folder into $SPECFORGE_CACHE/models/<package>/<stem> once; the scripts only load it.
Every measurement is a fresh child process (interpreter start and imports included, as a user
waits for them):

  prepare cold  `python -m specforge prepare SPEC`, SPECFORGE_CACHE an empty temp dir
                (dequantise the GGUF, save safetensors + tokenizer + source.json)
  prepare warm  the same command and dir again (fast path: sha256 of the GGUF vs source.json)
  load          a child imports the generated train.py as a module and times its
                model_source() + AutoModelForCausalLM.from_pretrained(folder, dtype=DTYPE)
                (imports not timed: the figure comparable with the old in-script cache)

and, in-process (imports not timed), `prepare_model(spec)` on the warm cache: the fast path alone.

    .venv/bin/python benchmarks/gguf_cache.py             # 1 cold + 3 warm, ~1 min on 2 cores
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
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

LOAD_CHILD = r"""
import importlib.util, json, sys, time
spec = importlib.util.spec_from_file_location("generated_train", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
from transformers import AutoModelForCausalLM

t0 = time.perf_counter()
source = module.model_source()
model = AutoModelForCausalLM.from_pretrained(source, dtype=module.DTYPE)
t1 = time.perf_counter()
params = sum(p.numel() for p in model.parameters())
print("RESULT " + json.dumps({"load_s": t1 - t0, "params": params, "folder": source}))
"""

FAST_PATH_CHILD = r"""
import json, sys, time
from pathlib import Path
from specforge.validate.load import load_spec
from specforge.modelinfo.prepare import prepare_model

loaded = load_spec(Path(sys.argv[1]), [], check_files=False)
t0 = time.perf_counter()
folder = prepare_model(loaded.spec)
t1 = time.perf_counter()
print("RESULT " + json.dumps({"prepare_model_s": t1 - t0, "folder": str(folder)}))
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--spec",
        default="specs/quickstart.yaml",
        help="spec whose GGUF is prepared (default: %(default)s)",
    )
    parser.add_argument(
        "--script",
        default="generated/quickstart/train.py",
        help="generated train.py to load the folder through (default: %(default)s)",
    )
    parser.add_argument(
        "--cold",
        type=int,
        default=1,
        help="cold prepares, each into a new empty cache (default: %(default)s)",
    )
    parser.add_argument(
        "--warm",
        type=int,
        default=3,
        help="warm prepares and loads from the last cold cache (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout", type=float, default=300, help="seconds per child (default: %(default)s)"
    )
    return parser.parse_args(argv)


def child(argv: list[str], cache: Path, timeout: float) -> tuple[float, str]:
    """Wall seconds and stdout of one child process run against `cache`."""
    env = {
        **os.environ,
        "SPECFORGE_CACHE": str(cache),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *argv],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(
            f"{' '.join(argv)} failed (exit {done.returncode}):\n"
            f"{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return wall, done.stdout


def result(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        sys.exit(f"child printed no RESULT line:\n{stdout[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main(argv=None) -> int:
    args = parse_args(argv)
    script = (REPO / args.script).resolve()
    if not script.is_file():
        sys.exit(f"{script}: not found (run `specforge compile` first)")
    prepare = ["-m", "specforge", "prepare", args.spec]
    cold, warm, fast, load = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="sf-gguf-cache-") as tmp:
        cache = Path(tmp) / "cache-0"
        for i in range(max(args.cold, 1)):
            cache = Path(tmp) / f"cache-{i}"
            cache.mkdir()
            wall, out = child(prepare, cache, args.timeout)
            cold.append(wall)
            folder = Path(out.strip().splitlines()[-1])  # prepare prints the folder last
            print(f"  prepare cold {i}: {wall:.2f} s", flush=True)
        for i in range(args.warm):
            warm.append(child(prepare, cache, args.timeout)[0])
            print(f"  prepare warm {i}: {warm[-1]:.2f} s", flush=True)
        for i in range(max(args.warm, 1)):
            fast.append(result(child(["-c", FAST_PATH_CHILD, args.spec], cache, args.timeout)[1]))
            print(f"  prepare_model() fast path {i}: {fast[-1]['prepare_model_s']:.3f} s")
        for i in range(max(args.warm, 1)):
            load.append(result(child(["-c", LOAD_CHILD, str(script)], cache, args.timeout)[1]))
            print(f"  load {i}: {load[-1]['load_s']:.2f} s", flush=True)
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        shown = folder.relative_to(cache)
    floor = [child(["-c", "pass"], Path(tmp), args.timeout)[0] for _ in range(3)]

    def med(values):
        return statistics.median(values) if values else float("nan")

    fast_s = med([r["prepare_model_s"] for r in fast])
    load_s = med([r["load_s"] for r in load])
    print()
    print(
        f"spec {args.spec}: folder $SPECFORGE_CACHE/{shown}, {size / 2**20:.0f} MiB; "
        f"model {load[0]['params'] / 1e6:.1f} M parameters"
    )
    print()
    print("| step | runs | seconds (median) |")
    print("|---|---|---|")
    print(f"| `specforge prepare` cold (dequantise + save), wall | {len(cold)} | {med(cold):.2f} |")
    print(f"| `specforge prepare` warm (fast path), wall | {len(warm)} | {med(warm):.2f} |")
    print(f"| `python -c pass` (interpreter start), wall | {len(floor)} | {med(floor):.2f} |")
    print(
        f"| prepare_model() warm, in-process (sha256 + source.json) | {len(fast)} | {fast_s:.3f} |"
    )
    print(f"| model_source() + from_pretrained(folder), in-process | {len(load)} | {load_s:.2f} |")
    print()
    if warm:
        print(f"ratio prepare cold / warm (wall): {med(cold) / med(warm):.0f}x")
    print(f"first run of a script on a new machine: prepare + load {med(cold) + load_s:.2f} s")
    print(f"every later run: warm prepare + load {med(warm) + load_s:.2f} s (wall + in-process)")
    print(
        f"  in-process (prepare_model() + load, as `specforge run` pays it): {fast_s + load_s:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
