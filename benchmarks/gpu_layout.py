"""specs/fingpt.yaml's train.py in both layouts on one GPU: tokens/s, MFU, peak memory and loss,
measured beside `specforge explain`'s predictions.

The generated fingpt train.py itself runs (compiled from specs/fingpt.yaml with --set overrides:
a local model folder and FinGPT-shaped data, a fixed number of optimiser steps, logging every
step, no eval/W&B/Hub), once with `training.layout: recipe` (8 rows x 8 accumulation,
checkpointing on) and once with `auto` (the planner's layout for --gpu). The model is Mistral-7B's
architecture (hidden 4096, 32 layers, 32/8 heads, intermediate 14336, untied head) with random
weights built on the GPU from its config.json: the folder holds no weights, and train.py's
`AutoModelForCausalLM` is swapped for a from-config builder (the only change to the script). The
tokenizer is SmolLM2's (vocabulary 49,152 instead of Mistral's 32,000: +70 M head and embedding
weights, about 1 %); the data is benchmarks/gpu_e2e.py's FinGPT-shaped rows. Each layout runs in
its own process (peak memory is torch.cuda.max_memory_allocated there).

Reported per layout: tokens/s and MFU (train.py's own metrics.jsonl: explain's FLOP convention,
median over the steps after the first two), step seconds, peak GiB, the loss curve; explain's
predicted memory, step time and MFU beside them. Targets (issue 17): auto >= 3x recipe tokens/s at
equal loss; >= 40 % MFU; memory within 20 % and time within 25 % of explain's estimates.

    bash benchmarks/gpu_layout.sh                 # one CUDA GPU, ~4-6 min on an H200
    bash benchmarks/gpu_layout.sh --dry-run       # CPU: tiny Mistral, 2 steps each, ~1 min
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "specs/fingpt.yaml"
# Mistral-7B-v0.1's config.json sizes (the tokenizer's vocabulary is added at build time)
MISTRAL_7B = {
    "model_type": "mistral",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "tie_word_embeddings": False,
}
COMMON = [
    "training.report_to=[]",
    "training.push_to_hub=false",
    "training.eval_strategy=no",
    "training.logging_steps=1",
    "training.warmup_ratio=0.0",
]
DRY_RUN = [  # CPU: fp32, sdpa, 2 x 2 rows a step (the tiny model's logits are large per row)
    "model.dtype=float32",
    "training.precision=fp32",
    "model.attn_implementation=sdpa",
    "training.per_device_train_batch_size=2",
    "training.gradient_accumulation_steps=2",
    "training.max_length=128",
]


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny Mistral, 2 steps each")
    parser.add_argument("--steps", type=int, default=8, help="optimiser steps per layout")
    parser.add_argument("--gpu", default="H200", choices=["H200", "H100", "A100-80GB"])
    parser.add_argument(
        "--dir", type=Path, default=Path(os.environ.get("GPU_LAYOUT_DIR", ".gpu/layout"))
    )
    parser.add_argument("--results", type=Path, help="write the JSON summary here too")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child: LAYOUT:COMPILED_DIR:RUN_DIR
    args = parser.parse_args(argv)
    if args.dry_run:
        args.steps = min(args.steps, 2)
    return args


def prepare(args) -> dict:
    """The model folder (config.json + tokenizer, no weights) and FinGPT-shaped train.jsonl."""
    e2e = load(REPO / "benchmarks/gpu_e2e.py", "bench_gpu_e2e")
    folder = args.dir
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = e2e.load_tokenizer(folder / "tokenizer")
    shape = e2e.SHAPE if args.dry_run else MISTRAL_7B
    config = {
        **shape,
        "architectures": ["MistralForCausalLM"],
        "vocab_size": len(tokenizer),
        "max_position_embeddings": 1024,
        "sliding_window": None,
        "rope_theta": 10000.0,
        "rms_norm_eps": 1e-5,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    model = folder / ("model-tiny" if args.dry_run else "model-7b")
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tokenizer.save_pretrained(model)
    rows = args.steps * 64 * 2  # twice the rows the steps read, after the 10 % validation split
    e2e.write_fingpt_rows(REPO / "data/fin_sentiment_train.jsonl", folder / "train.jsonl", rows)
    return {"model": e2e.local(model), "train": e2e.local(folder / "train.jsonl")}


def overrides(args, paths: dict, layout: str, attention: str) -> list[str]:
    sets = [
        f"model.name={paths['model']}",
        f"dataset.path={paths['train']}",
        f"training.max_steps={args.steps}",
        f"training.layout={layout}",
        f"training.gpu={'cpu' if args.dry_run else args.gpu}",
        *COMMON,
        *(DRY_RUN if args.dry_run else [f"model.attn_implementation={attention}"]),
    ]
    return sets


def predict(sets: list[str], gpu: str) -> dict:
    """explain's report for the compiled spec (no torch in this process)."""
    sys.path.insert(0, str(REPO))
    from specforge.explain import explain
    from specforge.validate.load import load_spec

    return explain(load_spec(SPEC, sets).spec, gpu)


