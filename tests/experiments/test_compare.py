"""`specforge compare` on hand-written records: what differs, ranking, formats and errors."""

from __future__ import annotations

import json

import pytest

from specforge import cli
from tests.helpers import write_record


def resolved(r: int, lr: float) -> dict:
    return {"lora": {"r": r}, "training": {"learning_rate": lr}, "sweep": {"grid": {}}}


@pytest.fixture
def two_sweep_runs(tmp_path, monkeypatch):
    """A one-key sweep's manifest and its two runs, plus a run outside it."""
    monkeypatch.chdir(tmp_path)
    for run_id, r, accuracy, loss, commit in (
        ("20260101T000000Z-aaaaaa", 8, 0.5, 0.9, "1" * 40),
        ("20260101T000100Z-bbbbbb", 16, 0.75, 1.2, "2" * 40),
    ):
        write_record(
            tmp_path,
            "exp",
            run_id,
            spec={"sha256": "f" * 64, "overrides": [f"lora.r={r}"], "resolved": resolved(r, 1e-4)},
            scripts={"sha256": {"train.py": str(r) * 64, "infer.py": "c" * 64}},
            versions={"torch": "2.13.0"},
            git={"commit": commit, "dirty": False},
            sweep={"id": "sweep-x", "index": 0, "values": {"lora.r": str(r)}},
            duration_s=60.0,
            results={
                "losses": {"steps": 4, "final_train_loss": loss, "final_eval_loss": loss + 0.1},
                "eval_tuned": {"accuracy": accuracy, "macro_f1": accuracy / 2, "n": 4},
                "eval_base": {"accuracy": 0.25, "n": 4},
            },
            metrics=[
                {"step": 2, "loss": 2.0, "num_tokens": 100.0},
                {"step": 4, "loss": loss, "num_tokens": 200.0},
                {"step": 4, "train_runtime": 10.0, "train_loss": 1.5},
            ],
        )
    sweep_dir = tmp_path / "runs/exp/sweeps/sweep-x"
    sweep_dir.mkdir(parents=True)
    points = [
        {"index": 0, "values": {"lora.r": "8"}, "runs": ["20260101T000000Z-aaaaaa"]},
        {"index": 1, "values": {"lora.r": "16"}, "runs": ["20260101T000100Z-bbbbbb"]},
        {"index": 2, "values": {"lora.r": "32"}, "runs": []},  # not started
    ]
    (sweep_dir / "sweep.json").write_text(json.dumps({"sweep_id": "sweep-x", "points": points}))
    return tmp_path


def compare(capsys, *args) -> tuple[int, str]:
    code = cli.main(["compare", *args])
    return code, capsys.readouterr().out


def test_a_sweep_id_ranks_its_points_by_accuracy(two_sweep_runs, capsys):
    code, out = compare(capsys, "sweep-x", "--format", "json")
    report = json.loads(out)
    assert code == 0
    assert report["metric"] == "accuracy"
    assert [o["values"]["lora.r"] for o in report["ranked"]] == ["16", "8"]
    assert report["best"] == "20260101T000100Z-bbbbbb"
    assert report["ranked"][0]["tokens_per_s"] == 20.0 and report["ranked"][0]["wall_s"] == 60.0
    differs = {(d["section"], d["key"]): d["values"] for d in report["differs"]}
    assert differs[("spec", "lora.r")] == [8, 16]
    assert ("git", "commit") in differs and ("script", "train.py") in differs
    assert ("spec", "training.learning_rate") not in differs  # the same in both
    assert ("version", "torch") not in differs


def test_losses_rank_lower_first_and_an_unknown_metric_is_a_usage_error(two_sweep_runs, capsys):
    code, out = compare(capsys, "sweep-x", "--by", "eval_loss", "--format", "json")
    assert code == 0
    assert json.loads(out)["best"] == "20260101T000000Z-aaaaaa"
    assert cli.main(["compare", "sweep-x", "--by", "bleu"]) == 2
    assert "no run has it" in capsys.readouterr().err


