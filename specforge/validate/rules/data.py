"""Rules on the data: local files exist and parse (SF009), the prompt's fields are columns of
them holding text (SF010), the answer column is known (SF011), mixtures and conversations fit
the prompt (SF020).

Relative paths in a spec (dataset, eval data, local model directories) resolve from the working
directory, which is the project root: specforge and the generated scripts both run from there.
Only the first rows of a local file are read (validate/datafiles.py); train.py checks them all.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from specforge.core.errors import Location
from specforge.spec.models import ConversationSpec, is_local_path, template_fields
from specforge.validate.registry import Context, Finding, LocalSource, error, rule, spec_location
from specforge.validate.rules.tokens import prompt_texts

RELATIVE_HINT = "relative paths resolve from the project root (where you run specforge)"
SHOWN_LINES = 10


@rule("SF009")
def local_files_exist(ctx: Context) -> Iterator[Finding]:
    """Local datasets, eval data and model folders exist; the eval data is JSON lines."""
    for source in ctx.local_sources:
        if source.data is None:
            yield error(
                source.spec_path, f"local dataset {source.name} does not exist", RELATIVE_HINT
            )
    inf, model = ctx.spec.inference, ctx.spec.model
    if ctx.check_files and inf.eval_data is not None:
        eval_path = Path(inf.eval_data).expanduser()
        if not eval_path.is_file():
            yield error(
                ("inference", "eval_data"),
                f"eval file {inf.eval_data} does not exist",
                RELATIVE_HINT,
            )
        elif eval_path.suffix != ".jsonl":
            yield error(("inference", "eval_data"), "eval data must be a .jsonl file")
    local_model = model.package is None and is_local_path(model.name)
    if ctx.check_files and local_model and not Path(model.name).expanduser().is_dir():
        yield error(("model", "name"), f"local model directory {model.name} does not exist")


@rule("SF009")
def local_files_parse(ctx: Context) -> Iterator[Finding]:
    """A local dataset holds rows, and each of a .jsonl's first lines (datafiles.CHECK_ROWS) is
    JSON: reported at the data file's line, where `run` would stop at a 0-based row number."""
    for source in ctx.local_sources:
        data, key = source.data, ".".join(map(str, source.spec_path))
        if data is None:
            continue
        if data.bad is not None:
            where = spec_location(ctx, source.spec_path)
            hint = f"the file is {key} ({where}); fix or remove the line (train.py stops at it)"
            location = Location(source.name, data.bad.line, data.bad.col)
            yield Finding(source.spec_path, data.bad.why, (hint,), location=location)
        elif data.empty:
            yield error(
                source.spec_path,
                f"local dataset {source.name} is empty: it holds no rows",
                "point it at a file of training rows",
            )


@rule("SF010")
def prompt_fields_are_columns(ctx: Context) -> Iterator[Finding]:
    """The prompt's fields are columns of the (single, local) dataset."""
    if ctx.spec.dataset.sources is not None:
        return  # a mixture maps its sources' columns: SF020
    for source in ctx.local_sources:
        columns = source.data.columns if source.data is not None else None
        if columns is None or source.data is None or source.data.empty:
            continue  # not peekable, or reported by SF009
        missing = [f for f in ctx.fields if f not in columns]
        if missing:
            yield error(
                ("prompt",),
                f"field(s) {', '.join(missing)} not in the dataset's columns "
                f"({', '.join(sorted(columns)) or 'none'})",
                "set prompt.conversation.column"
                if ctx.spec.prompt.conversation is not None
                else "fix the {field} names in the templates",
            )


@rule("SF010")
def formatted_fields_are_text(ctx: Context) -> Iterator[Finding]:
    """A `{field}` is formatted as text: a list or mapping column would enter the prompt as its
    Python repr."""
    reported: set[str] = set()
    for path, text in prompt_texts(ctx.spec):
        for field in template_fields(text):
            if field in reported:
                continue
            found = _structured_value(ctx.local_sources, field)
            if found is None:
                continue
            reported.add(field)
            column, kind, where = found
            yield error(
                path,
                f"column {column} holds a {kind} ({where}), but {{{field}}} formats it as text: "
                "the prompt would show its Python repr",
                "train on a column of chat turns with prompt.conversation, or build the prompt "
                "from text columns with prompt.messages",
            )


def _structured_value(sources: list[LocalSource], field: str) -> tuple[str, str, str] | None:
    """(column, 'list' or 'mapping', file:line) of the first row whose `field` is not a scalar."""
    for source in sources:
        column = source.columns.get(field, field)
        for line, row in source.data.rows if source.data is not None else ():
            value = row.get(column) if isinstance(row, dict) else None
            if isinstance(value, (list, dict)):
                kind = "list" if isinstance(value, list) else "mapping"
                return column, kind, f"{source.name}:{line}"
    return None


