"""The peers' own example configs (tests/importers/configs, see its README): each imports with
the exit code and the blocking keys recorded here, every written spec validates and compiles,
and every source key is carried or reported."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from specforge.cli import main
from specforge.codegen.compiler import compile_files
from specforge.importers import import_config
from specforge.validate.load import load_spec
from tests.conftest import REPO, load_generated

CONFIGS = REPO / "tests/importers/configs"
# config -> the keys that block (exit 1); an empty set: exit 0. None: refused (multimodal).
EXPECTED: dict[str, set[str] | None] = {
    "axolotl/lora-1b.yml": set(),
    "axolotl/qlora-1b.yml": set(),
    "axolotl/fft-8b.yaml": set(),
    "axolotl/instruct-lora-8b.yml": set(),
    "axolotl/qlora-1b-kto.yaml": set(),
    "axolotl/mistral-config.yml": set(),
    "axolotl/rlhf-chatml-intel.yml": set(),
    "axolotl/bigstral-ds-zero3.yaml": set(),
    "axolotl/gemma2-qlora.yml": set(),
    "axolotl/instruct-dpo-lora-8b.yml": set(),
    "axolotl/mistral-dpo-qlora.yml": set(),
    "axolotl/mistral-qlora-orpo.yml": set(),
    "axolotl/qlora-fsdp-70b.yaml": set(),
    "axolotl/qwen2-dpo.yaml": set(),
    "axolotl/tiny-llama-pretrain.yml": set(),
    "axolotl/gemma-3-4b-vision-qlora.yml": None,
    # gptq: true is carried (model.prequantized); these three of the example are not
    "axolotl/gptq-lora.yml": {"lr_quadratic_warmup"},
    "llamafactory/llama3_lora_sft.yaml": set(),
    "llamafactory/llama3_lora_sft_ds3.yaml": set(),
    "llamafactory/llama3_lora_sft_otfq.yaml": set(),
    "llamafactory/llama3_lora_sft_awq.yaml": set(),
    "llamafactory/llama3_lora_sft_gptq.yaml": set(),
    "llamafactory/llama3_full_sft.yaml": set(),
    "llamafactory/qwen3_lora_sft.yaml": set(),
    "llamafactory/fsdp_qlora_llama3_lora_sft.yaml": set(),
    "llamafactory/llama3_lora_dpo.yaml": set(),
    "llamafactory/qwen3_lora_dpo.yaml": set(),
    "llamafactory/llama3_lora_kto.yaml": set(),
    "llamafactory/llama3_lora_pretrain.yaml": set(),
    "llamafactory/llama3_lora_reward.yaml": set(),
    "llamafactory/loraplus_llama3_lora_sft.yaml": set(),
    "llamafactory/pissa_llama3_lora_sft.yaml": set(),
    "llamafactory/galore_llama3_full_sft.yaml": set(),
    "llamafactory/qwen2vl_lora_sft.yaml": None,
}
CLEAN = [name for name, blocking in EXPECTED.items() if blocking == set()]


def test_every_sample_config_is_listed():
    found = {p.relative_to(CONFIGS).as_posix() for p in CONFIGS.glob("*/*.y*ml")}
    assert found == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_imports_with_the_recorded_outcome(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # LLaMA-Factory's local demo files resolve from here
    out = tmp_path / "spec.yaml"
    code = main(["import", str(CONFIGS / name), "-o", str(out)])
    printed = capsys.readouterr().out
    blocking = EXPECTED[name]
    if blocking is None:
        assert code == 1 and "multimodal" in printed and not out.exists()
        return
    result = import_config(CONFIGS / name)
    assert {d.key for d in result.blocking} == blocking
    assert code == (1 if blocking else 0), printed
    assert out.exists() == (not blocking)
    for key in blocking:  # each blocking key is printed by name, with its reason
        assert f"    {key}: " in printed


@pytest.mark.parametrize("name", sorted(n for n, b in EXPECTED.items() if b is not None))
def test_every_source_key_is_carried_or_reported(name):
    source = yaml.safe_load((CONFIGS / name).read_text())
    result = import_config(CONFIGS / name)
    reported = {key for d in result.dropped for key in d.key.split(", ")}
    assert set(source) <= set(result.carried) | reported
    assert not set(result.carried) & {d.key for d in result.blocking}


@pytest.mark.parametrize("name", CLEAN)
def test_imported_spec_validates_and_compiles(name, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    out = tmp_path / f"{Path(name).stem}.yaml"
    assert main(["import", str(CONFIGS / name), "-o", str(out)]) == 0
    loaded = load_spec(out, allow_remote_code=True, check_files=False)
    files = compile_files(loaded, script_dir=str(tmp_path / "generated"))
    for script in ("train.py", "infer.py"):
        ast.parse(files[script])
    assert "Imported from" in out.read_text().splitlines()[0]


def test_import_is_deterministic(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    texts = []
    for i in range(2):
        out = tmp_path / f"{i}.yaml"
        main(["import", str(CONFIGS / "axolotl/qlora-1b-kto.yaml"), "-o", str(out)])
        texts.append(out.read_text())
    assert texts[0] == texts[1]


CPU = ["--set", "training.precision=fp32", "--set", "model.dtype=float32"]
CPU += ["--set", "model.attn_implementation=sdpa"]


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("llamafactory/llama3_lora_sft.yaml", CPU),
        ("llamafactory/pissa_llama3_lora_sft.yaml", CPU),  # init_lora_weights: pissa_niter_16
        ("llamafactory/loraplus_llama3_lora_sft.yaml", CPU),
        ("llamafactory/fsdp_qlora_llama3_lora_sft.yaml", []),  # as imported: fp16 QLoRA
        ("axolotl/qlora-1b-kto.yaml", [*CPU, "--set", "model.quantization.compute_dtype=float32"]),
    ],
)
@pytest.mark.train  # runs the generated train.py (the ML stack's import)
def test_dry_run_of_an_imported_spec_builds_its_configs(name, extra, tmp_path):
    """train.py --dry-run builds LoraConfig and the trainer's config from the imported values.
    bf16 specs are dry-run as fp32 here: transformers' TrainingArguments refuses bf16 on a CPU."""
    project = tmp_path / "project"
    shutil.copytree(
        CONFIGS / "llamafactory", project / "data", ignore=shutil.ignore_patterns("*.yaml")
    )
    spec = project / "specs/imported.yaml"
    config = CONFIGS / name
    if name.startswith("llamafactory/"):  # the demo files beside dataset_info.json, in data/
        shutil.copy(config, project / "data" / config.name)
        config = project / "data" / config.name
    done = subprocess.run(
        [sys.executable, "-m", "specforge", "import", str(config), "-o", "specs/imported.yaml"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    compiled = subprocess.run(
        [sys.executable, "-m", "specforge", "compile", str(spec), "--allow-remote-code"]
        + ["--out", "out", *extra],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert compiled.returncode == 0, compiled.stderr
    script = next((project / "out").glob("*/train.py"))
    dry = subprocess.run(
        [sys.executable, str(script), "--dry-run"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert dry.returncode == 0, dry.stderr[-3000:]
    printed = yaml.safe_load(dry.stdout)  # JSON is YAML
    imported = yaml.safe_load(spec.read_text())
    assert printed["lora_config"]["r"] == imported["lora"]["r"]
    assert printed["training_args"]["learning_rate"] == imported["training"]["learning_rate"]


@pytest.mark.train  # imports the ML stack once, then builds every spec's configs
def test_every_clean_sample_s_dry_run_builds_its_configs(tmp_path, monkeypatch, capsys):
    """Each config that imports with exit 0: its train.py's dry_run() (what --dry-run calls)
    builds the adapter's and the trainer's configs from the imported values, on this CPU
    (bf16 and flash attention set to what a CPU has; a pre-quantized base keeps its dtype)."""
    shutil.copytree(
        CONFIGS / "llamafactory", tmp_path / "data", ignore=shutil.ignore_patterns("*.yaml")
    )
    monkeypatch.chdir(tmp_path)
    for i, name in enumerate(CLEAN):
        config = CONFIGS / name
        if name.startswith("llamafactory/"):  # the demo files beside dataset_info.json
            config = Path(shutil.copy(config, tmp_path / "data" / config.name))
        spec = tmp_path / f"specs/{i}.yaml"
        assert main(["import", str(config), "-o", str(spec)]) == 0, name
        imported = yaml.safe_load(spec.read_text())
        extra = ["--set", "model.attn_implementation=sdpa"]
        if not imported["model"].get("prequantized"):
            extra += ["--set", "training.precision=fp32", "--set", "model.dtype=float32"]
        if imported["model"].get("quantization"):
            extra += ["--set", "model.quantization.compute_dtype=float32"]
        out = f"out{i}"
        assert main(["compile", str(spec), "--allow-remote-code", "--out", out, *extra]) == 0
        script = next((tmp_path / out).glob("*/train.py"))
        capsys.readouterr()
        load_generated(script, f"imported_{i}").dry_run(tmp_path / f"run{i}")
        printed = json.loads(capsys.readouterr().out)
        args = printed["training_args"]
        assert args["learning_rate"] == imported["training"]["learning_rate"], name
        if imported.get("lora"):
            assert printed["lora_config"]["r"] == imported["lora"]["r"], name
