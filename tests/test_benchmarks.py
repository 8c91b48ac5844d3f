"""Fast checks of the benchmarks' CPU-checkable parts (the heavy runs are never started here)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
    )


@pytest.fixture(scope="module")
def gpu_check():
    return load("gpu_check")


def test_flops_hand_computed(gpu_check):
    # hidden 64, 2 layers, 4 heads (head_dim 16), 2 kv heads (kv dim 32), ff 128, vocab 100
    shape = gpu_check.Shape(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=100)
    # per layer: q 64*64 + k 64*32 + v 64*32 + o 64*64 + 3 * 64*128 = 36864; lm_head 100*64
    assert gpu_check.matmul_params(shape) == 2 * 36864 + 6400 == 80128
    # LoRA r=4: r*(in+out): q 512, k 384, v 384, o 512, gate/up/down 768 each = 4096 per layer
    assert gpu_check.lora_params(shape, 4) == 8192
    # (4 * 80128 + 6 * 8192) * 8 tokens + 12 * 2 layers * 64 * (3**2 + 5**2)
    flops = gpu_check.step_flops(shape, [3, 5], 4)
    assert flops == 369664 * 8 + 52224 == 3009536
    assert gpu_check.mfu(flops, 1e-3, 1e12) == pytest.approx(0.003009536)
    assert gpu_check.mfu(flops, 1.0, None) is None
    assert gpu_check.six_n_flops(shape, [3, 5]) == 6 * gpu_check.total_params(shape) * 8


def test_mistral_shape_matches_the_published_counts(gpu_check):
    shape = gpu_check.MISTRAL_7B
    assert (shape.hidden, shape.layers, shape.heads, shape.kv_heads) == (4096, 32, 32, 8)
    assert (shape.intermediate, shape.vocab, shape.head_dim) == (14336, 32000, 128)
    assert gpu_check.total_params(shape) == 7_241_732_096  # Mistral-7B-v0.1
    assert gpu_check.lora_params(shape, 16) == 41_943_040  # peft's count for r=16, 7 projections


def test_peak_by_device_name(gpu_check):
    assert gpu_check.peak_tflops_for("NVIDIA H200") == 989.0
    assert gpu_check.peak_tflops_for("NVIDIA A100-SXM4-80GB") == 312.0
    assert gpu_check.peak_tflops_for("Tesla T4") is None


def test_dry_run_arguments(gpu_check):
    args = gpu_check.parse_args(["--dry-run"])
    assert (args.steps, args.warmup, args.batch) == (2, 1, 8)
    assert args.max_len <= 24
    full = gpu_check.parse_args([])
    assert (full.batch, full.min_len, full.max_len, full.lora_r) == (8, 48, 256, 16)


@pytest.mark.train
def test_gpu_check_dry_run_on_cpu():
    done = run("benchmarks/gpu_check.py", "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "| layout | attention |" in out
    assert "| padded-sdpa | sdpa |" in out
    assert "| packed-sdpa | sdpa |" in out
    assert "packed-fa2" in out and "skipped" in out  # no CUDA here
    assert "ratio packed-sdpa / padded-sdpa: tokens/s" in out
    # same batches, same starting weights: packed rows must not attend across sequences
    diff = float(
        re.search(r"packed-sdpa / padded-sdpa: .*first-step loss diff ([\d.e+-]+)", out)[1]
    )
    assert diff < 1e-4


@pytest.mark.train  # times the CLI over many processes
def test_cli_latency_prints_ratios():
    done = run("benchmarks/cli_latency.py", "--runs", "2", "--many", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ratio validate / floor:" in done.stdout
    assert "ratio check / floor:" in done.stdout
    assert re.search(r"ratio check \d+ specs / check 1 spec: [\d.]+x", done.stdout)
    assert re.search(r"ratio check-full \d+ specs / check-full 1 spec: [\d.]+x", done.stdout)
    assert "ratio check-full / floor:" in done.stdout


@pytest.mark.parametrize(
    "name", ["cli_latency", "train_throughput", "gguf_cache", "tokenize_rows", "gpu_check"]
)
def test_help(name):
    module = load(name)
    with pytest.raises(SystemExit) as exit_:
        module.parse_args(["--help"])
    assert exit_.value.code == 0


def test_tokenize_rows_synthetic_rows_are_seeded_with_a_long_tail(tmp_path):
    bench = load("tokenize_rows")
    out = tmp_path / "rows.jsonl"
    bench.write_rows(out, 2000, seed=0)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2000
    assert all(set(row) == {"instruction", "input", "output"} for row in rows)
    long_rows = sum(len(row["input"].split()) >= 250 for row in rows)
    assert 20 <= long_rows <= 120  # ~3%: enough for to_prompt_completion's truncation to run
    bench.write_rows(tmp_path / "again.jsonl", 2000, seed=0)
    assert (tmp_path / "again.jsonl").read_bytes() == out.read_bytes()


def test_fingpt_lengths_rows_keep_labels_and_spread(tmp_path):
    bench = load("train_throughput")
    source = bench.spec_dataset("specs/quickstart.yaml")
    out = tmp_path / "rows.jsonl"
    words = bench.write_fingpt_lengths(source, out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    originals = [json.loads(line) for line in source.read_text().splitlines()]
    labels_of = {r["input"]: r["output"] for r in originals}
    assert len(rows) == 360
    assert {r["output"] for r in rows} == {r["output"] for r in originals}
    for row in rows[:50]:  # every sentence of a paragraph carries the row's label
        parts = [o["input"] for o in originals if o["input"] in row["input"]]
        assert parts and all(labels_of[p] == row["output"] for p in parts)
    assert words[90] >= 3 * words[50]  # a long tail of paragraphs, as in FinGPT sentiment
    bench.write_fingpt_lengths(source, tmp_path / "again.jsonl")
    assert (tmp_path / "again.jsonl").read_bytes() == out.read_bytes()  # seeded


def test_gpu_smoke_specs_compile_to_the_gpu_paths(tmp_path, tiny_untied_model_dir):
    """benchmarks/gpu_smoke.sh needs a GPU to run; here its specs validate and compile to what it
    means to exercise (the model folder it writes is stood in for by the tests' tiny model)."""
    import shutil

    shutil.copytree(REPO / "specs", tmp_path / "specs")
    shutil.copytree(REPO / "data", tmp_path / "data")
    shutil.copytree(BENCH / "gpu_smoke", tmp_path / "benchmarks/gpu_smoke")
    (tmp_path / ".gpu").mkdir()
    (tmp_path / ".gpu/tiny-untied").symlink_to(tiny_untied_model_dir)
    specs = sorted((tmp_path / "benchmarks/gpu_smoke").glob("*.yaml"))
    expected = {
        "gpu-fp16-recipe": ['"fp16": True', '"activation_checkpointing": True', '"sdpa"'],
        "gpu-bf16-flex": ['"bf16": True', '"padding_free": True', '"flex_attention"'],
        "gpu-bf16-flex-packing": ['"packing": True', '"flex_attention"'],
    }
    assert {p.stem for p in specs} == set(expected)
    for spec in specs:
        done = subprocess.run(
            [sys.executable, "-m", "specforge", "compile", str(spec), "--out", "out"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        train = (tmp_path / "out" / spec.stem / "train.py").read_text()
        for text in expected[spec.stem]:
            assert text in train, (spec.stem, text)


@pytest.mark.train
def test_gpu_layout_dry_run_trains_both_layouts_of_the_fingpt_script(tmp_path):
    """benchmarks/gpu_layout.sh --dry-run: the generated fingpt train.py (tiny Mistral, CPU) in
    the recipe and the auto layout, measured beside explain's predictions."""
    env = {**os.environ, "PYTHON": sys.executable, "GPU_LAYOUT_DIR": str(tmp_path)}
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks/gpu_layout.sh"), "--dry-run"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "gpu_layout.json").read_text())
    recipe, auto = results["layouts"]["recipe"], results["layouts"]["auto"]
    assert (
        recipe["plan"]["per_device_train_batch_size"],
        auto["plan"]["per_device_train_batch_size"],
    ) == (2, 4)
    assert auto["plan"]["gradient_accumulation_steps"] == 1
    assert auto["measured"]["losses"] == pytest.approx(recipe["measured"]["losses"], rel=1e-3)
    # layout tokens: the step's 4 rows in one batch, cut by the dry run's budget several times
    tokens = results["layouts"]["tokens"]
    assert tokens["plan"]["per_device_train_batch_size"] == 4
    assert tokens["plan"]["token_budget"] == 160
    assert tokens["measured"]["micro_batches_per_step"] > 1
    assert tokens["measured"]["losses"] == pytest.approx(recipe["measured"]["losses"], rel=1e-3)
    assert auto["measured"]["tokens_per_second"] > 0 and auto["predicted"]["trainable"] > 0
    assert "equal_loss_2pct: PASS" in done.stdout
