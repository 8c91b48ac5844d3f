"""issue 25, item 7: pre-quantized bases (GPTQ, AWQ, compressed-tensors) load as their own
config.json says: no BitsAndBytesConfig, placed as they load, prepared for k-bit training where peft
needs it (GPTQ), and the preflight names the format's packages. The scripts are compiled here,
dry-run on this CPU without those packages, and run for real up to their preflight."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from specforge.codegen.compiler import compile_files
from specforge.validate.load import load_spec

SPEC = """\
spec_version: 1
name: {name}
model:
  name: {model}
  dtype: auto
  prequantized: {prequantized}
dataset: {{path: FinGPT/fingpt-sentiment-train}}
prompt: {{template: "Q: {{input}}\\nA: ", completion: "{{output}}<|im_end|>"}}
tokenizer: {{special_tokens: {{eos: <|im_end|>}}}}
training: {{precision: fp32, max_steps: 1}}
{extra}"""

GPTQ_MODEL = "TheBloke/Mistral-7B-v0.1-GPTQ"
AWQ_MODEL = "TechxGenus/Meta-Llama-3-8B-Instruct-AWQ"


def spec_text(name: str, model: str, prequantized: str, extra: str = "") -> str:
    return SPEC.format(name=name, model=model, prequantized=prequantized, extra=extra)


def compiled(tmp_path, text: str) -> dict[str, str]:
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    loaded = load_spec(path, check_files=False)
    assert loaded.warnings == []  # no SF086 warning: the model id's format is declared
    return compile_files(loaded)


def run_script(tmp_path, script: str, *args: str) -> subprocess.CompletedProcess:
    path = tmp_path / "train.py"
    path.write_text(script, encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(path), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_gptq_loads_as_its_config_says_and_is_prepared_for_kbit_training(tmp_path):
    files = compiled(tmp_path, spec_text("gptq", GPTQ_MODEL, "{method: gptq, bits: 4}"))
    train, infer = files["train.py"], files["infer.py"]
    for script in (train, infer):
        assert "BitsAndBytesConfig" not in script and "quantization_config=" not in script
        assert 'PREQUANTIZED = "gptq"' in script
        assert "# no quantization_config: the weights load quantized, as their config.json" in (
            script
        )
        assert 'if getattr(model, "quantization_method", None) != PREQUANTIZED:' in script
    assert 'device_map="auto",' in train  # the Trainer does not move a quantized model
    assert "from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training" in train
    assert "model = prepare_model_for_kbit_training(model" in train
    assert 'device_map="cuda" if torch.cuda.is_available() else "cpu",' in infer
    assert 'find_spec(name) for name in ("gptqmodel", "optimum")' in train
    assert "this spec needs a CUDA GPU" not in train  # gptqmodel has CPU kernels
    # MFU: the packed layers are no nn.Linear; they count whole, as explain counts them
    assert 'packed = [m for m in model.modules() if hasattr(m, "qweight")]' in train


def test_awq_and_compressed_tensors_train_as_plain_lora(tmp_path):
    """peft's prepare_model_for_kbit_training upcasts every half-precision parameter of a
    model it does not know as GPTQ: AWQ's and compressed-tensors' take plain LoRA's path."""
    awq = compiled(tmp_path, spec_text("awq", AWQ_MODEL, "{method: awq}", ""))["train.py"]
    assert "prepare_model_for_kbit_training" not in awq
    assert 'PREQUANTIZED = "awq"' in awq and 'device_map="auto",' in awq
    assert "model.prequantized awq loads with gptqmodel" in awq
    text = spec_text("ct", "org/Llama-3-8B-W8A8", "{method: compressed-tensors, bits: 8}")
    ct = compiled(tmp_path, text)["train.py"]
    assert "prepare_model_for_kbit_training" not in ct
    assert 'importlib.util.find_spec("compressed_tensors") is None' in ct


def test_each_rank_places_its_own_copy_under_ddp(tmp_path):
    extra = "launch: {nproc_per_node: 2}\n"
    train = compiled(tmp_path, spec_text("ddp", GPTQ_MODEL, "{method: gptq}", extra))["train.py"]
    assert 'device_map={"": int(os.environ.get("LOCAL_RANK", "0"))},' in train