def test_runs_by_id_or_folder_text_and_markdown(two_sweep_runs, capsys):
    code, out = compare(
        capsys,
        "20260101T000000Z-aaaaaa",
        "runs/exp/20260101T000100Z-bbbbbb",
        "--format",
        "markdown",
    )
    assert code == 0
    assert "| spec: lora.r | 8 | 16 |" in out
    assert "**best: 20260101T000100Z-bbbbbb (lora.r=16): accuracy 0.7500; within noise" in out
    code, out = compare(capsys, "sweep-x")
    assert "outcomes, ranked by accuracy (higher is better):" in out
    best = out.rstrip().splitlines()[-1]
    assert best.startswith("best: 20260101T000100Z-bbbbbb (lora.r=16): accuracy 0.7500; within")
    assert "95% Wilson intervals" in best  # no predictions here: 3 of 4 vs 2 of 4


def test_unknown_target_is_a_usage_error(two_sweep_runs, capsys):
    assert cli.main(["compare", "nope"]) == 2
    assert "no run folder, run id or sweep id" in capsys.readouterr().err


def test_plot_draws_curves_and_the_metric_against_the_swept_value(two_sweep_runs, capsys):
    code, _ = compare(capsys, "sweep-x", "--plot", "out.png")
    assert code == 0
    from matplotlib import image

    png = image.imread(two_sweep_runs / "out.png")
    assert png.shape[1] > png.shape[0] * 2  # two panels side by side


def test_a_tie_on_the_metric_goes_to_the_lower_eval_loss():
    from specforge.experiments.compare import rank

    def entry(run_id, accuracy, eval_loss):
        return {"run_id": run_id, "tuned": {"accuracy": accuracy}, "eval_loss": eval_loss}

    outcomes = [
        entry("a", 0.0, 3.0),
        entry("b", 0.0, 1.0),
        entry("c", 0.5, None),
        entry("d", None, 0.5),
    ]
    outcomes[3]["tuned"] = {}
    assert [o["run_id"] for o in rank(outcomes, "accuracy")] == ["c", "b", "a", "d"]


def test_a_run_that_scored_its_parent_says_parent_not_base(tmp_path, monkeypatch, capsys):
    """A DPO run with model.adapter is compared with its SFT parent (run.json base_evaluation)."""
    monkeypatch.chdir(tmp_path)
    results = {"eval_tuned": {"accuracy": 0.86, "n": 4}, "eval_base": {"accuracy": 0.85, "n": 4}}
    for run_id, base in (
        ("20260101T000000Z-aaaaaa", "base"),
        ("20260101T000100Z-bbbbbb", "parent"),
    ):
        write_record(
            tmp_path, "exp", run_id, results=results, base_evaluation={"model": base, "path": "m"}
        )
    code, out = compare(capsys, "20260101T000100Z-bbbbbb", "--format", "markdown")
    assert code == 0 and "accuracy parent" in out and "accuracy base" not in out
    code, out = compare(capsys, "20260101T000000Z-aaaaaa", "20260101T000100Z-bbbbbb")
    assert code == 0 and "accuracy base/parent" in out


def test_the_terminal_table_clips_long_values_and_json_keeps_them(capsys):
    """A spec value as long as a list of example prompts would make every column that wide."""
    from specforge.experiments.compare import TEXT_CELL, render_text

    long = "x" * 200
    result = {
        "runs": [{"run_id": "a", "values": {}}, {"run_id": "b", "values": {}}],
        "differs": [{"section": "spec", "key": "inference.examples", "values": [long, "[]"]}],
        "ranked": [],
        "metric": "accuracy",
        "higher_is_better": True,
        "best": None,
    }
    out = render_text(result)
    row = next(line for line in out.splitlines() if "inference.examples" in line)
    assert "x" * (TEXT_CELL - 3) + "..." in row and "x" * TEXT_CELL not in row
    assert max(len(line) for line in out.splitlines()) < 2 * TEXT_CELL + 40
    assert "--format json has them whole" in out


INFER = '''"""infer.py for {run}.

    python {run}/scripts/infer.py --data rows.jsonl
"""
# compiled into {run}
print("answer")
'''


