"""`specforge export --format gguf|ollama` on tiny trained runs (tied and untied heads) with the
real llama.cpp (llama-cpp-python, the `export` extra) and its own converter; the Modelfile read
back with a parser written here, independently of specforge's."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from specforge.export import ExportError, gguf, ollama
from specforge.modelinfo.gguf_runtime import load_llama
from tests.conftest import load_generated, run_cli
from tests.helpers import SHORT_TRAINING, export_project

STOP = "<response|end>"
STOP_ID = 49153  # SmolLM2's 49152 tokens, then <response>, then the stop token


def converter_or_skip() -> Path:
    reason = gguf.unavailable()
    if reason:
        pytest.skip(reason)
    try:
        return gguf.converter_script()
    except ExportError as err:
        pytest.skip(f"llama.cpp's converter is not available: {err}")


def train_and_export(root: Path, model_dir: Path, fmt: str, tied: bool) -> SimpleNamespace:
    converter_or_skip()
    export_project(root, model_dir, SHORT_TRAINING)
    assert run_cli("compile", cwd=root).returncode == 0
    run = run_cli("run", "specs/tiny.yaml", cwd=root)
    assert run.returncode == 0, run.stderr[-4000:]
    (run_dir,) = sorted((root / "runs/tiny").iterdir())
    result = run_cli("export", str(run_dir.relative_to(root)), "--format", fmt, cwd=root)
    return SimpleNamespace(root=root, run=run_dir, result=result, tied=tied)


@pytest.fixture(scope="module")
def tied(tmp_path_factory, tiny_model_dir):
    """A trained tiny run with tied embeddings, `--format all`: merged, gguf and ollama, each in
    RUN_DIR/export."""
    return train_and_export(tmp_path_factory.mktemp("gguf-tied"), tiny_model_dir, "all", True)


@pytest.fixture(scope="module")
def untied(tmp_path_factory, tiny_untied_model_dir):
    """Untied: `--format gguf` alone, which builds the merged folder it converts."""
    root = tmp_path_factory.mktemp("gguf-untied")
    return train_and_export(root, tiny_untied_model_dir, "gguf", False)


@pytest.fixture(params=["tied", "untied"])
def exported(request):
    return request.getfixturevalue(request.param)


def report(folder: Path) -> dict:
    return json.loads((folder / "eval.json").read_text())


@pytest.mark.train
def test_gguf_export_verifies_f16_and_q8_0_against_the_adapter(exported):
    assert exported.result.returncode == 0, exported.result.stderr[-4000:]
    folder = exported.run / "export/gguf"
    assert (folder / "tiny-F16.gguf").is_file() and (folder / "tiny-Q8_0.gguf").is_file()
    found = report(folder)
    assert found["passed"] and found["error"] is None and found["n"] == 12
    assert found["agreement"] >= 0.95 and found["checks"]["f16"]["agreement"] >= 0.95
    for outtype, tolerance in (("f16", 1e-3), ("q8_0", 2e-2)):
        checks = found["checks"][outtype]
        assert checks["eos_token_id"] == checks["stop_token_id"] == STOP_ID
        assert checks["eos_token"] == STOP
        assert checks["prompts_tokenized_differently"] == 0
        # the robust comparison on random weights: same next token, logits close
        assert checks["probe_same_next_token"] == "4/4", checks
        assert checks["probe_logits_max_rel_diff"] < tolerance, checks
    assert found["checks"]["q8_0"]["nonempty_answers"] >= 6  # not 12 empty answers agreeing
    record = json.loads((exported.run / "run.json").read_text())
    entry = record["exports"]["gguf"]
    assert entry["passed"] and set(entry["sha256"]) == {"tiny-F16.gguf", "tiny-Q8_0.gguf"}


@pytest.mark.train
def test_gguf_keeps_the_head_tied_or_untied(exported):
    """A tied model's GGUF has no output tensor (llama.cpp reuses token_embd); an untied one
    carries its own head with the trained stop-token row."""
    from gguf import GGUFReader

    for name in ("tiny-F16.gguf", "tiny-Q8_0.gguf"):
        tensors = {t.name for t in GGUFReader(exported.run / "export/gguf" / name).tensors}
        assert "token_embd.weight" in tensors
        assert ("output.weight" in tensors) is not exported.tied, name


@pytest.mark.train
def test_eos_other_than_the_stop_token_fails_clearly(exported):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(exported.run / "export/merged")
    path = exported.run / "export/gguf/tiny-Q8_0.gguf"
    checks, failures = gguf.check_eos(path, STOP, tokenizer)
    assert failures == [] and checks["eos_token_id"] == STOP_ID
    checks, failures = gguf.check_eos(path, "<|im_end|>", tokenizer)
    assert len(failures) == 1
    assert "not the stop token '<|im_end|>' (id 2)" in failures[0]
    assert "would not stop where the model was trained to stop" in failures[0]


@pytest.mark.train
def test_other_types_are_quantised_from_the_f16_file_by_llama_cpp(tied, tmp_path):
    """--quant q4_k_m: llama.cpp's quantizer (the converter writes only f16/bf16/q8_0)."""
    import shutil

    from transformers import AutoTokenizer

    shutil.copy(tied.run / "export/gguf/tiny-F16.gguf", tmp_path / "tiny-F16.gguf")
    path = tmp_path / "tiny-Q4_K_M.gguf"
    gguf.write_gguf(Path("unused"), source=Path("unused"), path=path, outtype="q4_k_m")
    tokenizer = AutoTokenizer.from_pretrained(tied.run / "export/merged")
    assert gguf.check_eos(path, STOP, tokenizer)[1] == []
    llm = load_llama(path, 128)
    try:
        ids = llm.tokenize(
            b"Instruction: Classify.\nInput: Profits rose.\n<response>", special=True
        )
        assert isinstance(gguf.answer(llm, ids, max_new=4), str)
    finally:
        llm.close()


