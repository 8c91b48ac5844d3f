"""issue 25, item 8: TF32, early stopping and an evaluation dataset apart from the training
data, compiled and run with the generated train.py on the tiny model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from specforge.codegen.compiler import compile_files
from specforge.validate.load import load_spec
from tests.conftest import load_generated, run_cli, tiny_spec


def compiled(tmp_path, text: str) -> dict[str, str]:
    (tmp_path / "spec.yaml").write_text(text)
    return compile_files(load_spec(tmp_path / "spec.yaml", check_files=False))


def test_tf32_is_a_training_argument_that_needs_cuda(tmp_path, tiny_model_dir):
    files = compiled(tmp_path, tiny_spec(tiny_model_dir, tf32=True))
    train = files["train.py"]
    assert '"tf32": True,  # spec: training.tf32' in train
    assert "this spec needs a CUDA GPU: training.tf32 (Ampere or newer; or set it null)" in train
    # null (the default) leaves transformers' own choice: no tf32 argument at all
    assert '"tf32"' not in compiled(tmp_path, tiny_spec(tiny_model_dir))["train.py"]


def test_activation_offloading_is_trl_s_argument_and_needs_cuda(tmp_path, tiny_model_dir):
    train = compiled(tmp_path, tiny_spec(tiny_model_dir, activation_offloading=True))["train.py"]
    assert '"activation_offloading": True,' in train
    assert "training.activation_offloading (or set it false)" in train


def test_eval_path_is_loaded_instead_of_a_split(tmp_path, tiny_model_dir):
    text = tiny_spec(tiny_model_dir).replace(
        "  validation_fraction: 0.2\n", "  eval_path: data/heldout.jsonl\n"
    )
    train = compiled(tmp_path, text)["train.py"]
    assert 'EVAL_PATH = "data/heldout.jsonl"  # spec: dataset.eval_path' in train
    assert 'eval_rows = load_dataset("json", data_files=EVAL_PATH, split="train")' in train
    assert "train_test_split" not in train and "eval_dataset=eval_data," in train
    hub = text.replace("eval_path: data/heldout.jsonl", "eval_path: org/eval\n  eval_split: test")
    train = compiled(tmp_path, hub)["train.py"]
    assert 'EVAL_SPLIT = "test"  # spec: dataset.eval_split' in train
    assert "eval_rows = load_dataset(EVAL_PATH, split=EVAL_SPLIT)" in train


def early_stopping_spec(model_dir) -> str:
    """Evaluate every 2 of 12 steps on data/heldout.jsonl; an improvement counts only above
    10 nats, so the second evaluation is the first without one and patience 1 stops there."""
    text = tiny_spec(
        model_dir,
        name="early",
        max_steps=12,
        eval_steps=2,
        logging_steps=1,
        save_strategy="best",
        early_stopping_patience=1,
        early_stopping_threshold=10.0,
    )
    return text.replace("  validation_fraction: 0.2\n", "  eval_path: data/heldout.jsonl\n")


@pytest.mark.train
def test_early_stopping_stops_and_ends_with_the_best_checkpoint(project, tiny_model_dir):
    (project / "specs/early.yaml").write_text(early_stopping_spec(tiny_model_dir))
    result = run_cli("compile", "specs/early.yaml", cwd=project)
    assert result.returncode == 0, result.stderr
    mp = pytest.MonkeyPatch()
    mp.chdir(project)
    try:
        module = load_generated(project / "generated/early/train.py", "train_early")
        trainer = module.train(project / "runs/early/test")
    finally:
        mp.undo()
    assert module.EARLY_STOPPING == {"early_stopping_patience": 1, "early_stopping_threshold": 10.0}
    assert trainer.state.global_step == 4 < trainer.state.max_steps == 12  # stopped early
    run = project / "runs/early/test"
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    evaluations = [m for m in metrics if "eval_loss" in m]
    assert [m["step"] for m in evaluations] == [2, 4]
    best = min(evaluations, key=lambda m: m["eval_loss"])["step"]
    assert trainer.args.load_best_model_at_end  # the best checkpoint is loaded at the end
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{best}")
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["validation"]["rows"] == 12  # data/heldout.jsonl, never trained on
    assert summary["train"]["rows"] == 60  # every training row: no split was taken
    assert (run / "adapter/adapter_model.safetensors").is_file()


@pytest.mark.train
def test_a_tf32_spec_dry_runs_on_a_cpu(project, tiny_model_dir):
    """--dry-run builds the trainer's config anywhere: without a GPU it leaves tf32 out (which
    transformers refuses there) and says nothing is wrong with the rest."""
    (project / "specs/tf32.yaml").write_text(tiny_spec(tiny_model_dir, name="tf32", tf32=True))
    assert run_cli("compile", "specs/tf32.yaml", cwd=project).returncode == 0
    command = [sys.executable, "generated/tf32/train.py", "--dry-run"]
    result = subprocess.run(
        command, cwd=project, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert '"tf32": true' in result.stdout


def test_a_hub_config_name_is_passed_to_load_dataset(tmp_path, tiny_model_dir):
    text = tiny_spec(tiny_model_dir).replace(
        "  path: data/train.jsonl\n  validation_fraction: 0.2\n",
        "  path: allenai/c4\n  config_name: en\n  validation_split: validation\n",
    )
    train = compiled(tmp_path, text)["train.py"]
    assert 'DATASET_CONFIG = "en"  # spec: dataset.config_name' in train
    assert "DATASET_PATH, DATASET_CONFIG, revision=DATASET_REVISION, split=DATASET_SPLIT" in train
    assert (
        "DATASET_PATH, DATASET_CONFIG, revision=DATASET_REVISION, split=VALIDATION_SPLIT" in train
    )
