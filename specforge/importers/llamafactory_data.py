"""LLaMA-Factory's `dataset: a,b` -> the spec's dataset and prompt, through the definitions in
dataset_info.json (file or Hub id, `formatting: alpaca|sharegpt`, `columns`, `tags`, `ranking`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specforge.core.errors import UsageError
from specforge.importers.common import Keys
from specforge.importers.result import APPROXIMATED, NO_EFFECT, UNSUPPORTED, Draft, Dropped

MEDIA = ("images", "videos", "audios")
ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output"}
SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human"}
SHAREGPT_TAGS |= {"assistant_tag": "gpt", "system_tag": "system"}
# The end-of-answer token of LLaMA-Factory's templates (`stop_words`, made the eos by
# `replace_eos`), for the templates of the model families the tokenizers' own templates match.
TEMPLATE_STOPS = {"llama3": "<|eot_id|>", "gemma": "<end_of_turn>", "gemma3": "<end_of_turn>"}
TEMPLATE_STOPS |= {name: "<|im_end|>" for name in ("qwen", "qwen2_vl", "qwen3", "qwen3_nothink")}
TEMPLATE_STOPS |= {"chatml": "<|im_end|>", "yi": "<|im_end|>", "phi": "<|end|>"}


def find_dataset_info(keys: Keys, config: Path, given: Path | None) -> Path:
    """dataset_info.json: --dataset-info, else `dataset_dir`, beside the config, or ./data."""
    if given is not None:
        if not given.is_file():
            raise UsageError(f"--dataset-info {given}: no such file")
        return given
    folders = [config.parent, Path("data")]
    if keys.given("dataset_dir"):
        folder = Path(str(keys.peek("dataset_dir")))
        folders = [folder, config.parent / folder, *folders]
    for folder in folders:
        if (folder / "dataset_info.json").is_file():
            return folder / "dataset_info.json"
    raise UsageError(
        f"{config}: LLaMA-Factory datasets are defined in dataset_info.json, found neither in "
        "dataset_dir, beside the config nor in ./data; pass --dataset-info PATH"
    )


def read_dataset_info(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UsageError(f"{path}: not a readable JSON file: {err}") from None
    if not isinstance(info, dict):
        raise UsageError(f"{path}: expected a JSON object of dataset definitions")
    return info


@dataclass
class Shape:
    """One dataset as the spec sees it: a source, a prompt, and its column names by role."""

    source: dict[str, Any]
    prompt: dict[str, Any] | None
    fields: dict[str, str] = field(default_factory=dict)  # role (prompt, query...) -> column
    media: list[str] = field(default_factory=list)
    notes: list[Dropped] = field(default_factory=list)


def local_path(folder: Path, name: str) -> str:
    """A dataset file as the spec names it: relative to the working directory when inside it."""
    path = (folder / name).resolve()
    try:
        return path.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def source_of(
    name: str, attr: dict[str, Any], folder: Path
) -> tuple[dict[str, Any], list[Dropped]]:
    where, notes = f"dataset ({name})", []
    if attr.get("hf_hub_url"):
        source: dict[str, Any] = {"path": str(attr["hf_hub_url"])}
    elif attr.get("file_name"):
        source = {"path": local_path(folder, str(attr["file_name"]))}
    else:
        hub = (
            "ModelScope/Modelers hub"
            if attr.get("ms_hub_url") or attr.get("om_hub_url")
            else "script or cloud file"
        )
        return {}, [
            Dropped(
                where, f"a {hub} dataset: the spec reads the HF Hub or local files", UNSUPPORTED
            )
        ]
    if attr.get("subset"):
        source["name"] = str(attr["subset"])
    if attr.get("split"):
        source["split"] = str(attr["split"])
    if attr.get("folder"):
        notes.append(Dropped(f"{where}.folder", "a folder inside the Hub repository", UNSUPPORTED))
    if attr.get("num_samples"):
        source["max_samples"] = int(attr["num_samples"])
        notes.append(
            Dropped(
                f"{where}.num_samples",
                "max_samples: sampled with the seed, never repeated",
                APPROXIMATED,
            )
        )
    return source, notes


def shape_of(
    name: str, attr: dict[str, Any], *, folder: Path, method: str, stop: str | None
) -> Shape:
    source, notes = source_of(name, attr, folder)
    columns = attr.get("columns") or {}
    media = [c for c in MEDIA if c in columns]
    formatting = attr.get("formatting", "alpaca")
    if formatting == "sharegpt":
        found = sharegpt(name, attr, columns, method=method)
    elif formatting == "alpaca":
        found = alpaca(name, attr, columns, method=method, stop=stop)
    else:
        why = f"formatting {formatting!r}: the importer reads alpaca and sharegpt"
        found = Shape({}, None, notes=[Dropped(f"dataset ({name})", why, UNSUPPORTED)])
    found.source, found.media, found.notes = source, media, notes + found.notes
    if not source:
        found.prompt = None
    return found


def alpaca(name: str, attr: dict, columns: dict, *, method: str, stop: str | None) -> Shape:
    where = f"dataset ({name})"
    cols = dict(ALPACA_COLUMNS) if "columns" not in attr else {}
    cols |= {k: str(v) for k, v in columns.items() if v}
    notes = []
    for role, why in (
        ("history", "earlier turns as a history column"),
        ("tools", "tool definitions"),
    ):
        if role in cols:
            notes.append(Dropped(f"{where}.columns.{role}", why, UNSUPPORTED))
    if method == "pt":  # raw text in the prompt column, every token trained
        text = cols.get("prompt", "instruction")
        return Shape({}, {"text_column": text}, fields={"prompt": text}, notes=notes)
    end = stop or ""
    instruction = "{" + cols.get("prompt", "instruction") + "}"
    system = [{"role": "system", "content": "{" + cols["system"] + "}"}] if "system" in cols else []
    prompt: dict[str, Any] = {"messages": [*system, {"role": "user", "content": instruction}]}
    if "query" in cols:  # LLaMA-Factory joins the query on a new line only where it is given
        query = "\n{" + cols["query"] + "}"
        prompt["messages"] = [*system, {"role": "user", "content": instruction + query}]
        prompt["if_empty"] = {cols["query"]: [*system, {"role": "user", "content": instruction}]}
    if attr.get("ranking"):
        prompt |= {
            "completion": "{" + cols.get("chosen", "chosen") + "}" + end,
            "rejected": "{" + cols.get("rejected", "rejected") + "}" + end,
        }
    else:
        prompt["completion"] = "{" + cols.get("response", "output") + "}" + end
    if "kto_tag" in cols:
        prompt["label_field"] = cols["kto_tag"]
    return Shape({}, prompt, fields=cols, notes=notes)


def sharegpt(name: str, attr: dict, columns: dict, *, method: str) -> Shape:
    where = f"dataset ({name})"
    notes = []
    preference = bool(attr.get("ranking")) or "kto_tag" in columns
    if method == "pt" or (method == "sft") == preference:
        why = {
            "pt": "continued pretraining reads alpaca's text column, not conversations",
            "sft": "preference rows (ranking/kto_tag) for sft",
        }.get(method, f"rows without ranking or kto_tag for {method}")
        return Shape({}, None, notes=[Dropped(where, why, UNSUPPORTED)])
    for role, why in (
        ("system", "a system column beside the conversation"),
        ("tools", "tool definitions"),
    ):
        if columns.get(role):
            notes.append(Dropped(f"{where}.columns.{role}", why, UNSUPPORTED))
    tags = {**SHAREGPT_TAGS, **(attr.get("tags") or {})}
    roles = {
        tags["user_tag"]: "user",
        tags["assistant_tag"]: "assistant",
        tags["system_tag"]: "system",
    }
    roles = {k: v for k, v in roles.items() if k != v}
    spec: dict[str, Any] = {"column": str(columns.get("messages", "conversations"))}
    spec |= {"role_key": tags["role_tag"], "content_key": tags["content_tag"]}
    if roles:
        spec["roles"] = roles
    if preference:
        return preference_conversation(spec, attr, columns, notes=notes)
    notes.append(
        Dropped(
            where,
            "sharegpt: each assistant turn becomes its own example with the turns before it as context (LLaMA-Factory trains every turn of the conversation in one; issue 25, item 9); observation/function turns are not read",
            APPROXIMATED,
        )
    )
    return Shape({}, {"conversation": spec}, fields={"messages": spec["column"]}, notes=notes)


def preference_conversation(
    spec: dict[str, Any], attr: dict, columns: dict, *, notes: list[Dropped]
) -> Shape:
    """sharegpt with ranking (chosen/rejected messages after the conversation) or a kto_tag
    (the conversation's last turn is the answer, the tag says whether it is desirable)."""
    prompt: dict[str, Any] = {"conversation": spec}
    fields = {"messages": spec["column"]}
    if attr.get("ranking"):
        answers = {k: str(columns.get(k, k)) for k in ("chosen", "rejected")}
        spec |= answers
        fields |= answers
    if "kto_tag" in columns:
        prompt["label_field"] = fields["kto_tag"] = str(columns["kto_tag"])
    return Shape({}, prompt, fields=fields, notes=notes)


def map_dataset(
    keys: Keys, draft: Draft, *, method: str, info_path: Path, stop: str | None
) -> list[str]:
    """The dataset and prompt sections; returns the media columns found (multimodal data)."""
    names = [n.strip() for n in str(keys.get("dataset", "")).split(",") if n.strip()]
    if not names:
        keys.missing("dataset", "no dataset to train on")
        return []
    info = read_dataset_info(info_path)
    shapes = []
    for name in names:
        if not isinstance(info.get(name), dict):
            keys.dropped.append(
                Dropped(f"dataset ({name})", f"not defined in {info_path}", UNSUPPORTED)
            )
            continue
        shapes.append(shape_of(name, info[name], folder=info_path.parent, method=method, stop=stop))
    media = [m for s in shapes for m in s.media]
    for shape in shapes:
        keys.dropped.extend(shape.notes)
    if media or not shapes or len(shapes) < len(names) or any(s.prompt is None for s in shapes):
        keys.drop("max_samples", NO_EFFECT, "its dataset is not carried over")
        return media
    if len({json.dumps(structure(s.prompt, s.fields)) for s in shapes}) > 1:
        keys.dropped.append(
            Dropped(
                "dataset",
                "datasets of different formats or columns: a spec has one prompt",
                UNSUPPORTED,
            )
        )
        keys.drop("max_samples", NO_EFFECT, "its dataset is not carried over")
        return media
    draft.data["prompt"] = shapes[0].prompt
    write_sources(keys, draft, shapes)
    map_eval_dataset(keys, draft, info, info_path)
    return media


def map_eval_dataset(keys: Keys, draft: Draft, info: dict[str, Any], info_path: Path) -> None:
    """eval_dataset: one dataset of dataset_info.json, evaluated instead of a split (its rows
    read with the training datasets' prompt)."""
    names = [n.strip() for n in str(keys.get("eval_dataset", "")).split(",") if n.strip()]
    if not names:
        return
    attr = info.get(names[0])
    if len(names) > 1 or not isinstance(attr, dict):
        keys.unsupported("eval_dataset", "one evaluation dataset defined in dataset_info.json")
        return
    source, notes = source_of(names[0], attr, info_path.parent)
    if not source or notes:
        keys.unsupported("eval_dataset", f"{names[0]}: a Hub id or local file, whole")
        return
    draft.set("dataset.eval_path", source["path"], f"eval_dataset: {names[0]}")
    if "split" in source:
        draft.set("dataset.eval_split", source["split"], f"eval_dataset: {names[0]}")


def structure(prompt: dict | None, fields: dict[str, str]) -> Any:
    """A prompt with its column names abstracted: two datasets that differ only in names mix."""
    text = json.dumps(prompt, sort_keys=True)
    for role, column in sorted(fields.items(), key=lambda kv: -len(kv[1])):
        text = text.replace("{" + column + "}", "{<" + role + ">}").replace(
            f'"{column}"', f'"<{role}>"'
        )
    return text


def write_sources(keys: Keys, draft: Draft, shapes: list[Shape]) -> None:
    limit = keys.get("max_samples")
    if limit is not None:
        keys.approximated(
            "max_samples",
            "max_samples per dataset, sampled with the seed (LLaMA-Factory takes the first N rows)",
        )
    if len(shapes) == 1:
        source = shapes[0].source
        for key, value in source.items():
            if key == "name":
                keys.dropped.append(
                    Dropped(
                        "dataset",
                        f"subset {value}: a single source cannot name a Hub config (the spec takes it per mixture source)",
                        UNSUPPORTED,
                    )
                )
            elif key != "max_samples":
                draft.set(f"dataset.{key}", value)
        if limit is not None or "max_samples" in source:
            draft.set("dataset.max_samples", int(limit or source["max_samples"]), "max_samples")
        return
    first = shapes[0].fields
    sources = []
    for shape in shapes:
        source = dict(shape.source)
        mapping = {first[r]: c for r, c in shape.fields.items() if r in first and first[r] != c}
        if mapping:
            source["columns"] = mapping
        if limit is not None:
            source["max_samples"] = int(limit)
        sources.append(source)
    draft.set(
        "dataset.sources", sources, "dataset: " + ", ".join(str(keys.peek("dataset")).split(","))
    )
