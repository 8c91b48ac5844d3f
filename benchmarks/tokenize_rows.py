"""Data preparation of the generated train.py, first run vs second run, on 50k synthetic rows.

Writes a synthetic FinGPT-format .jsonl (instruction / input / output; inputs of 6-60 words,
~3% of 250-400 words so that truncation runs) into a temp dir, then runs the data path of the
generated train()'s own functions twice, each time in a NEW child process, against one private
HF_DATASETS_CACHE (empty before the first run):

  load_dataset("json", data_files=..., split="train")   file-backed rows, as train() loads them
  rows.train_test_split(VALIDATION_FRACTION, seed=SEED)
  to_prompt_completion(train / validation, tokenizer)   row checks + rows.map(fit_rows, batched)
  SFTTrainer(...)                                       TRL's own tokenisation of both splits
                                                        (a one-layer model of the same vocabulary:
                                                        constructing the trainer tokenises)

The tokenizer is the one model_source() names, with the spec's special tokens added as train()
adds them; the first run must build every datasets cache file, the second should read them all
back (datasets fingerprints the rows, fit_rows with the globals it reads, and the tokenizer).
Needs the prepared model folder: runs `specforge prepare SPEC` first (instant when it exists).

    .venv/bin/python benchmarks/tokenize_rows.py              # 50k rows, ~45 s on 2 cores
    .venv/bin/python benchmarks/tokenize_rows.py --rows 5000 --profile
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SLOW = 2000.0  # rows/s (first run of to_prompt_completion) under which the data path is slow
TARGET = 1.0  # seconds: a second run on 50k rows prepares its data in under a second (issue)

INSTRUCTIONS = [
    "What is the sentiment of this news? Please choose an answer from {negative/neutral/positive}.",
    "What is the sentiment of this tweet? Please choose an answer from {negative/neutral/positive}.",
    "Is the sentiment of this statement negative, neutral or positive?",
    "Classify the tone of this headline as negative, neutral or positive.",
]
LABELS = [
    "negative",
    "neutral",
    "positive",
    "mildly negative",
    "moderately positive",
    "strong negative",
]
WORDS = [
    "revenue",
    "profit",
    "loss",
    "quarter",
    "guidance",
    "outlook",
    "shares",
    "stock",
    "investors",
    "analysts",
    "margin",
    "growth",
    "decline",
    "dividend",
    "merger",
    "acquisition",
    "bank",
    "rates",
    "inflation",
    "earnings",
    "forecast",
    "sales",
    "demand",
    "supply",
    "costs",
    "company",
    "market",
    "board",
    "chief",
    "executive",
    "announced",
    "reported",
    "expected",
    "fell",
    "rose",
    "cut",
    "raised",
    "said",
    "percent",
    "million",
    "billion",
    "year",
    "fiscal",
    "second",
    "third",
    "fourth",
    "first",
    "strong",
    "weak",
    "record",
    "lower",
    "higher",
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=50_000, help="synthetic rows (default: %(default)s)"
    )
    parser.add_argument(
        "--script",
        default="generated/quickstart/train.py",
        help="generated train.py whose data path is measured (default: %(default)s)",
    )
    parser.add_argument(
        "--spec",
        default="specs/quickstart.yaml",
        help="its spec, prepared first for the tokenizer (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--profile", action="store_true", help="cProfile of the first run's to_prompt_completion"
    )
    parser.add_argument(
        "--timeout", type=float, default=600, help="seconds per run (default: %(default)s)"
    )
    parser.add_argument("--worker", metavar="JSONL", help=argparse.SUPPRESS)  # one child run
    return parser.parse_args(argv)


def write_rows(path: Path, count: int, seed: int) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(count):
            # mostly headline-sized inputs; ~3% long enough to need truncation at 256 tokens
            words = rng.randint(250, 400) if rng.random() < 0.03 else rng.randint(6, 60)
            text = " ".join(rng.choice(WORDS) for _ in range(words)) + "."
            row = {
                "instruction": rng.choice(INSTRUCTIONS),
                "input": text.capitalize(),
                "output": rng.choice(LABELS),
            }
            handle.write(json.dumps(row) + "\n")


def load_module(script: Path):
    spec = importlib.util.spec_from_file_location("generated_train", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def worker(args) -> int:
    """One run of train()'s data path in this process; prints a RESULT line of seconds."""
    t0 = time.perf_counter()
    module = load_module((REPO / args.script).resolve())
    from datasets import load_dataset
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    seconds = {"import": time.perf_counter() - t0}
    tokenizer = AutoTokenizer.from_pretrained(module.model_source())
    tokenizer.add_special_tokens(module.SPECIAL_TOKENS, replace_extra_special_tokens=False)
    tiny = LlamaForCausalLM(
        LlamaConfig(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            vocab_size=len(tokenizer),
        )
    )
    settings = {**module.TRAINING_ARGS, "max_steps": 1, "report_to": []}
    quiet = io.StringIO()  # the module's report lines, datasets' and TRL's progress output

    @contextlib.contextmanager
    def timed(name):
        start = time.perf_counter()
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            yield
        seconds[name] = time.perf_counter() - start

    with timed("load_dataset"):
        rows = load_dataset("json", data_files=args.worker, split="train")
    with timed("train_test_split"):
        split = rows.train_test_split(test_size=module.VALIDATION_FRACTION, seed=module.SEED)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    with timed("ours_train"):
        train_data, report = module.to_prompt_completion(split["train"], tokenizer, "train")
    if profiler:
        profiler.disable()
    with timed("ours_validation"):
        eval_data, _ = module.to_prompt_completion(split["test"], tokenizer, "validation")
    with tempfile.TemporaryDirectory(prefix="sf-trl-") as out, timed("trl"):
        trainer = SFTTrainer(
            model=tiny,
            args=SFTConfig(output_dir=out, use_cpu=True, **settings),
            train_dataset=train_data,
            eval_dataset=eval_data,
            processing_class=tokenizer,
        )
    if profiler:
        import pstats

        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(12)
        stats.sort_stats("cumulative").print_stats(15)
    result = {
        "seconds": seconds,
        "rows": len(rows),
        "train": len(split["train"]),
        "validation": len(split["test"]),
        "report": report,
        "file_backed": bool(train_data.cache_files),
        "trl_columns": trainer.train_dataset.column_names,
    }
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def cache_files(root: Path) -> int:
    return sum(1 for path in root.rglob("*.arrow")) if root.is_dir() else 0


