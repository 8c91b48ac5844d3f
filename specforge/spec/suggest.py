"""Did-you-mean and migration hints."""

from __future__ import annotations

import difflib

# Names users bring from the 2024 recipes, axolotl and TRL, and where they live in a spec now.
MIGRATIONS: dict[str, str] = {
    "evaluation_strategy": "`evaluation_strategy` was renamed `eval_strategy` (training.eval_strategy)",
    "torch_dtype": "`torch_dtype` is now `dtype` (model.dtype)",
    "max_seq_length": "`max_seq_length` was renamed `max_length` (training.max_length)",
    "fp16": "use `training.precision: fp16` (one enum, never two booleans)",
    "bf16": "use `training.precision: bf16` (one enum, never two booleans)",
    "tf32": "tf32 is not a spec setting; use `training.precision`",
    "lora_alpha": "write `lora.alpha`",
    "lora_dropout": "write `lora.dropout`",
    "lora_r": "write `lora.r`",
    "tokenizer_name": "tokenizers load from `model.name`",
    "base_model": "write `model.name`",
    "micro_batch_size": "write `training.per_device_train_batch_size`",
    "num_epochs": "write `training.num_train_epochs`",
    "sequence_len": "write `training.max_length`",
    "warmup_steps": "write `training.warmup_steps` (or `training.warmup_ratio`)",
    "additional_special_tokens": "write `tokenizer.special_tokens.additional`",
    "gradient_checkpointing_kwargs": "non-reentrant checkpointing is always used; set `training.gradient_checkpointing`",
    "output_dir": "outputs go to runs/<name>/<run-id>/; there is no output_dir key",
    "dataset_text_field": "write `prompt.template` and `prompt.completion`",
    "task_type": "specforge trains causal LMs (CAUSAL_LM); remove the key",
    "load_in_4bit": "write `model.quantization: {bits: 4}`",
    "load_in_8bit": "write `model.quantization: {bits: 8}`",
}

# Keys for things specforge does not do: the message says so, the hint says what it does instead.
UNSUPPORTED: dict[str, tuple[str, str]] = {
    "datasets": (
        "there is no `datasets` key",
        (
            "write `dataset:` (a mapping with `path` and `split`), or mix several files under "
            "`dataset.sources:` (a list of `{path, weight}`)"
        ),
    ),
    "deepspeed": (
        "DeepSpeed is not supported",
        "use `launch.strategy: ddp` or `fsdp` (LoRA adapters are small enough for either)",
    ),
    "peft": (
        "LoRA is the only adapter; there is no `peft` key",
        "configure it under `lora` (r, alpha, target_modules)",
    ),
    "adapter": (
        "LoRA is the only adapter; there is no `adapter` key",
        "configure it under `lora` (r, alpha, target_modules)",
    ),
    "full_finetune": (
        "there is no `full_finetune` key",
        "write `lora: null` to train every weight (full fine-tuning)",
    ),
}
# The same keys in a full fine-tune (`lora: null`), where the LoRA half of a hint is wrong.
UNSUPPORTED_FULL: dict[str, tuple[str, str]] = {
    "deepspeed": (
        "DeepSpeed is not supported",
        (
            "use `launch.strategy: fsdp` (it shards a full fine-tune's weights, gradients and "
            "optimizer states over the GPUs, as DeepSpeed ZeRO-3 does) or `ddp`"
        ),
    ),
}
# Keys whose mapping cannot be null, and why.
NOT_NULL: dict[str, tuple[str, str]] = {}


def unsupported(key: str, data) -> tuple[str, str] | None:
    """(message, hint) for a key naming something specforge does not do, given the spec's data;
    None for any other key."""
    full = isinstance(data, dict) and "lora" in data and data["lora"] is None
    if full and key in UNSUPPORTED_FULL:
        return UNSUPPORTED_FULL[key]
    return UNSUPPORTED.get(key)


def closest(word: str, choices: list[str]) -> str | None:
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return match[0] if match else None


def unknown_key_hints(key: str, allowed: list[str]) -> list[str]:
    hints = []
    if key in MIGRATIONS:
        hints.append(MIGRATIONS[key])
    else:
        guess = closest(key, allowed)
        if guess:
            hints.append(f"did you mean `{guess}`?")
    if allowed and not hints:
        hints.append("allowed keys here: " + ", ".join(sorted(allowed)))
    return hints
