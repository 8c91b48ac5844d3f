"""Training throughput: pad-to-longest (the seed recipe's layout) vs padding-free (the default).

Compiles specs/quickstart.yaml twice into a temp dir with the same reduced step count, once with
`training.padding_free=false` (pad to the longest row in each batch, no packing) and once with the
generated default (padding-free: rows are concatenated, masks come from position_ids). Each
generated train.py runs as a child process with --output-dir in the temp dir; the two layouts
alternate when --repeat > 1. Per run it reads:

  tokens/s   num_tokens (non-padding tokens, last metrics.jsonl entry that has it)
             / train_runtime (train_summary.json metrics)
  peak RSS   ru_maxrss of that child, from os.wait4 (its own rusage, not the cumulative one)
  loss       train_loss (mean over the run, train_summary.json) and the last logged step loss

Data (--data): `spec` trains on the spec's own rows (the quickstart's are 50-65 tokens, so
padding to the longest in a batch wastes little); `fingpt-lengths` writes rows with the length
mix of FinGPT sentiment instead (the real set cannot be downloaded here): about three in four
are one sentence (FPB, FiQA headlines, TFNS tweets), one in four is a news paragraph of 2-8
sentences (NWGI), built from the spec's own rows so labels and vocabulary stay real; the
default `both` runs the two one after the other. Padding-free saves what padding wastes, so
its gain grows with the spread of row lengths inside a batch.

Targets (padding-free vs padded): tokens/s >= 1.2x, peak RSS <= 0.9x, train loss within 2%.
They are printed as PASS/MISS; the exit status is 0 whenever every run completed.

    .venv/bin/python benchmarks/train_throughput.py              # both data, 8 steps, ~10 min on 2 cores
    .venv/bin/python benchmarks/train_throughput.py --data fingpt-lengths --repeat 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAYOUTS = {
    # name: extra --set overrides
    "padded": ["training.padding_free=false"],
    "padding-free": [],
}
TARGETS = {"tokens_per_s": 1.2, "peak_rss": 0.9, "loss_rel": 0.02}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--spec", default="specs/quickstart.yaml", help="spec to compile (default: %(default)s)"
    )
    parser.add_argument(
        "--steps", type=int, default=8, help="training.max_steps (default: %(default)s)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per layout, alternating order (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout", type=float, default=420, help="seconds per training run (default: %(default)s)"
    )
    parser.add_argument(
        "--data",
        choices=["both", "spec", "fingpt-lengths"],
        default="both",
        help="rows to train on (default: %(default)s; see the module doc)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and print its path")
    return parser.parse_args(argv)


def spec_dataset(spec: str) -> Path:
    """dataset.path of a spec whose data is a local .jsonl (read without importing specforge)."""
    import yaml

    path = (yaml.safe_load((REPO / spec).read_text()) or {}).get("dataset", {}).get("path")
    if not path or not str(path).endswith(".jsonl") or not (REPO / path).is_file():
        sys.exit(
            f"--data fingpt-lengths needs a spec whose dataset.path is a local .jsonl ({spec})"
        )
    return REPO / path


def write_fingpt_lengths(source: Path, out: Path, rows: int = 360, seed: int = 0) -> dict:
    """FinGPT sentiment's length mix, from the source rows: 3/4 one sentence, 1/4 a paragraph of
    2-8 sentences sharing one label. Returns word-count percentiles of the inputs."""
    data = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    by_label: dict[str, list[dict]] = {}
    for row in data:
        by_label.setdefault(row["output"], []).append(row)
    rng = random.Random(seed)
    written, words = [], []
    for _ in range(rows):
        first = rng.choice(data)
        sentences = 1 if rng.random() < 0.75 else rng.randint(2, 8)
        same = [first] + [rng.choice(by_label[first["output"]]) for _ in range(sentences - 1)]
        row = {**first, "input": " ".join(r["input"] for r in same)}
        written.append(json.dumps(row))
        words.append(len(row["input"].split()))
    out.write_text("\n".join(written) + "\n")
    words.sort()
    return {q: words[int(q / 100 * (len(words) - 1))] for q in (10, 50, 90, 100)}


def compile_layout(spec: str, steps: int, extra: list[str], out: Path) -> Path:
    sets = [
        "training.max_length=1024",  # long enough for every fingpt-lengths row: none truncated
        f"training.max_steps={steps}",
        "training.eval_strategy=no",
        "training.logging_steps=1",
        *extra,
    ]
    cmd = [sys.executable, "-m", "specforge", "compile", spec, "--out", str(out)]
    for item in sets:
        cmd += ["--set", item]
    done = subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"compile failed ({' '.join(cmd)}):\n{done.stdout}{done.stderr}")
    scripts = list(out.glob("*/train.py"))
    if len(scripts) != 1:
        sys.exit(f"expected one train.py under {out}, found {scripts}")
    return scripts[0]


def run_child(
    cmd: list[str], log_path: Path, timeout: float, env: dict
) -> tuple[int, float, int, float]:
    """Run cmd; return (exit code, wall s, peak RSS bytes, CPU s (user + sys)) of that child."""
    with open(log_path, "w", encoding="utf-8") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return proc.returncode, wall, usage.ru_maxrss * 1024, cpu  # ru_maxrss: KiB on Linux


def read_results(run_dir: Path) -> dict:
    entries = [
        json.loads(line)
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        if line.strip()
    ]
    with_tokens = [e for e in entries if "num_tokens" in e]
    with_loss = [e for e in entries if "loss" in e]
    summary = json.loads((run_dir / "train_summary.json").read_text())
    metrics = summary["metrics"]
    num_tokens = float(with_tokens[-1]["num_tokens"])
    runtime = float(metrics["train_runtime"])
    return {
        "num_tokens": num_tokens,
        "train_runtime": runtime,
        "tokens_per_s": num_tokens / runtime,
        "train_loss": float(metrics["train_loss"]),
        "last_loss": float(with_loss[-1]["loss"]) if with_loss else float("nan"),
        "lengths": summary.get("train", {}),
    }


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main(argv=None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="sf-throughput-"))
    datasets = ["spec", "fingpt-lengths"] if args.data == "both" else [args.data]
    verdicts = []
    for data in datasets:
        extra = []
        if data == "fingpt-lengths":
            rows = tmp / "fingpt_lengths.jsonl"
            words = write_fingpt_lengths(spec_dataset(args.spec), rows)
            extra = [f"dataset.path={rows}"]
            spread = ", ".join(f"p{q} {n}" for q, n in words.items())
            print(f"fingpt-lengths: {rows.name}, input words {spread}", flush=True)
        verdicts.append(compare(args, tmp / data, data, extra))
        print()
    if args.keep:
        print(f"kept {tmp}")
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    for line in verdicts:
        print(line)
    return 0


def compare(args, tmp: Path, data: str, extra: list[str]) -> str:
    """Train both layouts on one data choice; print the table and ratios; return a summary line."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    scripts = {
        name: compile_layout(args.spec, args.steps, [*extra, *sets], tmp / "compiled" / name)
        for name, sets in LAYOUTS.items()
    }
    print(f"== data {data}: spec {args.spec}, {args.steps} steps, repeat {args.repeat}", flush=True)

    results: dict[str, list[dict]] = {name: [] for name in LAYOUTS}
    names = list(LAYOUTS)
    for rep in range(args.repeat):
        order = names if rep % 2 == 0 else names[::-1]
        for name in order:
            run_dir = tmp / "runs" / f"{name}-{rep}"
            log = tmp / f"{name}-{rep}.log"
            cmd = [sys.executable, str(scripts[name]), "--output-dir", str(run_dir)]
            code, wall, rss, cpu = run_child(cmd, log, args.timeout, env)
            if code != 0:
                tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-40:])
                sys.exit(f"{name} run {rep} failed (exit {code}); log {log}:\n{tail}")
            row = {**read_results(run_dir), "peak_rss": rss, "wall": wall, "cpu": cpu}
            results[name].append(row)
            print(
                f"  run {rep} {name:<13} {row['tokens_per_s']:7.1f} tok/s  "
                f"rss {rss / 2**30:5.2f} GiB  loss {row['train_loss']:.4f}  wall {wall:5.1f} s  cpu {cpu:5.1f} s",
                flush=True,
            )
    lengths = results["padded"][0]["lengths"]
    print(
        f"  row tokens (train split): p50 {lengths['tokens_p50']}, p90 {lengths['tokens_p90']}, "
        f"max {lengths['tokens_max']}"
    )

    def med(name, key):
        return statistics.median(r[key] for r in results[name])

    print()
    print(
        "| layout | non-pad tokens | tokens/s | train_runtime s | peak RSS GiB | train_loss | last-step loss | wall s | child CPU s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in names:
        print(
            f"| {name} | {med(name, 'num_tokens'):.0f} | {med(name, 'tokens_per_s'):.1f} | "
            f"{med(name, 'train_runtime'):.1f} | {med(name, 'peak_rss') / 2**30:.2f} | "
            f"{med(name, 'train_loss'):.4f} | {med(name, 'last_loss'):.4f} | {med(name, 'wall'):.1f} | {med(name, 'cpu'):.1f} |"
        )
    speed = med("padding-free", "tokens_per_s") / med("padded", "tokens_per_s")
    memory = med("padding-free", "peak_rss") / med("padded", "peak_rss")
    loss_rel = abs(med("padding-free", "train_loss") - med("padded", "train_loss")) / med(
        "padded", "train_loss"
    )
    print()
    print(f"ratios, padding-free / padded (medians over repeats), data {data}:")
    print(
        f"  tokens/s  {speed:.2f}x   target >= {TARGETS['tokens_per_s']}x  {verdict(speed >= TARGETS['tokens_per_s'])}"
    )
    print(
        f"  peak RSS  {memory:.2f}x   target <= {TARGETS['peak_rss']}x  {verdict(memory <= TARGETS['peak_rss'])}"
    )
    print(
        f"  loss diff {loss_rel:.2%}   target <= {TARGETS['loss_rel']:.0%}    {verdict(loss_rel <= TARGETS['loss_rel'])}"
    )
    cpu_ratio = med("padding-free", "cpu") / med("padded", "cpu")
    print(
        f"  child CPU {cpu_ratio:.2f}x   (whole process incl. load; less sensitive to a busy machine than wall)"
    )
    if med("padding-free", "num_tokens") != med("padded", "num_tokens"):
        print(
            "  note: the layouts counted different non-pad token totals; tokens/s compares unequal work"
        )
    return (
        f"data {data}: tokens/s {speed:.2f}x {verdict(speed >= TARGETS['tokens_per_s'])}, "
        f"peak RSS {memory:.2f}x {verdict(memory <= TARGETS['peak_rss'])}, "
        f"loss diff {loss_rel:.2%} {verdict(loss_rel <= TARGETS['loss_rel'])}"
    )


if __name__ == "__main__":
    sys.exit(main())