def parse(text: str) -> list[tuple[str, str]]:
    """Ollama's Modelfile grammar, written again here: COMMAND ARG per line, # comments,
    "quoted" and \"\"\"multi-line\"\"\" arguments without escapes; PARAMETER NAME VALUE."""
    pattern = re.compile(
        r"^(?P<cmd>[A-Za-z]+)[ \t]+(?:(?P<param>[A-Za-z0-9_]+)[ \t]+)?"
        r'(?:"""(?P<multi>.*?)"""|"(?P<quoted>[^"\n]*)"|(?P<bare>[^\s"][^\n]*))[ \t]*$',
        re.DOTALL | re.MULTILINE,
    )
    body = "\n".join(x for x in text.split("\n") if not x.startswith("#"))
    commands, pos = [], 0
    for match in pattern.finditer(body):
        assert body[pos : match.start()].strip() == "", f"unparsed: {body[pos : match.start()]!r}"
        cmd = match["cmd"].upper()
        assert cmd in {"FROM", "TEMPLATE", "PARAMETER"}, cmd
        assert (match["param"] is not None) == (cmd == "PARAMETER")
        value = next(v for v in match.group("multi", "quoted", "bare") if v is not None)
        commands.append((match["param"] or cmd, value))
        pos = match.end()
    assert body[pos:].strip() == ""
    return commands


@pytest.mark.train
def test_modelfile_serves_the_spec_prompt_stop_and_decoding(tied):
    folder = tied.run / "export/ollama"
    text = (folder / "Modelfile").read_text()
    commands = parse(text)
    names = {"model": "FROM", "template": "TEMPLATE"}
    theirs = [(names.get(k, k), v) for k, v in ollama.parse_modelfile(text)]
    assert commands == theirs  # the two parsers read the same
    values = dict(commands)
    assert values["FROM"] == "./tiny-Q8_0.gguf"
    gguf_copy = folder / "tiny-Q8_0.gguf"
    assert gguf_copy.read_bytes() == (tied.run / "export/gguf/tiny-Q8_0.gguf").read_bytes()
    assert values["TEMPLATE"] == "Instruction: {{ .Prompt }}\n<response>"
    assert ("stop", STOP) in commands and 'PARAMETER stop "<response|end>"' in text
    assert values["temperature"] == "0" and values["top_k"] == "1"
    assert values["repeat_penalty"] == "1.0" and values["num_predict"] == "4"
    # the template, filled with a row's message, is infer.py's prompt for the row
    record = json.loads((tied.run / "run.json").read_text())
    infer = load_generated(tied.root / record["scripts"]["dir"] / "infer.py", "gguf_infer")
    row = {"instruction": "Classify.", "input": "Profits rose {sharply}."}
    message = f"{row['instruction']}\nInput: {row['input']}"
    assert values["TEMPLATE"].replace("{{ .Prompt }}", message) == infer.build_prompt(row)
    found = report(folder)
    assert found["passed"], found["error"]
    assert found["checks"]["prompts_differ"] == 0 and found["agreement"] >= 0.95


