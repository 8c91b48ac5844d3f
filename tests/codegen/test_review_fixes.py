"""Issue 24: defects a review of the generated code found on paths CPU training does not reach
(multi-GPU QLoRA, DDP, bf16 dry runs); each test pins the decision the generated code makes."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO, load_generated, run_cli

GOLDEN = REPO / "tests/golden"
GOLDENS = sorted(p.stem for p in (GOLDEN / "specs").glob("*.yaml"))


def call_source(source: str, function: str, keyword: str) -> str:
    """The source of `keyword=` in the first call to `function` in the script."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(function):
            for kw in node.keywords:
                if kw.arg == keyword:
                    return ast.unparse(kw.value)
    raise AssertionError(f"no {function}({keyword}=...)")


@pytest.mark.train  # runs the generated train.py (the ML stack's import)
@pytest.mark.parametrize("name", GOLDENS)
def test_every_golden_spec_dry_runs_without_cuda(name):
    """Defect: every bf16 spec's --dry-run raised "Your setup doesn't support bf16/gpu" on a
    machine without CUDA; the QLoRA one must build its configs without bitsandbytes."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, f"tests/golden/{name}/train.py", "--dry-run"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert {"training_args", "example"} <= set(out)
    assert out["training_args"]["bf16"] is True  # every golden is bf16: the path under test


def test_qlora_under_ddp_loads_on_each_ranks_own_gpu(monkeypatch):
    """Defect: device_map="auto" spread every rank's model over all GPUs; accelerate refuses to
    train that under DDP. One process keeps "auto"; a launch section loads on LOCAL_RANK."""
    kto = (GOLDEN / "kto-chat/train.py").read_text()  # QLoRA, launch: 2 processes, ddp
    chat = (GOLDEN / "chat-qlora/train.py").read_text()  # QLoRA, one process
    assert call_source(chat, "from_pretrained", "device_map") == "'auto'"
    placement = call_source(kto, "from_pretrained", "device_map")
    assert "LOCAL_RANK" in placement and 'device_map="auto"' not in kto
    for rank in ("0", "3"):
        monkeypatch.setenv("LOCAL_RANK", rank)
        assert eval(placement, {"os": os}) == {"": int(rank)}  # the emitted expression


def test_ddp_sets_find_unused_parameters_and_prepares_data_on_rank_0_first():
    """Defects: LoRA under DDP ran with transformers' find_unused_parameters=True (a PeftModel
    is no PreTrainedModel); every rank mapped the data at once, racing on the cache."""
    kto = (GOLDEN / "kto-chat/train.py").read_text()
    assert '"ddp_find_unused_parameters": False,' in kto
    assert "with PartialState().main_process_first():" in kto
    body = kto.split("with PartialState().main_process_first():\n")[1].split("\n\n")[0]
    assert "to_kto_rows(train_rows" in body and "to_kto_rows(eval_rows" in body
    # one process: no rank to wait for, no all_reduce of a signal
    for path in (REPO / "generated/quickstart/train.py", GOLDEN / "chat-qlora/train.py"):
        text = path.read_text()
        assert "PartialState" not in text and "all_reduce" not in text, path
        assert "ddp_find_unused_parameters" not in text, path


@pytest.mark.train  # loads a tiny model and the generated infer.py
@pytest.mark.parametrize(
    "script", ["tests/golden/chat-qlora/infer.py", "generated/quickstart-chat/infer.py"]
)
def test_chat_generation_stops_at_the_end_of_turn_and_every_eos(script, tiny_model_dir):
    """Defect: a chat spec passed only the tokenizer's eos to generate(), which replaces the
    model's generation_config list: a model whose end of turn differs (a base Qwen's
    <|endoftext|> eos, <|im_end|> turns) ran on into an invented next turn."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    infer = load_generated(REPO / script, "review_infer")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)  # ChatML, like Qwen
    tokenizer.add_special_tokens({"additional_special_tokens": ["<answer|end>"]})
    tokenizer.eos_token = "<|endoftext|>"  # a base model's eos: not the end of turn
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.generation_config.eos_token_id = [7]  # e.g. a second end token the config lists
    ids = tokenizer.convert_tokens_to_ids
    expected = {ids("<|endoftext|>"), ids("<|im_end|>"), 7}
    if "STOP_TOKEN" in vars(infer):  # a messages prompt: the trained stop token too
        expected.add(ids(infer.STOP_TOKEN))
    stop = infer.stop_ids(model, tokenizer)
    assert set(stop) == expected

    calls = []

    def generate(**kwargs):  # stands in for decoding: an answer, end of turn, a next turn
        calls.append(kwargs)
        answer = tokenizer("Hello", add_special_tokens=False).input_ids
        tail = [ids("<|im_end|>"), *tokenizer("user", add_special_tokens=False).input_ids]
        return torch.tensor([[*kwargs["input_ids"][0].tolist(), *answer, *tail]])

    model.generate = generate
    tokenizer.padding_side = "left"
    row: dict = {"ticket": "x"}  # chat-qlora's one prompt field
    if hasattr(infer, "CONVERSATION_COLUMN"):  # the last (assistant) turn is answered afresh
        turns = [("user", "hi"), ("assistant", "x")]
        keys = (infer.ROLE_KEY, infer.CONTENT_KEY)
        row = {infer.CONVERSATION_COLUMN: [dict(zip(keys, turn)) for turn in turns]}
    assert infer.answer(model, tokenizer, [row], 1) == ["Hello"]
    assert set(calls[0]["eos_token_id"]) == expected


