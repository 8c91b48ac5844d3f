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
ALPACA_NO_INPUT = (  # axolotl's prompt for a row without input
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)
# Flat preference types: strategy -> (prompt column, writes the system turn).
FLAT_DPO = {"intel": ("question", True), "prompt_pairs": ("prompt", False), "icr": ("input", True)}
FLAT_KTO = {"argilla": ("instruction", False), "intel": ("question", False)}
FLAT_KTO |= {"prompt_pairs": ("prompt", False), "ultra": ("prompt", False)}
CHAT_TYPES = ("chat_template", "chat_template.default", "sharegpt")
# Preference types whose rows hold messages -> (prompt column, answers' columns), None: the
# entry's field_messages/field_chosen/field_rejected. The prompt column equal to chosen's: the
# prompt is that conversation's turns before its answer (argilla's and ultrafeedback's rows).
WHOLE = ("chosen", {"chosen": "chosen", "rejected": "rejected"})
MESSAGE_DPO: dict[str, tuple[str, dict[str, str]] | None] = {"chat_template.default": None}
MESSAGE_DPO |= {f"{f}.argilla_chat": WHOLE for f in ("chat_template", *CHAT_FORMATS)}
MESSAGE_DPO |= {f"{f}.ultra": WHOLE for f in CHAT_FORMATS}
MESSAGE_ORPO: dict[str, tuple[str, dict[str, str]] | None] = {
    "orpo.chat_template": WHOLE,
    "chat_template.argilla": WHOLE,
}
MESSAGE_KTO: dict[str, tuple[str, dict[str, str]] | None] = {
    f"{f}.argilla_chat": ("completion", {"completion": "completion"}) for f in CHAT_FORMATS
}
MESSAGE_TYPES = {"dpo": MESSAGE_DPO, "orpo": MESSAGE_ORPO, "kto": MESSAGE_KTO}
SOURCE_KEYS = ("path", "name", "data_files", "revision", "split")
HANDLED = {*SOURCE_KEYS, "type", "ds_type", "field_messages", "message_property_mappings"}
HANDLED |= {"message_field_role", "message_field_content", "roles", "roles_to_train"}
HANDLED |= {"train_on_eos", "drop_system_message", "chat_template"}
HANDLED |= {"field_chosen", "field_rejected"}


@dataclass
class Entry:
    """One `datasets:` entry as the spec sees it."""

    source: dict[str, Any]
    prompt: dict[str, Any] | None  # None: its type cannot be expressed
    column: str | None = None  # a conversation's column (mixtures map it per source)
    notes: list[Dropped] = field(default_factory=list)


def map_pretraining(keys: Keys, draft: Draft) -> bool:
    """pretraining_dataset: one Hub (or local) text source for method pretrain; True if mapped."""
    found = keys.peek("pretraining_dataset")
    if found is None:
        return False
    items = found if isinstance(found, list) else [found]
    if len(items) != 1 or not isinstance(items[0], dict) or "path" not in items[0]:
        keys.unsupported("pretraining_dataset", "one source with a path (a mixture of several)")
        return False
    item = items[0]
    keys.approximated(
        "pretraining_dataset",
        "streamed by axolotl; the spec reads the whole split before training (no streaming), "
        "and packs rows as axolotl's sample_packing does",
    )
    draft.set("method", "pretrain", "pretraining_dataset")
    draft.set("dataset.path", str(item["path"]), "pretraining_dataset[0].path")
    if item.get("name"):
        draft.set("dataset.config_name", str(item["name"]), "pretraining_dataset[0].name")
    if item.get("split"):
        draft.set("dataset.split", str(item["split"]), "pretraining_dataset[0].split")
    column = str(item.get("text_column") or "text")
    draft.data["prompt"] = {"text_column": column}
    draft.set("training.packing", True, "pretraining_dataset: rows packed")
    return True


def map_test_datasets(keys: Keys, draft: Draft) -> None:
    """test_datasets: one entry, evaluated instead of a split of the training data."""
    found = keys.peek("test_datasets")
    if found is None:
        return
    items = found if isinstance(found, list) else [found]
    if len(items) != 1 or not isinstance(items[0], dict) or "path" not in items[0]:
        keys.unsupported("test_datasets", "one evaluation dataset with a path (not several)")
        return
    keys.approximated(
        "test_datasets",
        "read with the training datasets' prompt (its own type is not mapped)",
    )
    draft.set("dataset.eval_path", str(items[0]["path"]), "test_datasets[0].path")
    if items[0].get("split"):
        draft.set("dataset.eval_split", str(items[0]["split"]), "test_datasets[0].split")


