"""--format ollama: a Modelfile beside the quantised GGUF, so that in the folder
`ollama create NAME -f Modelfile` serves the model with the spec's prompt, stop token and decoding.

The prompt convention. Ollama fills the Modelfile's TEMPLATE with the user's message as
{{ .Prompt }}. The TEMPLATE is the spec's prompt as the run's infer.py renders it (a chat spec's
chat template included) with the span from its first `{field}` to its last replaced by
{{ .Prompt }}: the text before the first field (a chat template's system turn, the user turn's
header) and after the last (the response marker, the assistant turn's header) are fixed, and the
user's message is the span, filled in. A one-field prompt takes the field's value as the message;
quickstart's "Instruction: {instruction}\\nInput: {input}\\n<response>" takes
"<instruction>\\nInput: <headline>". The Modelfile's header comment shows the span.

Verified without Ollama: the Modelfile is read back with Ollama's grammar (parse_modelfile), its
TEMPLATE rendered with each held-out row's message must give exactly infer.py's build_prompt(row),
and those prompts, run through llama.cpp with the Modelfile's stop and num_predict (greedy), must
agree with the adapter's answers.
"""

from __future__ import annotations

import inspect
import os
import re
import shutil
import time
from pathlib import Path

from specforge.export import gguf
from specforge.export.run import DEFAULT_THRESHOLD, ExportError, ExportRun
from specforge.export.verify import ExportResult, finish, record_export, staged_folder
from specforge.modelinfo.gguf_runtime import load_llama
from specforge.spec.models import template_fields

NAME = "ollama"
MODELFILE = "Modelfile"
PROMPT = "{{ .Prompt }}"
SENTINEL = "SPECFORGEFIELD{}X"  # letters only: chat templates may trim message contents
COMMANDS = (
    "from",
    "license",
    "template",
    "system",
    "adapter",
    "draft",
    "renderer",
    "parser",
    "parameter",
    "message",
    "requires",
)  # Ollama's parser/parser.go


def unavailable() -> str | None:
    return gguf.unavailable()  # the Modelfile's GGUF is built and verified by llama.cpp


def export(run: ExportRun, out_dir: Path, threshold: float) -> ExportResult:
    source = gguf_file(run, out_dir)
    span = message_span(run)
    template = go_template(run, span)
    text = modelfile(run, gguf_name=source.name, template=template, span=span)
    with staged_folder(out_dir) as folder:
        link_or_copy(source, folder / source.name)
        (folder / MODELFILE).write_text(text, encoding="utf-8")
    started = time.monotonic()
    commands = parse_modelfile((out_dir / MODELFILE).read_text(encoding="utf-8"))
    checks, failures, prompts = check_template(run, commands, span)
    answers = generate(out_dir / source.name, prompts, commands)
    checks["parameters"] = {k: v for k, v in commands if k not in ("model", "template")}
    return finish(
        run,
        NAME,
        out_dir,
        answers=answers,
        threshold=threshold,
        seconds=time.monotonic() - started,
        checks={"gguf": source.name, **checks},
        failures=failures,
    )


def gguf_file(run: ExportRun, out_dir: Path) -> Path:
    """The quantised GGUF of a verified gguf export beside out_dir (`--format all`) or in
    RUN_DIR/export/gguf; built there when neither has one."""
    for folder in (out_dir.parent / "gguf", run.run_dir / "export" / "gguf"):
        found = gguf.quantised_file(folder)
        if found is not None:
            return found
    folder = run.run_dir / "export" / "gguf"
    result = gguf.export(run, folder, DEFAULT_THRESHOLD)
    record_export(run.run_dir, result)
    if not result.passed:
        raise ExportError(f"the GGUF for the Modelfile did not verify: {result.error}")
    found = gguf.quantised_file(folder)
    if found is None:
        raise ExportError(f"{folder} holds no quantised GGUF after a verified export")
    return found


def link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # same filesystem: no second copy of the weights
    except OSError:
        shutil.copy2(source, target)


# -- the prompt as a Go template over .Prompt


def prompt_texts(infer) -> list[str]:
    """The prompt's template text(s) as infer.py holds them: plain template or chat messages."""
    if getattr(infer, "PROMPT_TEMPLATE", None) is not None:
        return [infer.PROMPT_TEMPLATE]
    return [text for _, text in infer.PROMPT_MESSAGES]


