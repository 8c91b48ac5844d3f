"""Issue 25, items 3-5, trained for real on the tiny random Llama (CPU): modules trained whole
beside the adapter, full fine-tuning of unfrozen parameters only, LoRA+, Adam's betas and
epsilon, the PiSSA/OLoRA/gaussian starts (pissa and olora saved as a plain LoRA on the unchanged
base), DoRA/rsLoRA, and the optimizers whose packages are missing here (8-bit, paged, torchao,
GaLore): their configs build in --dry-run and the run stops in preflight, saying what to install."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import load_generated, run_cli, tiny_spec

pytestmark = pytest.mark.train

LORA = """lora:
  r: 8
  alpha: 16
  dropout: 0.0
  target_modules: all-linear
"""
SHORT = {"max_steps": 3, "eval_strategy": "no", "eval_steps": None, "logging_steps": 1}


def compile_spec(project, model_dir, name: str, lora: str | None, model: str = "", **training):
    """Write specs/<name>.yaml (the tiny spec with `lora` in place of its LoRA section, `model`
    lines added to its model section), compile it, and import its train.py."""
    text = tiny_spec(model_dir, name=name, **{**SHORT, **training})
    assert LORA in text
    text = text.replace(LORA, LORA + lora if lora else "lora: null\n")
    text = text.replace("  attn_implementation: sdpa\n", "  attn_implementation: sdpa\n" + model)
    (project / f"specs/{name}.yaml").write_text(text)
    result = run_cli("compile", f"specs/{name}.yaml", cwd=project)
    assert result.returncode == 0, result.stderr
    return load_generated(project / f"generated/{name}/train.py", f"variants_{name}")


def logits_of(model, tokenizer) -> torch.Tensor:
    batch = tokenizer(
        ["Instruction: Classify.\nInput: Shares rose.\n<response>"], return_tensors="pt"
    )
    model.eval()
    with torch.no_grad():
        return model(**batch).logits


def reloaded(model_dir, adapter_dir):
    """The unchanged base, grown to the saved tokenizer, with the saved adapter."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    base.resize_token_embeddings(len(tokenizer))
    return PeftModel.from_pretrained(base, adapter_dir), tokenizer


def base_weights(model_dir) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return {name: weight.detach().clone() for name, weight in model.named_parameters()}


def test_pissa_loraplus_adam_settings_and_a_tied_head_trained_whole(
    project, tiny_model_dir, monkeypatch
):
    monkeypatch.chdir(project)
    lora = "  init_lora_weights: pissa_niter_2\n  modules_to_save: [lm_head]\n"
    lora += "  loraplus_lr_ratio: 16.0\n"
    train = compile_spec(
        project, tiny_model_dir, "pissa", lora, adam_beta1=0.8, adam_epsilon=1.0e-6
    )
    assert train.LORA_CONFIG["init_lora_weights"] == "pissa_niter_2"
    out = project / "runs/pissa/a"
    trainer = train.train(out)

    # LoRA+: B matrices at 16x the learning rate of the A matrices; AdamW got the betas and eps
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    rates = {}
    for group in trainer.optimizer.param_groups:
        assert group["betas"] == (0.8, 0.999) and group["eps"] == 1e-6
        for param in group["params"]:
            for kind in ("A", "B"):
                if f"lora_{kind}" in names[id(param)]:
                    rates.setdefault(kind, set()).add(group["initial_lr"])
    assert rates == {"A": {2.0e-2}, "B": {2.0e-2 * 16}}

    # PiSSA moved the principal part out of the base weights in memory ...
    base = base_weights(tiny_model_dir)
    q_proj = trainer.model.base_model.model.model.layers[0].self_attn.q_proj
    assert not torch.allclose(
        q_proj.base_layer.weight, base["model.layers.0.self_attn.q_proj.weight"]
    )
    # ... and the saved adapter is a plain LoRA (rank 2r) on the unchanged base: same logits
    adapter_dir = out / "adapter"
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert config["r"] == 16 and config["init_lora_weights"] is True
    assert not (out / "initial_adapter").exists()
    model, tokenizer = reloaded(tiny_model_dir, adapter_dir)
    assert torch.allclose(
        logits_of(model, tokenizer), logits_of(trainer.model, tokenizer), atol=1e-4
    )

    # the tied head is trained whole through its embedding matrix, new rows included, and saved
    saved = load_file(adapter_dir / "adapter_model.safetensors")
    (key,) = [k for k in saved if "embed_tokens" in k]
    assert saved[key].shape == (len(tokenizer), 64)
    old = base["model.embed_tokens.weight"]
    assert not torch.allclose(saved[key][: old.shape[0]], old)
    assert not any("trainable_tokens" in k for k in saved)  # the whole matrix holds the new rows
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert tied or torch.equal(
        model.get_output_embeddings().weight, model.get_input_embeddings().weight
    )