def run_worker(args, data_path: Path, datasets_cache: Path) -> tuple[dict, str]:
    env = {
        **os.environ,
        "HF_DATASETS_CACHE": str(datasets_cache),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    command = [sys.executable, __file__, "--worker", str(data_path), "--script", args.script]
    command += ["--profile"] if args.profile else []
    t0 = time.perf_counter()
    done = subprocess.run(
        command,
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=args.timeout,
    )
    wall = time.perf_counter() - t0
    lines = done.stdout.splitlines()
    results = [line for line in lines if line.startswith("RESULT ")]
    if done.returncode != 0 or not results:
        sys.exit(
            f"run failed (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    result = json.loads(results[-1][len("RESULT ") :])
    result["wall"] = wall
    return result, "\n".join(line for line in lines if not line.startswith("RESULT "))


STEPS = [
    ("load_dataset", 'load_dataset("json")'),
    ("train_test_split", "train_test_split()"),
    ("ours_train", "to_prompt_completion(train)"),
    ("ours_validation", "to_prompt_completion(validation)"),
    ("trl", "SFTTrainer(...): TRL's tokenisation"),
]


def main(argv=None) -> int:
    args = parse_args(argv)
    os.chdir(REPO)
    if args.worker:
        return worker(args)
    if not (REPO / args.script).is_file():
        sys.exit(f"{args.script}: not found (run `specforge compile` first)")
    t0 = time.perf_counter()
    prepared = subprocess.run(
        [sys.executable, "-m", "specforge", "prepare", args.spec],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    if prepared.returncode != 0:
        sys.exit(f"specforge prepare {args.spec} failed:\n{prepared.stdout}{prepared.stderr}")
    print(f"specforge prepare {args.spec}: {time.perf_counter() - t0:.1f} s", flush=True)
    runs, profile = [], ""
    with tempfile.TemporaryDirectory(prefix="sf-tokenize-") as tmp:
        tmp = Path(tmp)
        data_path = tmp / "synthetic.jsonl"
        write_rows(data_path, args.rows, args.seed)
        datasets_cache = tmp / "hf-datasets"  # private and empty: the first run is cold
        for name in ("first", "second"):
            before = cache_files(datasets_cache)
            result, output = run_worker(args, data_path, datasets_cache)
            result["new_cache_files"] = cache_files(datasets_cache) - before
            runs.append(result)
            profile = profile or output
            print(f"  {name} run: {result['wall']:.1f} s wall", flush=True)
            args.profile = False  # profile the cold run only

    first, second = runs
    print()
    print(
        f"{first['rows']} synthetic rows -> {first['train']} train / {first['validation']}"
        f" validation (imports {first['seconds']['import']:.1f} s, not counted)"
    )
    print(f"report: {json.dumps(first['report'])}")
    if second["report"] != first["report"]:
        print(f"second run's report differs: {json.dumps(second['report'])}")
    print(f"to_prompt_completion output file-backed: {first['file_backed']}")
    print(f"TRL's dataset columns: {', '.join(first['trl_columns'])}")
    print()
    print("| step | first run s | second run s | first / second |")
    print("|---|---|---|---|")
    for key, label in STEPS:
        a, b = first["seconds"][key], second["seconds"][key]
        print(f"| {label} | {a:.2f} | {b:.2f} | {a / b:.0f}x |")
    ours = [sum(r["seconds"][k] for k, _ in STEPS[:4]) for r in runs]
    total = [o + r["seconds"]["trl"] for o, r in zip(ours, runs)]
    print(
        f"| ours (load + split + both splits) | {ours[0]:.2f} | {ours[1]:.2f} | {ours[0] / ours[1]:.0f}x |"
    )
    print(
        f"| all data preparation | {total[0]:.2f} | {total[1]:.2f} | {total[0] / total[1]:.0f}x |"
    )
    new_files = f"{first['new_cache_files']} / {second['new_cache_files']}"
    print(f"| datasets cache files written | {new_files} | | |")
    print()
    rate = first["train"] / first["seconds"]["ours_train"]
    verdict = "SLOW" if rate < SLOW else "ok"
    print(
        f"to_prompt_completion, first run: {rate:.0f} rows/s ({verdict}; threshold {SLOW:.0f} rows/s)"
    )
    print(
        f"first run {total[0]:.1f} s (ours {ours[0]:.1f} + TRL {first['seconds']['trl']:.1f}),"
        f" second run {total[1]:.2f} s: {total[0] / total[1]:.0f}x"
    )
    verdict = "PASS" if total[1] < TARGET else "MISS"
    print(f"second run under {TARGET:.0f} s on {first['rows']} rows: {total[1]:.2f} s  {verdict}")
    if profile.strip():
        print()
        print(profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