def message_span(run: ExportRun) -> str:
    """The template text from the first field to the last, e.g. "{instruction}\\nInput: {input}":
    what the user's message stands for. All fields must sit in one template or message."""
    holding = [text for text in prompt_texts(run.infer()) if template_fields(text)]
    if len(holding) != 1:
        raise ExportError(
            "ollama: the prompt's fields are spread over several chat messages; a Modelfile "
            "TEMPLATE has one {{ .Prompt }} for them"
        )
    text = holding[0]
    starts = [m.start() for m in re.finditer(r"(?<!\{)\{(?!\{)", text)]
    ends = [m.end() for m in re.finditer(r"(?<!\})\}(?!\})", text)]
    return text[starts[0] : ends[-1]]


def fill(span: str, row: dict) -> str:
    return span.format(**{name: row[name] for name in template_fields(span)})


def build_prompt(run: ExportRun, row: dict) -> str:
    """infer.py's own build_prompt (a chat spec's takes the tokenizer too)."""
    infer = run.infer()
    if len(inspect.signature(infer.build_prompt).parameters) == 1:
        return infer.build_prompt(row)
    from transformers import AutoTokenizer

    return infer.build_prompt(row, AutoTokenizer.from_pretrained(run.tokenizer_dir))


def go_template(run: ExportRun, span: str) -> str:
    """build_prompt of a row whose fields are sentinels, the span replaced by {{ .Prompt }}."""
    fields = run.spec.prompt.prompt_fields()
    sentinels = {name: SENTINEL.format(i) for i, name in enumerate(fields)}
    rendered = build_prompt(run, sentinels)
    marked = fill(span, sentinels)
    if rendered.count(marked) != 1:
        raise ExportError(
            "ollama: the rendered prompt does not hold the message span verbatim once "
            f"(the chat template changes it?): {rendered!r}"
        )
    before, _, after = rendered.partition(marked)
    return go_text(before) + PROMPT + go_text(after)


def go_text(text: str) -> str:
    """Literal text for a Go template inside a Modelfile \"\"\" string: `{{`, `\"\"\"` and
    characters Ollama's parser drops (it keeps printable ones, tabs and newlines) are written as
    Go string actions."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("{{", i):
            out.append('{{ "{{" }}')
            i += 2
        elif text.startswith('"""', i):
            out.append('{{ "\\"\\"\\"" }}')
            i += 3
        elif text[i].isprintable() or text[i] in "\n\t":
            out.append(text[i])
            i += 1
        else:
            out.append(f'{{{{ "\\U{ord(text[i]):08x}" }}}}')
            i += 1
    return "".join(out)


ACTION = re.compile(r'\{\{\s*(\.Prompt|"(?:[^"\\]|\\.)*")\s*\}\}')


def go_string(literal: str) -> str:
    """The value of a Go string literal as go_text() writes them (\\", \\\\, \\UXXXXXXXX)."""
    escape = re.compile(r'\\U([0-9a-fA-F]{8})|\\(["\\])')
    return escape.sub(lambda m: chr(int(m[1], 16)) if m[1] else m[2], literal[1:-1])


def render(template: str, prompt: str) -> str:
    """Execute the Go templates go_template() writes: literal text, {{ .Prompt }} and
    {{ "string" }} actions (anything else is an error)."""
    if "{{" in ACTION.sub("", template):
        raise ExportError(
            f"ollama: the TEMPLATE holds an action specforge does not write: {template!r}"
        )

    def action(match: re.Match) -> str:
        value = match.group(1)
        return prompt if value == ".Prompt" else go_string(value)

    return ACTION.sub(action, template)


# -- the Modelfile


def parameters(run: ExportRun) -> list[tuple[str, str]]:
    """The spec's decoding as Ollama parameters (repeat_penalty always: Ollama's default is 1.1,
    which moves probability off the label words an instruction lists)."""
    infer = run.infer()
    generation = infer.GENERATION
    stop = gguf.stop_token(run)
    found: list[tuple[str, object]] = [("stop", stop)] if stop else []
    if generation.get("do_sample"):
        found.append(("temperature", generation.get("temperature") or 1.0))
        if generation.get("top_p") is not None:
            found.append(("top_p", generation["top_p"]))
    else:
        found += [("temperature", 0), ("top_k", 1)]
    found.append(("repeat_penalty", generation.get("repetition_penalty") or 1.0))
    found.append(("num_predict", gguf.max_new_tokens(run)))
    return [(name, str(value)) for name, value in found]