def test_scripts_that_differ_only_in_comments_are_the_same_script(tmp_path, monkeypatch, capsys):
    """Defect: `script: infer.py` was listed as different between two --set runs whose scripts
    differ only in the usage comments that name their run folders."""
    from specforge.core.files import sha256_bytes

    monkeypatch.chdir(tmp_path)
    for run_id, code in (
        ("20260101T000000Z-aaaaaa", "answer"),
        ("20260101T000100Z-bbbbbb", "answer"),
    ):
        folder = f"runs/exp/{run_id}"
        text = INFER.format(run=folder).replace("answer", code)
        write_record(
            tmp_path,
            "exp",
            run_id,
            scripts={
                "dir": f"{folder}/scripts",
                "sha256": {"infer.py": sha256_bytes(text.encode())},
            },
        )
        (tmp_path / folder / "scripts").mkdir()
        (tmp_path / folder / "scripts/infer.py").write_text(text)
    code, out = compare(
        capsys, "20260101T000000Z-aaaaaa", "20260101T000100Z-bbbbbb", "--format", "json"
    )
    assert code == 0
    assert not [d for d in json.loads(out)["differs"] if d["section"] == "script"]
    # a change to what runs still shows
    edited = tmp_path / "runs/exp/20260101T000100Z-bbbbbb/scripts/infer.py"
    edited.write_text(edited.read_text().replace('print("answer")', 'print("other")'))
    record = json.loads((edited.parents[1] / "run.json").read_text())
    record["scripts"]["sha256"]["infer.py"] = sha256_bytes(edited.read_bytes())
    (edited.parents[1] / "run.json").write_text(json.dumps(record))
    code, out = compare(
        capsys, "20260101T000000Z-aaaaaa", "20260101T000100Z-bbbbbb", "--format", "json"
    )
    assert [d["key"] for d in json.loads(out)["differs"] if d["section"] == "script"] == [
        "infer.py"
    ]


def paired_runs(tmp_path, right: tuple[int, int]) -> None:
    """Two classifier runs scored on the same 120 rows; run b answers `right[1]` right, a `right[0]`."""
    spec = {
        "spec_version": 1,
        "name": "exp",
        "model": {"name": "m"},
        "dataset": {"path": "d.jsonl"},
        "prompt": {"template": "{text}", "completion": "{label}"},
        "inference": {"labels": ["yes", "no"]},
    }
    for run_id, hits in (
        ("20260101T000000Z-aaaaaa", right[0]),
        ("20260101T000100Z-bbbbbb", right[1]),
    ):
        run_dir = write_record(
            tmp_path,
            "exp",
            run_id,
            spec={"sha256": "f" * 64, "overrides": [], "resolved": spec},
            results={"eval_tuned": {"accuracy": hits / 120, "n": 120}},
        )
        rows = [
            {"text": str(i), "label": "yes", "prediction": "yes" if i < hits else "no"}
            for i in range(120)
        ]
        (run_dir / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_two_against_one_right_of_120_is_within_noise(tmp_path, monkeypatch, capsys):
    """Defect: compare named a "best" run on 2 vs 1 correct answers of 120."""
    monkeypatch.chdir(tmp_path)
    paired_runs(tmp_path, (1, 2))
    code, out = compare(
        capsys, "20260101T000000Z-aaaaaa", "20260101T000100Z-bbbbbb", "--format", "json"
    )
    noise = json.loads(out)["noise"]
    assert code == 0 and noise["test"] == "mcnemar_exact" and noise["within_noise"]
    assert (noise["only_best_right"], noise["only_other_right"], noise["p_value"]) == (1, 0, 1.0)
    _code, out = compare(capsys, "20260101T000000Z-aaaaaa", "20260101T000100Z-bbbbbb")
    assert "within noise of 20260101T000000Z-aaaaaa (McNemar exact p=1" in out


def test_a_clear_lead_is_beyond_noise(tmp_path, monkeypatch, capsys):
    from specforge.runs.scoring import mcnemar_exact, wilson_interval

    assert mcnemar_exact(10, 0) == pytest.approx(2 / 1024)
    low, high = wilson_interval(60, 120)
    assert low == pytest.approx(0.4119, abs=1e-4) and high == pytest.approx(0.5881, abs=1e-4)
    monkeypatch.chdir(tmp_path)
    paired_runs(tmp_path, (10, 40))
    _code, out = compare(capsys, "20260101T000000Z-aaaaaa", "20260101T000100Z-bbbbbb")
    assert "ahead of 20260101T000000Z-aaaaaa beyond noise (McNemar exact p=" in out


def test_a_bare_plot_goes_beside_the_sweep_not_into_the_work_tree(two_sweep_runs, capsys):
    """Defect: `compare --plot` wrote compare.png into the current folder (the repository)."""
    code, _out = compare(capsys, "sweep-x", "--plot")
    assert code == 0
    assert (two_sweep_runs / "runs/exp/sweeps/sweep-x/compare.png").is_file()
    assert not (two_sweep_runs / "compare.png").exists()