def test_a_parent_adapter_on_gptq_is_prepared_too(tmp_path):
    extra = "method: dpo\n"
    text = spec_text("dpo", GPTQ_MODEL, "{method: gptq}", extra).replace(
        '<|im_end|>"}', '<|im_end|>", rejected: "{rejected}<|im_end|>"}'
    )
    text = text.replace("  dtype: auto\n", "  dtype: auto\n  adapter: runs/sft/latest\n")
    train = compiled(tmp_path, text)["train.py"]
    assert "from peft import PeftModel, prepare_model_for_kbit_training" in train
    assert 'PREQUANTIZED = "gptq"' in train


@pytest.mark.train  # runs the generated train.py (the ML stack's import)
def test_gptq_dry_runs_on_a_cpu_without_its_packages(tmp_path):
    train = compiled(tmp_path, spec_text("gptq", GPTQ_MODEL, "{method: gptq, bits: 4}"))
    result = run_script(tmp_path, train["train.py"], "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert '"lora_config"' in result.stdout and '"training_args"' in result.stdout


@pytest.mark.train  # runs the generated train.py up to its preflight
@pytest.mark.skipif(
    importlib.util.find_spec("gptqmodel") is not None, reason="gptqmodel is installed here"
)
def test_the_preflight_names_the_missing_packages_before_any_download(tmp_path):
    for name, model, declared, package in (
        ("gptq", GPTQ_MODEL, "{method: gptq}", "gptqmodel>=7"),
        ("awq", AWQ_MODEL, "{method: awq}", "gptqmodel>=7"),
    ):
        train = compiled(tmp_path, spec_text(name, model, declared))["train.py"]
        result = run_script(tmp_path, train, "--output-dir", str(tmp_path / "run"))
        assert result.returncode == 1, result.stderr[-3000:]
        assert "preflight failed:" in result.stderr
        assert f"model.prequantized {name} loads with gptqmodel" in result.stderr
        assert package in result.stderr and "Traceback" not in result.stderr


@pytest.mark.train  # imports the generated train.py (the ML stack) and loads the tiny model
def test_mfu_counts_packed_layers_whole(tmp_path, tiny_model_dir):
    """gptqmodel's quantized layers are no nn.Linear (their weights are a packed `qweight`):
    train.py's MetricsFile counts them by in x out, as explain does, so a GPTQ run's MFU
    counts the same work as the float model's. The layer is simulated: gptqmodel is not here."""
    import torch
    from transformers import AutoModelForCausalLM

    script = load_script(tmp_path, spec_text("gptq", GPTQ_MODEL, "{method: gptq}"), "gptq")
    plain = load_script(tmp_path, spec_text("plain", "org/model", "null"), "plain")

    class Packed(torch.nn.Module):  # the shape of gptqmodel's BaseQuantLinear
        def __init__(self, linear: torch.nn.Linear):
            super().__init__()
            self.in_features, self.out_features = linear.in_features, linear.out_features
            packed = torch.zeros(linear.in_features // 8, linear.out_features, dtype=torch.int32)
            self.register_buffer("qweight", packed)

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.requires_grad_(False)
    dense = script.MetricsFile(model, 64).flops_per_token
    layer = model.model.layers[0].self_attn
    layer.q_proj = Packed(layer.q_proj)
    assert script.MetricsFile(model, 64).flops_per_token == dense
    assert plain.MetricsFile(model, 64).flops_per_token < dense  # what nn.Linear alone finds


def load_script(tmp_path, text: str, name: str):
    """A compiled train.py as a module (its main() does not run)."""
    path = tmp_path / f"{name}_train.py"
    path.write_text(compiled(tmp_path, text)["train.py"], encoding="utf-8")
    found = importlib.util.spec_from_file_location(f"{name}_train", path)
    assert found is not None and found.loader is not None
    script = importlib.util.module_from_spec(found)
    found.loader.exec_module(script)
    return script