@rule("SF010")
def examples_have_prompt_fields(ctx: Context) -> Iterator[Finding]:
    """Inference examples are rows: they carry every prompt field (the data's missing ones are
    reported once, at the prompt)."""
    if ctx.spec.prompt.conversation is not None:
        return
    prompt_fields = ctx.spec.prompt.prompt_fields()
    for i, example in enumerate(ctx.spec.inference.examples):
        missing = [f for f in prompt_fields if f not in example and f not in ctx.fields_not_in_data]
        if missing:
            yield error(
                ("inference", "examples", i), f"example lacks field(s) {', '.join(missing)}"
            )


@rule("SF011")
def answer_column_is_known(ctx: Context) -> Iterator[Finding]:
    """Scoring against labels needs to know which column holds the answer."""
    inf = ctx.spec.inference
    answers = ctx.spec.prompt.completion_fields()
    if inf.labels is not None and inf.answer_column is None and len(answers) != 1:
        yield error(
            ("inference", "labels"),
            "cannot tell which column holds the answer",
            "set inference.answer_column",
        )


@rule("SF020")
def conversations_are_learnable(ctx: Context) -> Iterator[Finding]:
    """The first rows of a local .jsonl of conversations are conversations to learn from: the
    checks train.py makes on every row, made early."""
    conversation = ctx.spec.prompt.conversation
    if conversation is None or ctx.spec.method != "sft":
        return  # dpo/orpo/kto: their answers are columns (SF021)
    for source in ctx.local_sources:
        if (
            source.data is None
            or source.data.columns is None
            or source.file.suffix.lower() != ".jsonl"
        ):
            continue
        problems: dict[str, list[int]] = {}
        for line, row in source.data.rows:
            if isinstance(row, dict) and conversation.column in row:
                problem = turns_problem(row[conversation.column], conversation)
                if problem:
                    problems.setdefault(problem, []).append(line)
        for problem, lines in problems.items():
            shown = ", ".join(map(str, lines[:SHOWN_LINES]))
            shown += " ..." if len(lines) > SHOWN_LINES else ""
            yield error(
                ("prompt", "conversation"),
                f"{source.name} line(s) {shown}: {problem}",
                "fix the rows, or map the data's names under prompt.conversation "
                "(role_key, content_key, roles)",
            )


def turns_problem(turns, conversation: ConversationSpec) -> str | None:
    """Why `turns` is not a conversation train.py can learn from; None when it is."""
    roles = {"system": "system", "user": "user", "assistant": "assistant", **conversation.roles}
    role, content = conversation.role_key, conversation.content_key
    if not isinstance(turns, list) or not turns:
        return "not a list of turns"
    for turn in turns:
        if not isinstance(turn, dict) or turn.get(role) is None:
            return f"a turn has no {role!r}"
        if turn[role] not in roles:
            return f"role {turn[role]!r} is not one of {', '.join(sorted(roles))}"
        if roles[turn[role]] == "assistant" and not str(turn.get(content) or "").strip():
            return "an empty assistant turn"
        if turn.get(content) is None:
            return f"a turn has no {content!r}"
    if "assistant" not in [roles[turn[role]] for turn in turns]:
        return "no assistant turn"
    return None


@rule("SF020")
def sources_map_the_prompt(ctx: Context) -> Iterator[Finding]:
    """Each source of a mixture has (or maps) every column the prompt reads, and maps no more."""
    sources = ctx.spec.dataset.sources
    if sources is None:
        return
    for source in ctx.local_sources:
        columns = source.data.columns if source.data is not None else None
        if columns is None or source.data is None or source.data.empty:
            continue  # not peekable, or reported by SF009
        mapped = {field: source.columns.get(field, field) for field in ctx.fields}
        missing = [f for f in ctx.fields if mapped[f] not in columns]
        if missing:
            yield error(
                ("dataset", "sources", source.index),
                f"source {source.name} does not map to the prompt: column(s) "
                f"{', '.join(mapped[f] for f in missing)} not in its columns "
                f"({', '.join(sorted(columns)) or 'none'})",
                "map them under `columns:`, e.g. columns: {"
                + ", ".join(f"{f}: <its column>" for f in missing)
                + "}",
            )
    for i, source_spec in enumerate(sources):
        for field in source_spec.columns:
            if field not in ctx.fields:
                yield error(
                    ("dataset", "sources", i, "columns", field),
                    f"{field} is not a prompt column ({', '.join(ctx.fields)})",
                )


@rule("SF020")
def conversations_have_no_answer_column(ctx: Context) -> Iterator[Finding]:
    """A conversation's answer is its last assistant turn, and it is evaluated on eval_data."""
    if ctx.spec.prompt.conversation is None:
        return
    inf = ctx.spec.inference
    if inf.answer_column is not None:
        yield error(
            ("inference", "answer_column"),
            "a conversation's answer is its last assistant turn; answer_column does not apply",
        )
    if inf.examples:
        yield error(
            ("inference", "examples"),
            "examples are rows of text columns; a conversation spec answers inference.eval_data",
            "move them into a .jsonl file of conversations and set inference.eval_data",
        )