def test_olora_rslora_and_an_untied_head_trained_whole(project, tiny_untied_model_dir, monkeypatch):
    monkeypatch.chdir(project)
    lora = "  init_lora_weights: olora\n  use_rslora: true\n  modules_to_save: [lm_head]\n"
    train = compile_spec(project, tiny_untied_model_dir, "olora", lora)
    out = project / "runs/olora/a"
    trainer = train.train(out)
    adapter_dir = out / "adapter"
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert config["use_rslora"] is True and config["r"] == 16
    model, tokenizer = reloaded(tiny_untied_model_dir, adapter_dir)
    assert torch.allclose(
        logits_of(model, tokenizer), logits_of(trainer.model, tokenizer), atol=1e-4
    )
    saved = load_file(adapter_dir / "adapter_model.safetensors")
    (head,) = [k for k in saved if "lm_head" in k]
    base = base_weights(tiny_untied_model_dir)["lm_head.weight"]
    assert saved[head].shape == (len(tokenizer), 64)  # whole, the new rows too
    assert not torch.allclose(saved[head][: base.shape[0]], base)
    # the embeddings' new rows still train through peft's token rows
    assert any("embed_tokens" in k and "trainable_tokens" in k for k in saved)


def test_a_module_named_by_its_path_trains_whole_and_gets_no_token_rows(
    project, tiny_untied_model_dir, monkeypatch
):
    """peft takes every module whose name ends with a modules_to_save entry: train.py picks the
    layers for the new tokens' rows the same way, so `model.embed_tokens` trains whole and only
    the head gets token rows (it once got both, which peft refuses)."""
    from peft.utils.other import ModulesToSaveWrapper, TrainableTokensWrapper

    monkeypatch.chdir(project)
    train = compile_spec(
        project, tiny_untied_model_dir, "path", "  modules_to_save: [model.embed_tokens]\n"
    )
    trainer = train.train(project / "runs/path/a")
    model = trainer.model
    assert isinstance(model.get_input_embeddings(), ModulesToSaveWrapper)
    assert isinstance(model.get_output_embeddings(), TrainableTokensWrapper)


def test_gaussian_start_and_dora_reach_peft_and_train(project, tiny_model_dir, monkeypatch):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    monkeypatch.chdir(project)
    lora = "  init_lora_weights: gaussian\n  use_dora: true\n"
    train = compile_spec(project, tiny_model_dir, "gauss", lora, max_steps=2)
    # A is drawn from N(0, 1/r) instead of peft's default, uniform within 1/sqrt(64) (B = 0)
    bounds = {}
    for init in ("gaussian", True):
        fresh = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        settings = {**train.LORA_CONFIG, "init_lora_weights": init}
        started = get_peft_model(fresh, LoraConfig(**settings))
        a = started.base_model.model.model.layers[0].self_attn.q_proj.lora_A["default"].weight
        bounds[init] = float(a.abs().max())
    assert bounds[True] <= 1 / 8 < bounds["gaussian"]
    out = project / "runs/gauss/a"
    trainer = train.train(out)
    assert trainer.state.global_step == 2
    config = json.loads((out / "adapter/adapter_config.json").read_text())
    assert config["use_dora"] is True and config["init_lora_weights"] == "gaussian"


def test_unfrozen_parameters_train_only_what_they_match(project, tiny_model_dir, monkeypatch):
    monkeypatch.chdir(project)
    patterns = ["^model.embed_tokens.weight$", r"model\.layers\.1\.mlp\."]
    overrides = "  config_overrides: {attention_dropout: 0.25}\n"
    train = compile_spec(
        project, tiny_model_dir, "unfrozen", None, overrides, unfrozen_parameters=patterns
    )
    train.train(project / "runs/unfrozen/a")
    from transformers import AutoModelForCausalLM

    tuned = AutoModelForCausalLM.from_pretrained(
        project / "runs/unfrozen/a/model", dtype=torch.float32
    )
    assert tuned.config.attention_dropout == 0.25  # model.config_overrides, as it loaded
    base = base_weights(tiny_model_dir)
    changed = set()
    for name, weight in tuned.named_parameters():
        rows = min(weight.shape[0], base[name].shape[0])  # the embeddings grew
        if not torch.equal(weight[:rows], base[name][:rows]):
            changed.add(name)
    assert changed == {
        "model.embed_tokens.weight",
        "model.layers.1.mlp.gate_proj.weight",
        "model.layers.1.mlp.up_proj.weight",
        "model.layers.1.mlp.down_proj.weight",
    }