def map_datasets(keys: Keys, draft: Draft, method: str) -> None:
    size = float(keys.peek("val_set_size", 0))
    if size >= 1:
        keys.unsupported("val_set_size", f"{size:g} rows held out: the spec holds out a fraction")
    elif size > 0:
        draft.set("dataset.validation_fraction", size, "val_set_size")
    keys.used.add("val_set_size")
    map_test_datasets(keys, draft)
    if map_pretraining(keys, draft):
        keys.drop("datasets", NO_EFFECT, "pretraining_dataset is trained on instead")
        return
    entries = keys.get("datasets", [])
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
    elif method in MESSAGE_TYPES and kind in MESSAGE_TYPES[method]:
        found = message_preference(item, where, method=method, chat=chat)
    elif isinstance(kind, str) and "." in kind and method in ("dpo", "kto"):
        found = flat_preference(kind, where, method)
    else:
        why = "a preference format the importer does not read"
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
    """axolotl's alpaca prompter: its no-input preamble for a row whose input is empty
    (prompt.if_empty), the trainer appending the tokenizer's eos where the spec names none."""
    eos = draft.get("tokenizer.special_tokens.eos")
    prompt = {
        "template": ALPACA,
        "if_empty": {"input": ALPACA_NO_INPUT},
        "completion": "{output}" + (eos or ""),
    }
    return Entry({}, prompt)


def conversation_keys(item: dict, column: str, chat: tuple[str | None, str | None]) -> dict:
    """prompt.conversation's keys, role names and template from an entry's mappings."""
    sharegpt = item["type"] == "sharegpt"
    props = item.get("message_property_mappings") or {}
    role = props.get("role") or item.get("message_field_role") or ("from" if sharegpt else "role")
    content = (
        props.get("content")
        or item.get("message_field_content")
        or ("value" if sharegpt else "content")
    )
    roles = {"human": "user", "gpt": "assistant", "system": "system"} if sharegpt else {}
    if not item.get("roles"):  # axolotl's chat_template reads ShareGPT's names by default
        roles |= {"human": "user", "gpt": "assistant"}
    for target, names in (item.get("roles") or {}).items():
        for name in names if isinstance(names, list) else [names]:
            if name != target and target in ("system", "user", "assistant"):
                roles[str(name)] = target
    spec: dict[str, Any] = {"column": column, "role_key": role, "content_key": content}
    if roles:
        spec["roles"] = roles
    if chat[0] is not None:
        spec["chat_template"] = chat[0]
    if item.get("drop_system_message"):
        spec["drop_system"] = True
    return spec


def conversation(item: dict, where: str, chat: tuple[str | None, str | None]) -> Entry:
    sharegpt = item["type"] == "sharegpt"
    column = item.get("field_messages") or ("conversations" if sharegpt else "messages")
    spec = conversation_keys(item, column, chat)
    notes = [
        Dropped(
            f"{where}.type",
            f"{item['type']}: each assistant turn becomes its own example with the turns before "
            "it as context (axolotl trains the whole conversation in one; issue 25, item 9)",
            APPROXIMATED,
        )
    ]
    notes += turn_settings(item, where)
    return Entry({}, {"conversation": spec}, column=column, notes=notes)


def turn_settings(item: dict, where: str) -> list[Dropped]:
    """An entry's settings of which turns train, and its own template: not expressible."""
    notes = []
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
    return notes


def message_preference(
    item: dict, where: str, *, method: str, chat: tuple[str | None, str | None]
) -> Entry:
    """A dpo/orpo/kto type whose rows hold messages -> a conversation with answer columns."""
    kind = str(item["type"])
    family = kind.partition(".")[0]
    fixed = MESSAGE_TYPES[method][kind]
    if fixed is None:  # chat_template.default: the entry names its fields
        column = str(item.get("field_messages") or "messages")
        answers = {
            "chosen": str(item.get("field_chosen") or "chosen"),
            "rejected": str(item.get("field_rejected") or "rejected"),
        }
    else:
        column, answers = fixed
    if family == "chatml" and chat[0] is None:
        chat = (CHATML_JINJA, f"type: {kind}")
    spec = conversation_keys({**item, "type": "chat_template"}, column, chat) | answers
    prompt: dict[str, Any] = {"conversation": spec}
    if method == "kto":
        prompt["label_field"] = "label"
    notes = turn_settings(item, where)
    if fixed is not None:
        why = (
            f"{kind}: the prompt is {column}'s turns before its answer; a row's separate "
            "system column, where axolotl reads one, is left out (issue 25, item 2)"
        )
        if family == "llama3" and chat[0] is None:
            why += "; the tokenizer's own chat template (llama3's)"
        notes.append(Dropped(f"{where}.type", why, APPROXIMATED))
    return Entry({}, prompt, column=column, notes=notes)


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
