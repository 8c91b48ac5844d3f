"""specs/fingpt.yaml's train.py in each layout on one GPU: tokens/s, MFU, peak memory and loss,
measured beside `specforge explain`'s predictions.

The generated fingpt train.py itself runs (compiled from specs/fingpt.yaml with --set overrides:
a local model folder and FinGPT-shaped data, a fixed number of optimiser steps, logging every
step, no eval/W&B/Hub), once per layout (--layouts): `recipe` (8 rows x 8 accumulation,
checkpointing on), `auto` (the planner's rows per micro-batch for --gpu) and `tokens` (the step's
64 rows cut into micro-batches by the planner's token budget); `tokens@N` runs the token layout
with training.token_budget N (a budget sweep). The model is Mistral-7B's
architecture (hidden 4096, 32 layers, 32/8 heads, intermediate 14336, untied head) with random
weights built on the GPU from its config.json: the folder holds no weights, and train.py's
`AutoModelForCausalLM` is swapped for a from-config builder (the only change to the script). The
tokenizer is SmolLM2's (vocabulary 49,152 instead of Mistral's 32,000: +70 M head and embedding
weights, about 1 %); the data is benchmarks/gpu_e2e.py's FinGPT-shaped rows. Each layout runs in
its own process (peak memory is torch.cuda.max_memory_allocated there).

Reported per layout: tokens/s and MFU (train.py's own metrics.jsonl: explain's FLOP convention,
median over the steps after the first two), step seconds, peak GiB, the loss curve, the ratio to
the recipe's tokens/s, and for `tokens` the micro-batches a step and their mean tokens as run;
explain's predicted memory, step time and MFU beside them. The time model's constants
(cost.DEVICES: MFU = mfu_max * t / (t + half_tokens) for micro-batches of t tokens) are fitted to
every run's (tokens per micro-batch, MFU without checkpointing's recompute) and printed beside the
current ones. Targets (issues 17, 28): the fastest planned layout >= 3x recipe tokens/s at equal
loss; >= 40 % MFU; memory within 20 % and time within 25 % of explain's estimates.

    bash benchmarks/gpu_layout.sh                 # one CUDA GPU: recipe, auto, tokens, ~5-7 min
    bash benchmarks/gpu_layout.sh --layouts tokens@4096,tokens@8192,tokens@16384   # the sweep
    bash benchmarks/gpu_layout.sh --set training.use_liger_kernel=true --layouts tokens
    bash benchmarks/gpu_layout.sh --dry-run       # CPU: tiny Mistral, 2 steps each, ~2 min
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import math
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
DRY_RUN_BUDGET = 160  # tokens: the dry run's 4-row steps are cut into several micro-batches


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
    parser.add_argument(
        "--layouts",
        default="recipe,auto,tokens",
        help="comma-separated: recipe, auto, tokens, tokens@N (token budget N); default all three",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra spec override for every layout (e.g. training.use_liger_kernel=true)",
    )
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
    name, _, budget = layout.partition("@")
    if name == "tokens" and not budget and args.dry_run:
        budget = str(DRY_RUN_BUDGET)
    sets = [
        f"model.name={paths['model']}",
        f"dataset.path={paths['train']}",
        f"training.max_steps={args.steps}",
        f"training.layout={name}",
        *([f"training.token_budget={budget}"] if budget else []),
        f"training.gpu={'cpu' if args.dry_run else args.gpu}",
        *COMMON,
        *(DRY_RUN if args.dry_run else [f"model.attn_implementation={attention}"]),
        *args.set,
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

    module = load(Path(compiled) / "train.py", f"train_{layout.replace('@', '_')}")
    module.AutoModelForCausalLM = RandomInit
    pieces = []  # layout tokens: the tokens of each micro-batch the trainer ran
    if hasattr(module, "micro_batches"):
        cut = module.micro_batches

        def recording(batch, budget):
            out = cut(batch, budget)
            pieces.extend(int(piece["input_ids"].shape[1]) for piece in out)
            return out

        module.micro_batches = recording
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    module.train(Path(run_dir))
    wall = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 1024**3 if torch.cuda.is_available() else None
    bench = {"wall_s": wall, "peak_gib": peak, "micro_batch_tokens": pieces}
    Path(run_dir, "bench.json").write_text(json.dumps(bench) + "\n")
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
    pieces = bench.get("micro_batch_tokens") or []
    return {
        "tokens_per_second": tokens,
        "mfu": statistics.median(m["mfu"] for m in timed) if timed else None,
        "step_seconds": statistics.median(per_step) / tokens if tokens and per_step else None,
        "peak_gib": bench["peak_gib"],
        "wall_s": round(bench["wall_s"], 1),
        "losses": [round(m["loss"], 5) for m in steps],
        "micro_batches_per_step": len(pieces) / len(steps) if pieces and steps else None,
        "micro_batch_tokens_mean": statistics.mean(pieces) if pieces else None,
    }


def run_layout(args, paths: dict, layout: str, attention: str) -> dict:
    """Compile, predict and train one layout in its own process; its entry in the results (with
    "error" where it failed: an out-of-memory budget must not lose the other layouts' figures)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    sets = overrides(args, paths, layout, attention)
    compiled = args.dir / f"compiled-{layout.replace('@', '-')}"
    set_args = [a for s in sets for a in ("--set", s)]
    cmd = [sys.executable, "-m", "specforge", "compile", str(SPEC), "--out", str(compiled)]
    done = subprocess.run(
        cmd + set_args, cwd=REPO, capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        return {"error": f"compile failed:\n{done.stdout}{done.stderr}"}
    script_dir = next(compiled.glob("*/train.py")).parent
    prediction = predict(sets, "cpu" if args.dry_run else args.gpu)
    run_dir = args.dir / f"run-{layout.replace('@', '-')}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    print(f"{layout}: {json.dumps(prediction['plan'], sort_keys=True)}", flush=True)
    child = [sys.executable, __file__, "--one", f"{layout}:{script_dir}:{run_dir}"]
    done = subprocess.run(child, cwd=REPO, env=env, check=False)
    if done.returncode != 0:
        return {"error": f"training failed with exit code {done.returncode}"}
    return {
        "plan": {k: prediction["plan"][k] for k in prediction["plan"] if k != "recipe"},
        "measured": measure(run_dir),
        "predicted": {
            "memory_gib": prediction["memory_gib"]["planned"],
            "step_seconds": prediction["time"]["step_seconds"],
            "tokens_per_second": prediction["time"]["tokens_per_second"],
            "mfu": prediction["time"]["assumed_mfu"],
            "trainable": prediction["parameters"]["trainable"],
        },
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
    results = {"device": device, "steps": args.steps, "extra_sets": args.set, "layouts": {}}
    for layout in args.layouts.split(","):
        entry = run_layout(args, paths, layout, attention)
        results["layouts"][layout] = entry
        print(f"{layout}: {json.dumps(entry.get('measured') or entry)}", flush=True)
    ran = {name: e for name, e in results["layouts"].items() if "measured" in e}
    results["verdict"] = verdict(ran) if "recipe" in ran and len(ran) > 1 else {}
    results["time_model_fit"] = fit_time_model(ran, args.gpu if cuda else "cpu")
    print(report(results))
    text = json.dumps(results, indent=2) + "\n"
    for path in [args.dir / "gpu_layout.json", *([args.results] if args.results else [])]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if len(ran) < len(results["layouts"]):
        return 1
    return 0 if args.dry_run or all(v["pass"] for v in results["verdict"].values()) else 1


def within(measured, predicted, share) -> bool | None:
    if measured is None or not predicted:
        return None
    return abs(predicted - measured) <= share * measured


def speedup(entry: dict, recipe: dict) -> float | None:
    fast, slow = entry["measured"]["tokens_per_second"], recipe["measured"]["tokens_per_second"]
    return fast / slow if fast and slow else None


def verdict(layouts: dict) -> dict:
    """The targets, for the fastest planned layout against the recipe; equal loss for all."""
    recipe = layouts["recipe"]
    planned = {name: e for name, e in layouts.items() if name != "recipe"}
    name, best = max(planned.items(), key=lambda item: speedup(item[1], recipe) or 0.0)
    ratio, measured, predicted = speedup(best, recipe), best["measured"], best["predicted"]
    losses = recipe["measured"]["losses"]
    same_loss = all(
        len(e["measured"]["losses"]) == len(losses)
        and all(abs(a - b) <= 0.02 * abs(b) for a, b in zip(e["measured"]["losses"], losses))
        for e in planned.values()
    )
    checks = {
        "fastest": (name, True),
        "speedup_3x": (ratio, ratio is not None and ratio >= 3.0),
        "equal_loss_2pct": (same_loss, same_loss),
        "mfu_40pct": (measured["mfu"], (measured["mfu"] or 0) >= 0.40),
        "memory_within_20pct": (
            (measured["peak_gib"], predicted["memory_gib"]),
            bool(within(measured["peak_gib"], predicted["memory_gib"], 0.20)),
        ),
        "time_within_25pct": (
            (measured["step_seconds"], predicted["step_seconds"]),
            bool(within(measured["step_seconds"], predicted["step_seconds"], 0.25)),
        ),
    }
    return {check: {"value": value, "pass": ok} for check, (value, ok) in checks.items()}


def fit_time_model(layouts: dict, device: str) -> dict | None:
    """mfu_max and half_tokens of MFU = mfu_max * t / (t + half_tokens), least squares over the
    runs' (tokens per micro-batch, MFU with checkpointing's recompute added back: the kernels'
    own rate); None with fewer than two distinct micro-batch sizes."""
    points = []
    for entry in layouts.values():
        m, p = entry["measured"], entry["plan"]
        if not m["mfu"] or not m["tokens_per_second"] or not m["step_seconds"]:
            continue
        step_tokens = m["tokens_per_second"] * m["step_seconds"]
        count = m["micro_batches_per_step"] or p["gradient_accumulation_steps"]
        recompute = 1.5 if p["gradient_checkpointing"] else 1.0
        points.append((step_tokens / count, m["mfu"] * recompute))
    if len({round(t) for t, _ in points}) < 2:
        return None
    best = None
    for i in range(400):  # half_tokens on a log grid, 10 .. 10^6 tokens
        half = 10 ** (1 + 5 * i / 399)
        x = [t / (t + half) for t, _ in points]
        top = sum(xi * y for xi, (_, y) in zip(x, points)) / sum(xi * xi for xi in x)
        error = sum((top * xi - y) ** 2 for xi, (_, y) in zip(x, points))
        if best is None or error < best[0]:
            best = (error, top, half)
    error, top, half = best
    return {
        "device": device,
        "points": [[round(t, 1), round(y, 4)] for t, y in points],
        "mfu_max": round(top, 4),
        "half_tokens": round(half),
        "rms_error": round(math.sqrt(error / len(points)), 4),
    }


def report(results: dict) -> str:
    lines = [
        f"device {results['device']}, {results['steps']} optimiser steps per layout",
        (
            "| layout | micro-batches | ckpt | tokens/s (pred.) | x recipe | MFU (pred.) "
            "| step s (pred.) | peak GiB (pred.) | first -> last loss |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    recipe = results["layouts"].get("recipe")

    def f(x, spec=".1f"):
        return "-" if x is None else format(x, spec)

    for name, entry in results["layouts"].items():
        if "error" in entry:
            lines.append(f"| {name} | {entry['error'].splitlines()[0]} |")
            continue
        p, m, e = entry["plan"], entry["measured"], entry["predicted"]
        if p.get("token_budget"):
            micro = f"<= {p['token_budget']} tokens: {f(m['micro_batches_per_step'])} a step"
        else:
            micro = f"{p['per_device_train_batch_size']} x {p['gradient_accumulation_steps']}"
        ratio = speedup(entry, recipe) if recipe and "measured" in recipe else None
        lines.append(
            f"| {name} | {micro} | {'on' if p['gradient_checkpointing'] else 'off'} "
            f"| {f(m['tokens_per_second'], ',.0f')} ({e['tokens_per_second']:,}) | {f(ratio, '.2f')} "
            f"| {f(m['mfu'], '.1%')} ({e['mfu']:.1%}) | {f(m['step_seconds'], '.3f')} "
            f"({e['step_seconds']:.3f}) | {f(m['peak_gib'], '.1f')} ({e['memory_gib']:.1f}) "
            f"| {m['losses'][0]:.4f} -> {m['losses'][-1]:.4f} |"
        )
    for name, check in results["verdict"].items():
        lines.append(f"{name}: {'PASS' if check['pass'] else 'MISS'} ({check['value']})")
    fit = results["time_model_fit"]
    if fit:
        lines.append(
            f"time model fit ({fit['device']}): mfu_max {fit['mfu_max']}, half_tokens "
            f"{fit['half_tokens']} (rms {fit['rms_error']}; modelinfo/cost.py DEVICES holds the "
            "current constants)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