def test_go_template_escapes_what_go_or_the_modelfile_would_read():
    text = 'A {{literal}} and """quotes""" and a bell\x07 and a tab\t end\n'
    template = ollama.go_text(text) + ollama.PROMPT
    assert '"""' not in template and "\x07" not in template
    assert ollama.render(template, "MSG") == text + "MSG"
    written = f'FROM ./m.gguf\nTEMPLATE """{template}"""\nPARAMETER stop "<x|end>"\n'
    assert dict(ollama.parse_modelfile(written))["template"] == template
    assert dict(parse(written))["TEMPLATE"] == template
    with pytest.raises(ExportError, match="does not write"):
        ollama.render("{{ .System }}{{ .Prompt }}", "x")


def test_quote_writes_values_ollama_reads_back():
    assert ollama.quote("0") == "0" and ollama.quote("1.05") == "1.05"
    assert ollama.quote("<response|end>") == '"<response|end>"'
    assert ollama.quote("### End") == '"### End"'
    assert ollama.quote('say "x"') == '"""say "x""""'
    with pytest.raises(ExportError):
        ollama.quote('a """ b')


def fake_run(infer, fields, examples=()):
    prompt = SimpleNamespace(prompt_fields=lambda: fields)
    spec = SimpleNamespace(prompt=prompt, inference=SimpleNamespace(examples=list(examples)))
    return SimpleNamespace(infer=lambda: infer, spec=spec)


def test_chat_prompt_becomes_a_template_around_the_user_message():
    """A chat spec: the span is the user message's fields; the chat markup around it is fixed."""
    messages = [("system", "You route tickets."), ("user", "Ticket: {ticket}")]

    def build_prompt(row):
        return (
            "<|im_start|>system\nYou route tickets.<|im_end|>\n"
            f"<|im_start|>user\nTicket: {row['ticket']}<|im_end|>\n<|im_start|>assistant\n"
        )

    infer = SimpleNamespace(
        PROMPT_TEMPLATE=None, PROMPT_MESSAGES=messages, build_prompt=build_prompt
    )
    run = fake_run(infer, ["ticket"])
    span = ollama.message_span(run)
    assert span == "{ticket}"
    template = ollama.go_template(run, span)
    assert template == (
        "<|im_start|>system\nYou route tickets.<|im_end|>\n"
        "<|im_start|>user\nTicket: {{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert ollama.render(template, "printer down") == build_prompt({"ticket": "printer down"})


def test_fields_in_two_chat_messages_are_refused():
    infer = SimpleNamespace(
        PROMPT_TEMPLATE=None,
        PROMPT_MESSAGES=[("system", "Domain: {domain}"), ("user", "{ticket}")],
        build_prompt=lambda row: "",
    )
    with pytest.raises(ExportError, match="several chat messages"):
        ollama.message_span(fake_run(infer, ["domain", "ticket"]))


def amx_cpu() -> bool:
    try:
        return "amx_int8" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


@pytest.mark.train
@pytest.mark.skipif(not amx_cpu(), reason="the shim in load_llama concerns CPUs with AMX")
def test_amx_repack_still_crashes(tied):
    """load_llama turns llama.cpp's weight repacking off because its AMX repack of Q8_0
    segfaults (ggml-org/llama.cpp#20824). When this fails, upstream fixed it: drop the shim."""
    path = tied.run / "export/gguf/tiny-Q8_0.gguf"
    code = (
        "from llama_cpp import Llama\n"
        f"llm = Llama(model_path={str(path)!r}, n_ctx=64, verbose=False)\n"
        "llm.eval(llm.tokenize(b'Input: profits rose', add_bos=True))\n"
        "print('decoded')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0 and "decoded" not in result.stdout, (
        "llama.cpp's default load decodes Q8_0 on this AMX CPU now: remove the "
        "use_extra_bufts shim from specforge/export/gguf.py's load()"
    )


@pytest.mark.slow
def test_quickstart_on_smollm2_exports_to_q8_0_that_agrees(quickstart_run):
    """The real model: make demo's quickstart run (conftest), exported to GGUF; llama.cpp's Q8_0
    answers the 120 held-out headlines as the adapter did."""
    converter_or_skip()
    run_dir, root = quickstart_run, quickstart_run.parents[2]
    result = run_cli("export", str(run_dir), "--format", "gguf", cwd=root, timeout=1500)
    assert result.returncode == 0, result.stderr[-4000:]
    found = report(run_dir / "export/gguf")
    assert found["n"] == 120 and found["agreement"] >= 0.95, found
    assert found["checks"]["q8_0"]["eos_token"] == STOP