def run_child(args) -> int:
    """One layout: train with the generated script, the model built from config.json."""
    import torch
    from transformers import AutoConfig
    from transformers import AutoModelForCausalLM as Auto

    layout, compiled, run_dir = args.one.split(":", 2)

    class RandomInit:
        """train.py's AutoModelForCausalLM: the config's architecture, random weights, built on
        the device (a 7B random init on the CPU takes minutes; no weights are on disk)."""

        @staticmethod
        def from_pretrained(name, revision=None, dtype=None, **kwargs):
            torch.manual_seed(0)
            device = "cuda" if torch.cuda.is_available() else "cpu"
            with torch.device(device):
                config = AutoConfig.from_pretrained(name)
                return Auto.from_config(config, dtype=getattr(torch, dtype), **kwargs)

    module = load(Path(compiled) / "train.py", f"train_{layout}")
    module.AutoModelForCausalLM = RandomInit
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    module.train(Path(run_dir))
    wall = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 1024**3 if torch.cuda.is_available() else None
    Path(run_dir, "bench.json").write_text(json.dumps({"wall_s": wall, "peak_gib": peak}) + "\n")
    return 0


def measure(run_dir: Path) -> dict:
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in metrics if "loss" in m]
    timed = [m for m in steps if "tokens_per_second" in m and m["step"] > 2] or [
        m for m in steps if "tokens_per_second" in m
    ]
    bench = json.loads((run_dir / "bench.json").read_text())
    tokens = statistics.median(m["tokens_per_second"] for m in timed) if timed else None
    per_step = [b["num_tokens"] - a["num_tokens"] for a, b in itertools.pairwise(steps)]
    return {
        "tokens_per_second": tokens,
        "mfu": statistics.median(m["mfu"] for m in timed) if timed else None,
        "step_seconds": statistics.median(per_step) / tokens if tokens and per_step else None,
        "peak_gib": bench["peak_gib"],
        "wall_s": round(bench["wall_s"], 1),
        "losses": [round(m["loss"], 5) for m in steps],
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.one:
        return run_child(args)
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        sys.exit("error: no CUDA GPU (use --dry-run on a CPU)")
    attention = "flex_attention"
    if cuda and importlib.util.find_spec("flash_attn") is not None:
        attention = "flash_attention_2"
    paths = prepare(args)
    device = torch.cuda.get_device_name(0) if cuda else "cpu"
    print(f"device: {device}; attention: {'sdpa' if args.dry_run else attention}", flush=True)
    results = {"device": device, "steps": args.steps, "layouts": {}}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    for layout in ("recipe", "auto"):
        sets = overrides(args, paths, layout, attention)
        compiled = args.dir / f"compiled-{layout}"
        set_args = [a for s in sets for a in ("--set", s)]
        cmd = [sys.executable, "-m", "specforge", "compile", str(SPEC), "--out", str(compiled)]
        done = subprocess.run(
            cmd + set_args, cwd=REPO, capture_output=True, text=True, env=env, check=False
        )
        if done.returncode != 0:
            sys.exit(f"error: compile ({layout}) failed:\n{done.stdout}{done.stderr}")
        script_dir = next(compiled.glob("*/train.py")).parent
        prediction = predict(sets, "cpu" if args.dry_run else args.gpu)
        run_dir = args.dir / f"run-{layout}"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        print(f"{layout}: {json.dumps(prediction['plan'], sort_keys=True)}", flush=True)
        child = [sys.executable, __file__, "--one", f"{layout}:{script_dir}:{run_dir}"]
        done = subprocess.run(child, cwd=REPO, env=env, check=False)
        if done.returncode != 0:
            sys.exit(f"error: training ({layout}) failed with exit code {done.returncode}")
        measured = measure(run_dir)
        results["layouts"][layout] = {
            "plan": {k: prediction["plan"][k] for k in prediction["plan"] if k != "recipe"},
            "measured": measured,
            "predicted": {
                "memory_gib": prediction["memory_gib"]["planned"],
                "step_seconds": prediction["time"]["step_seconds"],
                "mfu": prediction["time"]["assumed_mfu"],
                "trainable": prediction["parameters"]["trainable"],
            },
        }
        print(f"{layout}: {json.dumps(results['layouts'][layout]['measured'])}", flush=True)
    results["verdict"] = verdict(results["layouts"], args.dry_run)
    print(report(results))
    text = json.dumps(results, indent=2) + "\n"
    for path in [args.dir / "gpu_layout.json", *([args.results] if args.results else [])]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0 if args.dry_run or all(v["pass"] for v in results["verdict"].values()) else 1


def within(measured, predicted, share) -> bool | None:
    if measured is None or not predicted:
        return None
    return abs(predicted - measured) <= share * measured


def verdict(layouts: dict, dry_run: bool) -> dict:
    recipe, auto = layouts["recipe"]["measured"], layouts["auto"]["measured"]
    predicted = layouts["auto"]["predicted"]
    speedup = (
        auto["tokens_per_second"] / recipe["tokens_per_second"]
        if auto["tokens_per_second"] and recipe["tokens_per_second"]
        else None
    )
    same_loss = all(
        abs(a - b) <= 0.02 * abs(b) for a, b in zip(auto["losses"], recipe["losses"])
    ) and len(auto["losses"]) == len(recipe["losses"])
    checks = {
        "speedup_3x": (speedup, speedup is not None and speedup >= 3.0),
        "equal_loss_2pct": (same_loss, same_loss),
        "mfu_40pct": (auto["mfu"], (auto["mfu"] or 0) >= 0.40),
        "memory_within_20pct": (
            (auto["peak_gib"], predicted["memory_gib"]),
            bool(within(auto["peak_gib"], predicted["memory_gib"], 0.20)),
        ),
        "time_within_25pct": (
            (auto["step_seconds"], predicted["step_seconds"]),
            bool(within(auto["step_seconds"], predicted["step_seconds"], 0.25)),
        ),
    }
    return {name: {"value": value, "pass": ok} for name, (value, ok) in checks.items()}


def report(results: dict) -> str:
    lines = [
        f"device {results['device']}, {results['steps']} optimiser steps per layout",
        (
            "| layout | batch x accum | ckpt | tokens/s | MFU | step s (pred.) | peak GiB (pred.) "
            "| first -> last loss |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in results["layouts"].items():
        p, m, e = entry["plan"], entry["measured"], entry["predicted"]

        def f(x, spec=".1f"):
            return "-" if x is None else format(x, spec)

        lines.append(
            f"| {name} | {p['per_device_train_batch_size']} x {p['gradient_accumulation_steps']} "
            f"| {'on' if p['gradient_checkpointing'] else 'off'} | {f(m['tokens_per_second'])} "
            f"| {f(m['mfu'], '.1%')} (pred. {e['mfu']:.1%}) | {f(m['step_seconds'], '.3f')} "
            f"({e['step_seconds']:.3f}) | {f(m['peak_gib'], '.1f')} ({e['memory_gib']:.1f}) "
            f"| {m['losses'][0]:.4f} -> {m['losses'][-1]:.4f} |"
        )
    for name, check in results["verdict"].items():
        lines.append(f"{name}: {'PASS' if check['pass'] else 'MISS'} ({check['value']})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