@pytest.mark.train  # loads a tiny tokenizer and the generated infer.py
def test_a_completion_without_a_stop_token_stops_at_the_tokenizers_eos(tiny_model_dir):
    """Defect: a completion ending in no declared token compiled to STOP_TOKEN = "", so
    generation ran past the eos that TRL appended to every training completion, and the answer
    kept it and what followed."""
    from transformers import AutoTokenizer

    infer = load_generated(GOLDEN / "fsdp-flex/infer.py", "eos_infer")  # completion: '{answer}'
    assert "STOP_TOKEN" not in vars(infer)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.padding_side = "left"
    calls = []

    class Model:  # stands in for decoding: an answer, the eos, then more text
        device = "cpu"

        def generate(self, **kwargs):
            calls.append(kwargs)
            answer = tokenizer("Hello", add_special_tokens=False).input_ids
            tail = [tokenizer.eos_token_id, *tokenizer("more", add_special_tokens=False).input_ids]
            return torch.tensor([[*kwargs["input_ids"][0].tolist(), *answer, *tail]])

    assert infer.answer(Model(), tokenizer, [{"question": "x"}], 1) == ["Hello"]
    assert calls[0]["eos_token_id"] == tokenizer.eos_token_id


@pytest.mark.train  # imports the generated train.py (the ML stack)
def test_a_local_files_split_slice_is_read(project, monkeypatch):
    """Defect: a local file was read as split="train" whatever dataset.split said, while
    spec.resolved.yaml said train[:25%]; Hub paths passed the slice through."""
    spec = project / "specs/tiny.yaml"
    split = "path: data/train.jsonl\n  split: train[:25%]\n"
    spec.write_text(spec.read_text().replace("path: data/train.jsonl\n", split))
    result = run_cli("compile", "specs/tiny.yaml", cwd=project)
    assert result.returncode == 0, result.stderr
    path = project / "generated/tiny/train.py"
    source = path.read_text()
    assert 'DATASET_SPLIT = "train[:25%]"' in source
    # the generated statement itself, run with the script's globals
    train = next(
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef) and node.name == "train"
    )
    load = next(
        statement
        for statement in train.body
        if "load_dataset(" in ast.unparse(statement) and "rows =" in ast.unparse(statement)
    )
    monkeypatch.chdir(project)
    module = vars(load_generated(path, "split_train"))
    exec(compile(ast.Module([load], []), str(path), "exec"), module)  # noqa: S102 - our script
    total = len((project / "data/train.jsonl").read_text().splitlines())
    assert len(module["rows"]) == total // 4


