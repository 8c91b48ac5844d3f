"""GPU-path defects that CPU runs did not show, each reproduced with the generated train.py on the
tiny model: the Hub push uploads the adapter, schedulers with arguments train, --resume finds
the run folder by itself, and what peft already does needs no upcast loop."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tests.conftest import load_generated, run_cli, tiny_spec

pytestmark = pytest.mark.train


def compile_tiny(project, model_dir, **training) -> object:
    (project / "specs/tiny.yaml").write_text(tiny_spec(model_dir, **training))
    result = run_cli("compile", "specs/tiny.yaml", cwd=project)
    assert result.returncode == 0, result.stderr
    return load_generated(project / "generated/tiny/train.py", f"options_{len(training)}")


def test_push_to_hub_uploads_the_adapter_and_schedulers_take_their_arguments(
    project, tiny_model_dir, monkeypatch
):
    """Defects: `push_to_hub: true` created the Hub repo and left it empty (the adapter was
    saved with model.save_pretrained, which Trainer never pushes); cosine_with_min_lr had no
    way to get its min_lr_rate and crashed at step 1."""
    import transformers.trainer

    monkeypatch.chdir(project)
    train = compile_tiny(
        project,
        tiny_model_dir,
        max_steps=6,
        eval_strategy="no",
        eval_steps=None,
        push_to_hub=True,
        hub_model_id="me/tiny-fin",
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": 0.1},
        warmup_ratio=None,
        warmup_steps=2,
    )
    assert train.TRAINING_ARGS["lr_scheduler_kwargs"] == {"min_lr_rate": 0.1}
    assert train.TRAINING_ARGS["warmup_steps"] == 2
    hub = SimpleNamespace(created=[], uploads=[])

    class FakeApi:  # the Hub, offline: records what would be created and uploaded
        def create_repo(self, repo_id, **kwargs):
            hub.created.append(repo_id)
            return SimpleNamespace(repo_id=repo_id)

    def upload_folder(repo_id, folder_path, **kwargs):
        hub.uploads.append((repo_id, sorted(p.name for p in folder_path.iterdir())))

    monkeypatch.setattr(transformers.trainer, "hf_api", FakeApi)
    monkeypatch.setattr(train.huggingface_hub, "upload_folder", upload_folder)
    out = project / "runs/tiny/push"
    train.train(out)
    assert hub.created == ["me/tiny-fin"]
    [(repo, files)] = hub.uploads
    assert repo == "me/tiny-fin"
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= set(files)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [m["learning_rate"] for m in metrics if "loss" in m]
    assert rates[-1] >= 0.1 * 2.0e-2 * 0.99  # the floor min_lr_rate sets: it reached the scheduler


def test_resume_without_output_dir_continues_the_newest_run_with_a_checkpoint(
    project, tiny_model_dir, monkeypatch
):
    """Defect: `train.py --resume` without --output-dir looked in a new timestamped folder."""
    train = compile_tiny(project, tiny_model_dir, save_strategy="steps", save_steps=6)

    def checkpoint(run: str, step: int, complete: bool = True):
        folder = project / "runs/tiny" / run / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        if complete:
            (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))

    checkpoint("20260101-000000", 4)
    checkpoint("20260102-000000", 6)
    checkpoint("20260102-000000", 8, complete=False)  # a save cut short by a kill
    (project / "runs/tiny/20260103-000000").mkdir()  # a newer run that saved nothing
    monkeypatch.chdir(project)
    run, path = train.last_checkpoint(None, "last")
    assert run.name == "20260102-000000" and path.endswith("checkpoint-6")
    run, path = train.last_checkpoint("runs/tiny/20260101-000000", "last")
    assert path.endswith("checkpoint-4")
    with pytest.raises(SystemExit, match="no complete checkpoint"):
        train.last_checkpoint("runs/tiny/20260103-000000", "last")


def test_peft_keeps_the_trained_weights_in_float32_on_a_float16_base(tiny_untied_model_dir):
    """Why train.py has no upcast loop any more: peft 0.21 already creates LoRA A/B and the
    trainable-token rows in float32 on a float16 base (the loop changed nothing). If a peft
    release stops doing so, this fails and the loop must come back."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_untied_model_dir, dtype=torch.float16)
    rows = [len(model.get_input_embeddings().weight) - 1]
    config = LoraConfig(
        r=4,
        target_modules=["q_proj", "v_proj"],
        trainable_token_indices={"embed_tokens": rows, "lm_head": rows},
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config)
    trained = {name: p.dtype for name, p in model.named_parameters() if p.requires_grad}
    assert any("lora_A" in name for name in trained) and any(
        "trainable_tokens" in n for n in trained
    )
    assert set(trained.values()) == {torch.float32}, trained
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    assert frozen == {torch.float16}


def test_trainer_still_trains_past_max_steps_when_resumed_at_the_last_step(tmp_path):
    """Why train.py's Preemption.Done exists: transformers' Trainer, resumed from the checkpoint of
    its last step when that step ends mid-epoch, trains one step more (it checks max_steps only
    after a step). When this fails, upstream has fixed it and the guard can go."""
    import torch
    from transformers import Trainer, TrainingArguments

    class Line(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(1, 1)

        def forward(self, x, labels):
            return {"loss": ((self.linear(x) - labels) ** 2).mean()}

    rows = [{"x": torch.tensor([float(i)]), "labels": torch.tensor([2.0 * i])} for i in range(8)]
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=3,  # 4 steps per epoch: the last step ends mid-epoch
        per_device_train_batch_size=2,
        save_strategy="steps",
        save_steps=3,
        use_cpu=True,
        report_to=[],
    )
    Trainer(model=Line(), args=args, train_dataset=rows).train()
    resumed = Trainer(model=Line(), args=args, train_dataset=rows)
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-3"))
    assert resumed.state.global_step == 4
