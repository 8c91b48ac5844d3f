"""Data preparation speed of the generated train.py: rows/s of load_splits + to_prompt_completion.

Writes a synthetic FinGPT-format .jsonl (instruction / input / output; inputs of varied length,
a few long enough to be truncated to max_length) into a temp dir, imports the generated
train.py as a module, points its DATASET_PATH at the file, and times:

  load_splits()                               json -> datasets, seeded train/validation split
  to_prompt_completion(train, tokenizer, ...) check_rows + fit_to_length per row + Dataset.from_list

with the SmolLM2 tokenizer from the module's model_source() and the spec's special tokens added
(as train() does). Prints rows/s; --profile adds a cProfile summary of to_prompt_completion.

Then the data path as train() runs it, twice against one empty SPECFORGE_CACHE (first run,
second run): prepared_data() (load_splits + to_prompt_completion of both splits, saved to the
cache; the second run loads it) and TRL's tokenisation of the train split (an SFTTrainer built
around a one-layer model of the same vocabulary: constructing it tokenises; datasets caches the
result beside the prepared rows, so the second run reads it back).

    .venv/bin/python benchmarks/tokenize_rows.py              # 50k rows, ~1 min on 2 cores
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
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SLOW = 2000.0  # rows/s under which the data path is called slow

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
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="also print a cProfile summary")
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


def time_train_data_path(module, tokenizer) -> tuple[float, float]:
    """Seconds of prepared_data() and of TRL's tokenisation of its train split, as train() does."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    quiet = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        data, _ = module.prepared_data(tokenizer)
    prepare = time.perf_counter() - t0
    tiny = LlamaConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
    )
    settings = {**module.TRAINING_ARGS, "max_steps": 1, "eval_strategy": "no", "report_to": []}
    settings.pop("eval_steps", None)
    with tempfile.TemporaryDirectory(prefix="sf-trl-") as out:
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            SFTTrainer(
                model=LlamaForCausalLM(tiny),
                args=SFTConfig(output_dir=out, use_cpu=True, **settings),
                train_dataset=data["train"],
                processing_class=tokenizer,
            )
        tokenise = time.perf_counter() - t0
    return prepare, tokenise


def main(argv=None) -> int:
    args = parse_args(argv)
    script = (REPO / args.script).resolve()
    os.chdir(REPO)
    with tempfile.TemporaryDirectory(prefix="sf-tokenize-") as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ["HF_DATASETS_CACHE"] = str(tmp / "hf-datasets")  # a cold, private datasets cache
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        data_path = tmp / "synthetic.jsonl"
        write_rows(data_path, args.rows, args.seed)

        t0 = time.perf_counter()
        module = load_module(script)
        t_import = time.perf_counter() - t0
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(module.model_source())
        module.add_special_tokens(tokenizer)
        module.DATASET_PATH = str(data_path)

        t0 = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):  # datasets' progress bars
            train_rows, validation_rows = module.load_splits()
        t_load = time.perf_counter() - t0

        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        t0 = time.perf_counter()
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured):  # the module prints its report line
            _, report = module.to_prompt_completion(train_rows, tokenizer, "train")
        t_prep = time.perf_counter() - t0
        if profiler:
            profiler.disable()

        os.environ["SPECFORGE_CACHE"] = str(tmp / "specforge-cache")  # empty: a first run
        runs = [time_train_data_path(module, tokenizer) for _ in range(2)]

    n_train = len(train_rows)
    prep_rate = n_train / t_prep
    print(
        f"{args.rows} synthetic rows -> {n_train} train / {len(validation_rows)} validation (module import {t_import:.1f} s)"
    )
    print(f"report: {json.dumps(report)}")
    print()
    print("| step | rows | seconds | rows/s |")
    print("|---|---|---|---|")
    print(f"| load_splits() | {args.rows} | {t_load:.2f} | {args.rows / t_load:.0f} |")
    print(f"| to_prompt_completion(train) | {n_train} | {t_prep:.2f} | {prep_rate:.0f} |")
    print(f"| both | {n_train} | {t_load + t_prep:.2f} | {n_train / (t_load + t_prep):.0f} |")
    print()
    print("the data path of train(), same empty cache (first run, then second run):")
    print()
    print("| run | prepared_data() s | TRL tokenisation s | total s | train rows/s |")
    print("|---|---|---|---|---|")
    for name, (prepare, tokenise) in zip(("first", "second"), runs):
        total = prepare + tokenise
        print(f"| {name} | {prepare:.2f} | {tokenise:.2f} | {total:.2f} | {n_train / total:.0f} |")
    speedup = sum(runs[0]) / sum(runs[1])
    print(f"second run / first run: {speedup:.0f}x faster")
    print()
    verdict = "SLOW" if prep_rate < SLOW else "ok"
    print(f"to_prompt_completion: {prep_rate:.0f} rows/s ({verdict}; threshold {SLOW:.0f} rows/s)")
    if profiler:
        import pstats

        print()
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(12)
        stats.sort_stats("cumulative").print_stats(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