def quote(value: str) -> str:
    """A Modelfile argument as Ollama's parser reads it back (it knows no escapes): numbers
    bare, strings quoted."""
    if re.fullmatch(r"-?[0-9.]+", value):
        return value
    if '"""' in value or any(not (c.isprintable() or c in "\n\t") for c in value):
        raise ExportError(f"ollama: {value!r} cannot be written in a Modelfile")
    return f'"""{value}"""' if "\n" in value or '"' in value else f'"{value}"'


def modelfile(run: ExportRun, *, gguf_name: str, template: str, span: str) -> str:
    example = next(iter(run.spec.inference.examples or []), None) or run.rows[0]
    message = fill(span, example)
    lines = [
        f"# {run.spec.name}: the run {run.run_dir.name}, exported by specforge (--format ollama).",
        "#   ollama create NAME -f Modelfile      # in this folder",
        f"# The message is the prompt's text from its first field to its last: {span!r},",
        f"# e.g. {message!r}; the TEMPLATE adds the rest of the spec's prompt.",
        f"FROM ./{gguf_name}",
        f'TEMPLATE """{template}"""',
        *(f"PARAMETER {name} {quote(value)}" for name, value in parameters(run)),
    ]
    return "\n".join(lines) + "\n"


def parse_modelfile(text: str) -> list[tuple[str, str]]:
    """[(command, argument)] as Ollama's parser (parser/parser.go) reads a Modelfile: FROM is
    "model", a PARAMETER is (its name, value); values unquoted, no escapes."""
    commands: list[tuple[str, str]] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].lstrip(" \t")
        i += 1
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition(" ")
        if name.lower() not in COMMANDS:
            raise ExportError(f"Modelfile line {i}: unknown command {name!r}")
        if name.lower() == "parameter":
            name, _, rest = rest.lstrip(" \t").partition(" ")
        elif name.lower() == "from":
            name = "model"
        value = rest.strip(" \t")
        if value.startswith('"""'):
            while not (len(value) >= 6 and value.endswith('"""')):
                if i >= len(lines):
                    raise ExportError('Modelfile: a """ string is not closed')
                value += "\n" + lines[i].rstrip(" \t")
                i += 1
            value = value[3:-3]
        elif value.startswith('"') and len(value) >= 2 and value.endswith('"'):
            value = value[1:-1]
        commands.append((name.lower(), value))
    if not any(name == "model" for name, _ in commands):
        raise ExportError("Modelfile: no FROM line")
    return commands


# -- verification


def check_template(run: ExportRun, commands, span: str) -> tuple[dict, list[str], list[str]]:
    """The Modelfile's TEMPLATE, rendered with each row's message: (checks, failures, prompts)."""
    template = dict(commands)["template"]
    prompts = [render(template, fill(span, row)) for row in run.rows]
    expected = [build_prompt(run, row) for row in run.rows]
    differ = [i for i, (a, b) in enumerate(zip(prompts, expected)) if a != b]
    failures = []
    if differ:
        first = differ[0]
        failures.append(
            f"the TEMPLATE gives {len(differ)} of {len(prompts)} prompts other than infer.py's "
            f"(row {first}: {prompts[first]!r} vs {expected[first]!r})"
        )
    checks = {"template": template, "message_span": span, "prompts_differ": len(differ)}
    return checks, failures, prompts


def generate(path: Path, prompts: list[str], commands) -> list[str]:
    """The prompts through llama.cpp as Ollama runs them: its tokenizer (BOS as the GGUF says,
    special tokens parsed), greedy, num_predict tokens at most, cut at the stop strings."""
    values = dict(commands)
    stops = [value for name, value in commands if name == "stop"]
    max_new = int(values.get("num_predict", 128))
    penalty = float(values.get("repeat_penalty", 1.0))
    llm = load_llama(path, gguf.context_size(prompts, max_new))
    try:
        answers = []
        for prompt in prompts:
            ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
            answers.append(gguf.answer(llm, ids, max_new=max_new, repeat_penalty=penalty))
    finally:
        llm.close()
    return [cut(answer, stops) for answer in answers]


def cut(text: str, stops: list[str]) -> str:
    for stop in stops:
        text = text.split(stop)[0]
    return text.strip()
