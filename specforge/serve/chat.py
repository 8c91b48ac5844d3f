"""`specforge chat RUN_DIR`: talk to a trained run in the terminal, its answer streamed as it is
generated, with the run's own prompt function, stop token and decoding settings.

A template spec asks for its fields: the last one (the quickstart's headline) is what you type
each turn, the others are asked once (or taken from the spec's first example); `key=value` sets
any of them. A conversation spec keeps the conversation. Commands: /prompt (the prompt the model
saw last), /reset, /system TEXT (conversation), /fields (template), /exit.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from specforge.serve.engine import Engine, Params, run
from specforge.serve.run import ServedRun, ServeError, load, open_run

Ask = Callable[[str], str]  # input()


@dataclass
class Session:
    run: ServedRun
    engine: Engine
    out: TextIO
    values: dict[str, str] = field(default_factory=dict)  # a template spec's fields
    messages: list[dict] = field(default_factory=list)  # a conversation spec's turns
    system: str | None = None
    last_prompt: str | None = None

    def answer(self, prompt: str) -> str:
        """Stream the model's answer to `prompt` onto the terminal; the whole answer."""
        self.last_prompt = prompt
        defaults = self.engine.defaults
        params = Params(max_tokens=int(defaults.get("max_new_tokens", 64)))
        ids = self.engine.encode(prompt)
        try:
            outcome = run(self.engine, ids, params, on_text=self._show)
        except KeyboardInterrupt:
            self.out.write("  [stopped]\n")
            return ""
        self.out.write("\n")
        self.out.flush()
        return outcome.text

    def _show(self, piece: str) -> None:
        self.out.write(piece)
        self.out.flush()


def chat(
    run_dir: Path,
    *,
    fmt: str = "adapter",
    base: bool = False,
    ask: Ask = input,
    out: TextIO = sys.stdout,
) -> int:
    """The interactive session; 0 on /exit or end of input, 1 when the run cannot be loaded."""
    try:
        served = open_run(run_dir)
        form = "the base model" if base else fmt
        out.write(f"loading {served.run_dir} ({form}) ...\n")
        out.flush()
        session = Session(served, load(served, fmt, base=base), out)
    except ServeError as err:
        print(f"specforge: error: {err}", file=sys.stderr)
        return 1
    loop = _conversation_turn if served.conversation else _template_turn
    if served.conversation:
        out.write("chat: type a message; /system TEXT, /reset, /prompt, /exit\n")
    else:
        _fill_fields(session, ask)
    while True:
        try:
            line = ask(_prompt_label(session))
        except (EOFError, KeyboardInterrupt):
            out.write("\n")
            return 0
        if line.strip() == "/exit":
            return 0
        loop(session, line)


def _prompt_label(session: Session) -> str:
    if session.run.conversation:
        return "you> "
    return f"{session.run.fields[-1]}> "


def _fill_fields(session: Session, ask: Ask) -> None:
    """Every field but the last from the spec's first example, or asked once."""
    fields = session.run.fields
    examples = session.run.spec.inference.examples or []
    example = dict(examples[0]) if examples else {}
    for name in fields[:-1]:
        if name in example:
            session.values[name] = str(example[name])
            session.out.write(f"{name} = {session.values[name]}\n")
        else:
            session.values[name] = ask(f"{name}: ")
    session.out.write(
        f"type the {fields[-1]} and read the answer; `field=value` sets a field "
        f"({', '.join(fields)}); /prompt, /fields, /exit\n"
    )


def _template_turn(session: Session, line: str) -> None:
    fields = session.run.fields
    command = line.strip()
    if command == "/prompt":
        session.out.write(_last_prompt(session))
        return
    if command == "/fields":
        session.out.write("".join(f"{k} = {v}\n" for k, v in session.values.items()))
        return
    name, sep, value = line.partition("=")
    if sep and name.strip() in fields:
        session.values[name.strip()] = value.strip()
        if name.strip() != fields[-1]:
            return
    elif command:
        session.values[fields[-1]] = line
    else:
        return
    session.answer(session.run.template_prompt(session.values))


def _conversation_turn(session: Session, line: str) -> None:
    command, _, rest = line.strip().partition(" ")
    if command == "/prompt":
        session.out.write(_last_prompt(session))
    elif command == "/reset":
        session.messages.clear()
        session.out.write("(conversation cleared)\n")
    elif command == "/system":
        session.system = rest.strip() or None
        session.out.write(f"(system: {session.system or 'none'})\n")
    elif line.strip():
        session.messages.append({"role": "user", "content": line})
        turns = [{"role": "system", "content": session.system}] if session.system else []
        try:
            prompt = session.run.conversation_prompt(turns + session.messages)
        except ValueError as err:
            session.messages.pop()
            session.out.write(f"error: {err}\n")
            return
        text = session.answer(prompt)
        session.messages.append({"role": "assistant", "content": text})


def _last_prompt(session: Session) -> str:
    if session.last_prompt is None:
        return "(no prompt yet)\n"
    return f"{session.last_prompt!r}\n"
