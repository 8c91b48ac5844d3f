"""axolotl's `datasets:` list -> the spec's dataset and prompt. Each entry's `type` says how rows
become text; the types written out literally (alpaca, the flat chatml/llama3 preference formats)
map to a prompt template, chat types to a conversation; the rest is reported."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from specforge.importers.common import CHAT_FORMATS, CHATML_JINJA, Keys
from specforge.importers.result import APPROXIMATED, NO_EFFECT, UNSUPPORTED, Draft, Dropped

# axolotl's AlpacaPrompter: a different preamble when `input` is empty (not expressible yet).
ALPACA = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
# Flat preference types: strategy -> (prompt column, writes the system turn).
FLAT_DPO = {"intel": ("question", True), "prompt_pairs": ("prompt", False), "icr": ("input", True)}
FLAT_KTO = {"argilla": ("instruction", False), "intel": ("question", False)}
FLAT_KTO |= {"prompt_pairs": ("prompt", False), "ultra": ("prompt", False)}
CHAT_TYPES = ("chat_template", "chat_template.default", "sharegpt")
SOURCE_KEYS = ("path", "name", "data_files", "revision", "split")
HANDLED = {*SOURCE_KEYS, "type", "ds_type", "field_messages", "message_property_mappings"}
HANDLED |= {"message_field_role", "message_field_content", "roles", "roles_to_train"}
HANDLED |= {"train_on_eos", "drop_system_message", "chat_template"}


@dataclass
class Entry:
    """One `datasets:` entry as the spec sees it."""

    source: dict[str, Any]
    prompt: dict[str, Any] | None  # None: its type cannot be expressed
    column: str | None = None  # a conversation's column (mixtures map it per source)
    notes: list[Dropped] = field(default_factory=list)


def map_datasets(keys: Keys, draft: Draft, method: str) -> None:
    keys.unsupported("pretraining_dataset", "continued pretraining on raw text (issue 25, item 10)")
    entries = keys.get("datasets", [])
    size = float(keys.peek("val_set_size", 0))
    if size >= 1:
        keys.unsupported("val_set_size", f"{size:g} rows held out: the spec holds out a fraction")
    elif size > 0:
        draft.set("dataset.validation_fraction", size, "val_set_size")
    keys.used.add("val_set_size")
    if not isinstance(entries, list) or not entries:
        if not keys.given("pretraining_dataset"):
            keys.missing("datasets", "no datasets: list to train on")
        return
    chat = chat_template(keys)
    mapped = [
        entry(item, i, method=method, chat=chat, draft=draft) for i, item in enumerate(entries)
    ]
    for item in mapped:
        keys.dropped.extend(item.notes)
    prompts = [m.prompt for m in mapped]
    if any(p is None for p in prompts):
        return
    if any(p != prompts[0] for p in prompts):
        keys.dropped.append(
            Dropped(
                "datasets",
                "entries with different prompt formats: a spec has one prompt",
                UNSUPPORTED,
            )
        )
        return
    draft.data["prompt"] = prompts[0]
    write_sources(keys, draft, mapped)


def write_sources(keys: Keys, draft: Draft, mapped: list[Entry]) -> None:
    if len(mapped) == 1:
        source = mapped[0].source
        draft.set("dataset.path", source["path"])
        for key in ("revision", "split"):
            if key in source:
                draft.set(f"dataset.{key}", source[key])
        for key in ("name", "data_files"):
            if key in source:
                reason = f"a single source cannot name {key}: the spec takes it per mixture source"
                keys.dropped.append(Dropped(f"datasets[0].{key}", reason, UNSUPPORTED))
        return
    first = mapped[0].column
    sources = []
    for item in mapped:
        source = dict(item.source)
        if item.column is not None and item.column != first:
            source["columns"] = {first: item.column}
        sources.append(source)
    draft.set("dataset.sources", sources, "datasets (all rows of each, shuffled together)")


def chat_template(keys: Keys) -> tuple[str | None, str | None]:
    """(Jinja template or None for the tokenizer's own, why) from chat_template(_jinja)."""
    if keys.given("chat_template_jinja"):
        return str(keys.get("chat_template_jinja")), "chat_template_jinja"
    name = keys.get("chat_template")
    if name in (None, "tokenizer_default"):
        return None, None
    if name == "chatml":
        return CHATML_JINJA, "chat_template: chatml"
    keys.approximated(
        "chat_template",
        f"{name}: the tokenizer's own chat template (the same for the {name} model family; "
        "set prompt.conversation.chat_template if the base model has none)",
    )
    return None, None


def entry(
    item: Any, i: int, *, method: str, chat: tuple[str | None, str | None], draft: Draft
) -> Entry:
    where = f"datasets[{i}]"
    if not isinstance(item, dict) or "path" not in item:
        return Entry({}, None, notes=[Dropped(where, "an entry without a path", UNSUPPORTED)])
    source = {k: item[k] for k in SOURCE_KEYS if item.get(k) not in (None, "", [])}
    source = {k: (str(v) if k != "data_files" else v) for k, v in source.items()}
    kind = item.get("type")
    if kind == "alpaca" and method == "sft":
        found = alpaca(where, draft)
    elif kind in CHAT_TYPES and method == "sft":
        found = conversation(item, where, chat)
    elif isinstance(kind, str) and "." in kind and method in ("dpo", "kto"):
        found = flat_preference(kind, where, method)
    else:
        why = "rows whose chosen/rejected or completion are message lists (issue 25, item 1)"
        if method == "sft":
            why = "no spec prompt for this type"
        found = Entry(
            {}, None, notes=[Dropped(f"{where}.type", f"{kind} for {method}: {why}", UNSUPPORTED)]
        )
    found.source = source
    found.notes = unknown_keys(item, where, found.prompt is not None) + found.notes
    return found


def unknown_keys(item: dict, where: str, mapped: bool) -> list[Dropped]:
    """An entry's settings the mapping did not read: unsupported where the entry was carried
    over; where it was not, they go with its type."""
    kind, reason = UNSUPPORTED, "no spec equivalent for this dataset setting"
    if not mapped:
        kind, reason = NO_EFFECT, "a setting of the dataset type, which is not carried over"
    return [
        Dropped(f"{where}.{k}", reason, kind)
        for k, v in item.items()
        if k not in HANDLED and v not in (None, "", [], {})
    ]


def alpaca(where: str, draft: Draft) -> Entry:
    eos = draft.get("tokenizer.special_tokens.eos")
    prompt = {"template": ALPACA, "completion": "{output}" + (eos or "")}
    notes = [
        Dropped(
            f"{where}.type",
            "alpaca: rows with an empty input get the with-input preamble and an empty "
            "### Input: section (axolotl switches preamble; conditional prompts are issue 25, "
            "item 2)"
            + ("" if eos else "; the trainer appends the tokenizer's eos, as axolotl does"),
            APPROXIMATED,
        )
    ]
    return Entry({}, prompt, notes=notes)


def conversation(item: dict, where: str, chat: tuple[str | None, str | None]) -> Entry:
    sharegpt = item["type"] == "sharegpt"
    column = item.get("field_messages") or ("conversations" if sharegpt else "messages")
    props = item.get("message_property_mappings") or {}
    role = props.get("role") or item.get("message_field_role") or ("from" if sharegpt else "role")
    content = (
        props.get("content")
        or item.get("message_field_content")
        or ("value" if sharegpt else "content")
    )
    roles = {"human": "user", "gpt": "assistant", "system": "system"} if sharegpt else {}
    for target, names in (item.get("roles") or {}).items():
        for name in names if isinstance(names, list) else [names]:
            if name != target and target in ("system", "user", "assistant"):
                roles[str(name)] = target
    spec: dict[str, Any] = {"column": column, "role_key": role, "content_key": content}
    if roles:
        spec["roles"] = roles
    if chat[0] is not None:
        spec["chat_template"] = chat[0]
    notes = [
        Dropped(
            f"{where}.type",
            f"{item['type']}: each assistant turn becomes its own example with the turns before "
            "it as context (axolotl trains the whole conversation in one; issue 25, item 9)",
            APPROXIMATED,
        )
    ]
    if item.get("drop_system_message"):
        notes.append(
            Dropped(f"{where}.drop_system_message", "the spec keeps system turns", UNSUPPORTED)
        )
    if item.get("roles_to_train") not in (None, ["assistant"]):
        notes.append(
            Dropped(f"{where}.roles_to_train", "the spec trains assistant turns only", UNSUPPORTED)
        )
    if item.get("train_on_eos") not in (None, "turn"):
        notes.append(
            Dropped(f"{where}.train_on_eos", "the spec trains each turn's end token", UNSUPPORTED)
        )
    if item.get("chat_template"):
        notes.append(
            Dropped(
                f"{where}.chat_template",
                "a per-dataset template: the top-level one is used",
                UNSUPPORTED,
            )
        )
    return Entry({}, {"conversation": spec}, column=column, notes=notes)


def flat_preference(kind: str, where: str, method: str) -> Entry:
    family, _, strategy = kind.partition(".")
    table = FLAT_DPO if method == "dpo" else FLAT_KTO
    if family not in CHAT_FORMATS or strategy not in table:
        why = f"{kind} for {method}: rows whose chosen/rejected or completion are message lists, or a format the spec cannot write (issue 25, item 1)"
        return Entry({}, None, notes=[Dropped(f"{where}.type", why, UNSUPPORTED)])
    system, user, end = CHAT_FORMATS[family]
    column, with_system = table[strategy]
    prompt: dict[str, Any] = {"template": (system if with_system else "") + user % column}
    if method == "dpo":
        prompt |= {"completion": "{chosen}" + end, "rejected": "{rejected}" + end}
    else:
        prompt |= {"completion": "{completion}" + end, "label_field": "label"}
    reason = (
        f"{kind}: the prompt {'always' if with_system else 'never'} has a system turn "
        "(axolotl writes it when the row's system is not empty; issue 25, item 2)"
    )
    return Entry({}, prompt, notes=[Dropped(f"{where}.type", reason, APPROXIMATED)])
