"""The generated train.py prepares its data once, through datasets' own map cache: the prompt/
completion rows are keyed by the source rows, fit_rows with the functions and constants it reads,
and the tokenizer. Each check runs the script's own to_prompt_completion in a fresh process, as
two runs of train.py would."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.train

PROBE = """
import importlib.util, json, os, sys
from datasets import load_dataset
from transformers import AutoTokenizer
spec = importlib.util.spec_from_file_location("train", "generated/tiny/train.py")
train = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train)
tokenizer = AutoTokenizer.from_pretrained(train.MODEL_NAME)
tokenizer.add_special_tokens(train.SPECIAL_TOKENS, replace_extra_special_tokens=False)
rows = load_dataset("json", data_files=train.DATASET_PATH, split="train")
data, report = train.to_prompt_completion(rows, tokenizer, "train")
path = data.cache_files[0]["filename"]
print(json.dumps({"file": path, "mtime": os.stat(path).st_mtime_ns, "report": report,
                  "first": data[0]}))
"""


@pytest.fixture
def prepare(project, tmp_path):
    """Compile the tiny spec (after `edit`) and prepare its rows in a new process."""
    env = {"HF_DATASETS_CACHE": str(tmp_path / "datasets-cache"), "HF_HUB_OFFLINE": "1"}

    def run(edit=lambda text: text):
        spec = project / "specs/tiny.yaml"
        spec.write_text(edit(spec.read_text()))
        assert run_cli("compile", "specs/tiny.yaml", cwd=project).returncode == 0
        result = subprocess.run(
            [sys.executable, "-c", PROBE],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=300,
            env={**__import__("os").environ, **env},
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    return run


def test_a_second_run_reads_the_prepared_rows_back(prepare):
    first, second = prepare(), prepare()
    assert second["file"] == first["file"] and second["mtime"] == first["mtime"]
    assert second["report"] == first["report"] and second["first"] == first["first"]
    assert first["first"]["completion"].endswith("<response|end>")


def test_what_shapes_a_row_is_in_the_key_and_nothing_else(prepare):
    base = prepare()
    assert (
        prepare(lambda t: t.replace("learning_rate: 0.02", "learning_rate: 0.01"))["file"]
        == (base["file"])
    )
    shorter = prepare(lambda t: t.replace("max_length: 128", "max_length: 40"))
    assert shorter["file"] != base["file"] and shorter["report"]["truncated"] > 0


def test_new_tokens_change_the_key(prepare):
    base = prepare()
    renamed = prepare(lambda t: t.replace("<response>", "<answer>"))
    assert renamed["file"] != base["file"]
    assert renamed["first"]["prompt"].endswith("<answer>")


def test_changed_data_is_prepared_afresh(prepare, project):
    base = prepare()
    data = project / "data/train.jsonl"
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rows[0]["output"] = "neutral" if rows[0]["output"] != "neutral" else "positive"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    changed = prepare()
    assert changed["file"] != base["file"]
    assert changed["first"]["completion"] != base["first"]["completion"]