@pytest.mark.parametrize(
    ("patterns", "says"),
    [
        (["^model.embed_tokens.weight$", "^model.layers.9."], "['^model.layers.9.'] match no"),
        (["^model.layers.1.mlp."], "the new tokens' rows would never train"),
    ],
)
def test_unfrozen_parameters_that_cannot_work_stop_the_run(
    project, tiny_model_dir, monkeypatch, patterns, says
):
    monkeypatch.chdir(project)
    train = compile_spec(project, tiny_model_dir, "stuck", None, unfrozen_parameters=patterns)
    with pytest.raises(SystemExit) as stopped:
        train.train(project / "runs/stuck/a")
    assert says in str(stopped.value)


@pytest.mark.parametrize(
    ("optim", "package", "full"),
    [
        ("adamw_8bit", "bitsandbytes", False),
        ("paged_adamw_32bit", "bitsandbytes", False),
        ("adamw_torch_4bit", "torchao", False),
        ("galore_adamw_layerwise", "galore-torch", True),
    ],
)
def test_optimizers_from_missing_packages_dry_run_and_stop_in_preflight(
    project, tiny_model_dir, monkeypatch, capsys, optim, package, full
):
    """None of bitsandbytes, torchao and galore-torch is installed here."""
    monkeypatch.chdir(project)
    training = {"optim": optim}
    if full:
        training |= {"optim_target_modules": ["self_attn", "mlp"], "optim_args": {"rank": 4}}
    name = optim.replace("_", "-")
    train = compile_spec(project, tiny_model_dir, name, None if full else "", **training)
    train.dry_run(project / "runs" / name)
    printed = json.loads(capsys.readouterr().out)
    assert printed["training_args"]["optim"] == optim
    with pytest.raises(SystemExit) as stopped:
        train.preflight()
    assert f"training.optim {optim} needs {package}" in str(stopped.value)
    if optim.startswith("paged_"):  # CUDA's unified memory pages the state
        assert f"needs a CUDA GPU: training.optim {optim}" in str(stopped.value)


def test_peft_conversion_still_drops_what_is_not_lora(tiny_model_dir, tmp_path):
    """The shim in train.py's save (new token rows and modules_to_save put back after the
    pissa/olora conversion) is needed while peft's subtract_mutated_init keeps only lora_A/B:
    this fails once upstream keeps the rest, and the shim can go."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    config = LoraConfig(
        r=4, target_modules=["q_proj"], modules_to_save=["embed_tokens"], init_lora_weights="olora"
    )
    model = get_peft_model(model, config)
    model.save_pretrained(tmp_path / "initial")
    model.save_pretrained(
        tmp_path / "converted", path_initial_model_for_weight_conversion=str(tmp_path / "initial")
    )
    saved = load_file(tmp_path / "converted/adapter_model.safetensors")
    assert saved and all("lora_" in key for key in saved)


def test_dpo_with_loraplus_and_whole_modules_beside_new_tokens(
    project, tiny_untied_model_dir, monkeypatch
):
    """axolotl's mistral-dpo-qlora shape (without QLoRA): trl's frozen "ref" adapter copies the
    modules trained whole too; only the "default" adapter is saved, head included."""
    from tests.helpers import PAIRS, method_spec

    monkeypatch.chdir(project)
    (project / "data/pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in PAIRS[:24]))
    text = method_spec(tiny_untied_model_dir, "dpo", "dpo")
    text = text.replace(LORA, LORA + "  modules_to_save: [lm_head]\n  loraplus_lr_ratio: 8.0\n")
    (project / "specs/dpo.yaml").write_text(text)
    result = run_cli("compile", "specs/dpo.yaml", cwd=project)
    assert result.returncode == 0, result.stderr
    train = load_generated(project / "generated/dpo/train.py", "variants_dpo")
    out = project / "runs/dpo/a"
    trainer = train.train(out)
    assert trainer.state.global_step > 0
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    rates = {
        group["initial_lr"]
        for group in trainer.optimizer.param_groups
        for p in group["params"]
        if "lora_B.default" in names[id(p)]
    }
    assert rates == {2.0e-2 * 8}
    saved = load_file(out / "adapter/adapter_model.safetensors")
    assert any("lm_head" in k for k in saved) and not any(".ref." in k for k in saved)