def test_a_cuda_only_spec_has_no_cpu_branches():
    """fingpt needs CUDA (flash-attention 2, fp16; preflight checks it): no use_cpu after that
    check, no device_map="cpu" under flash-attention 2, no DDP code without a launch section."""
    train = (REPO / "generated/fingpt-sentiment/train.py").read_text()
    infer = (REPO / "generated/fingpt-sentiment/infer.py").read_text()
    body = train.split("\ndef train(")[1].split("\ndef ")[0]
    assert "use_cpu" not in body and "cuda.is_available" not in body
    assert call_source(infer, "from_pretrained", "device_map") == "'cuda'"
    assert "all_reduce" not in train and "PartialState" not in train
    # a spec that can run on the CPU keeps both
    quickstart = (REPO / "generated/quickstart/train.py").read_text()
    assert "use_cpu=cpu" in quickstart.split("\ndef train(")[1].split("\ndef ")[0]


@pytest.mark.train  # imports the generated scripts (the ML stack)
def test_the_newest_run_wins_by_time_not_by_name(tmp_path, monkeypatch):
    """Defect: run folders sorted as strings, so runs/NAME/manual beat every timestamped run,
    in infer.py's latest run and in --resume's search for the newest checkpoint."""
    monkeypatch.chdir(tmp_path)
    infer = load_generated(REPO / "generated/quickstart/infer.py", "order_infer")
    train = load_generated(REPO / "tests/golden/chat-qlora/train.py", "order_train")
    for name, script, leaf in (
        ("quickstart", infer, "adapter"),
        ("chat-qlora", train, "checkpoint-3"),
    ):
        old, new = tmp_path / "runs" / name / "manual", tmp_path / "runs" / name / "20260101-000000"
        for run, when in ((old, 1_000_000), (new, 2_000_000)):
            (run / leaf).mkdir(parents=True)
            (run / leaf / "trainer_state.json").write_text("{}")
            for path in (run / leaf, run):
                os.utime(path, (when, when))
        if leaf == "adapter":
            assert script.latest_run().resolve() == new.resolve()
        else:
            run, checkpoint = script.last_checkpoint(None, "last")
            assert run.resolve() == new.resolve() and checkpoint.endswith("checkpoint-3")


@pytest.mark.train  # imports the generated train.py (the ML stack)
def test_resume_without_output_dir_continues_in_the_checkpoint_s_run(tmp_path, monkeypatch):
    """Defect: `train.py --resume runs/NAME/ID/checkpoint-N` (a signal checkpoint of a spec that
    saves none itself) wrote the resumed run into a new runs/NAME/<time> folder."""
    script = load_generated(REPO / "generated/quickstart/train.py", "resume_train")
    calls = []
    monkeypatch.setattr(script, "train", lambda *args, **kwargs: calls.append(args))
    monkeypatch.setattr(script, "preflight", lambda: None, raising=False)
    checkpoint = "runs/quickstart/20260101-000000/checkpoint-4"
    monkeypatch.setattr(sys, "argv", ["train.py", "--resume", checkpoint])
    script.main()
    assert calls == [(script.Path("runs/quickstart/20260101-000000"), checkpoint)]
    monkeypatch.setattr(sys, "argv", ["train.py", "--resume", checkpoint, "--output-dir", "x"])
    script.main()
    assert calls[-1] == (script.Path("x"), checkpoint)  # an explicit folder still wins


@pytest.mark.train  # imports the generated train.py (the ML stack)
@pytest.mark.parametrize(
    ("script", "function"),
    [("quickstart", "to_prompt_completion"), ("quickstart-dpo", "to_dpo_rows")],
)
def test_a_list_or_dict_column_in_the_prompt_is_refused(script, function, tiny_model_dir):
    """Defect: a nested column used in a {field} was formatted as its Python repr
    ({'from': 'gpt', ...}) and passed the empty-answer check; Hub rows skip validate."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    module = load_generated(REPO / f"generated/{script}/train.py", f"nested_{function}")
    fields = module.PROMPT_FIELDS + module.COMPLETION_FIELDS
    fields += getattr(module, "REJECTED_FIELDS", [])
    row = {field: "text" for field in fields}
    row[module.PROMPT_FIELDS[-1]] = [{"from": "gpt", "value": "hello"}]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    with pytest.raises(SystemExit) as exit_:
        getattr(module, function)(Dataset.from_list([row, row]), tokenizer, "train")
    message = str(exit_.value.code)
    assert module.PROMPT_FIELDS[-1] in message and "List(" in message, message
    assert "prompt.conversation" in message
