"""axolotl config -> spec: model, adapter, precision, tokens, method and training settings.
The `datasets:` list is mapped in axolotl_data."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from specforge.importers.axolotl_data import map_datasets
from specforge.importers.common import (
    Keys,
    imported,
    map_adam,
    map_deepspeed,
    map_optimizer,
    map_scheduler,
    spec_name,
)
from specforge.importers.result import (
    APPROXIMATED,
    IGNORED,
    NO_EFFECT,
    UNSUPPORTED,
    Draft,
    Dropped,
    ImportResult,
)

MULTIMODAL = ("processor_type", "image_size", "image_resize_algorithm", "is_multimodal")
METHODS = {"dpo": "dpo", "ipo": "dpo", "orpo": "orpo", "kto": "kto"}
BOOKKEEPING = {
    key: "output and logging bookkeeping"
    for key in [
        "output_dir",
        "dataset_prepared_path",
        "wandb_entity",
        "wandb_watch",
        "wandb_name",
        "wandb_log_model",
        "wandb_run_id",
        "wandb_mode",
        "hub_strategy",
        "hf_use_auth_token",
        "push_dataset_to_hub",
        "debug",
        "local_rank",
        "resume_from_checkpoint",
        "auto_resume_from_checkpoints",
        "save_safetensors",
        "loss_watchdog_threshold",
        "loss_watchdog_patience",
        "eval_table_size",
        "eval_max_new_tokens",
        "eval_table_max_new_tokens",
        "dataset_processes",
        "dataset_num_proc",
        "dataloader_num_workers",
        "dataloader_pin_memory",
        "dataloader_prefetch_factor",
        "save_first_step",
        "strict",
        "logging_dir",
        "include_tokens_per_second",
        "mlflow_experiment_name",
        "use_wandb",
        "gc_steps",
        "profiler_steps",
        "save_only_model",
    ]
}
NO_EFFECT_KEYS = {
    "model_type": "specforge loads AutoModelForCausalLM, which picks the same class",
    "tokenizer_type": "specforge loads AutoTokenizer, which picks the same class",
    "is_mistral_derived_model": "a hint for axolotl's patches; nothing to set here",
    "is_llama_derived_model": "a hint for axolotl's patches; nothing to set here",
    "is_qwen_derived_model": "a hint for axolotl's patches; nothing to set here",
    "is_falcon_derived_model": "a hint for axolotl's patches; nothing to set here",
    "pad_to_sequence_len": "padding to a fixed length changes speed, not the loss",
    "eval_sample_packing": "how evaluation batches are packed; the loss is the same",
    "remove_unused_columns": "the generated script keeps the columns it needs",
    "ddp_find_unused_parameters": "a DDP setting for axolotl's wrapping",
    "ddp_timeout": "the collective timeout; the result is the same",
    "tokenizer_use_fast": "transformers loads the fast tokenizer",
    "tokenizer_legacy": "a sentencepiece compatibility switch; the fast tokenizer is used",
    "flash_attn_cross_entropy": "a fused kernel: speed, not the result",
    "flash_attn_rms_norm": "a fused kernel: speed, not the result",
    "low_cpu_mem_usage": "how weights load; the result is the same",
    "shuffle_merged_datasets": "the mixture is shuffled with the seed",
}


def import_axolotl(data: dict[str, Any], path: Path) -> ImportResult:
    """Map an axolotl config onto a spec; every key is carried or reported."""
    keys, draft, name = Keys(data, "axolotl"), Draft(), spec_name(path)
    shown = [k for k in MULTIMODAL if keys.given(k)]
    if shown:
        why = f"multimodal (vision-language) training is out of scope ({', '.join(shown)})"
        return ImportResult.refusal("axolotl", path, why)
    draft.set("spec_version", 1)
    draft.set("name", name)
    draft.set("description", f"Imported from axolotl config {path.name}")
    method = map_method(keys, draft)
    map_model(keys, draft)
    map_adapter(keys, draft)
    map_tokens(keys, draft)
    map_datasets(keys, draft, method)
    map_preference(keys, draft, method)
    map_training(keys, draft, method)
    map_schedule(keys, draft)
    map_eval_save(keys, draft)
    map_launch(keys, draft, path)
    skipped = {"bookkeeping": BOOKKEEPING, "no_effect": NO_EFFECT_KEYS}
    return imported("axolotl", path, name, draft, keys, skipped=skipped)


def map_method(keys: Keys, draft: Draft) -> str:
    rl = keys.get("rl")
    if rl is None:
        return "sft"
    if rl not in METHODS:
        keys.unsupported("rl", f"rl: {rl} has no spec method (sft, dpo, orpo, kto)")
        return "sft"
    draft.set("method", METHODS[rl], None if rl == METHODS[rl] else f"rl: {rl}")
    return METHODS[rl]


def precision(keys: Keys) -> tuple[str, str, str]:
    """(training.precision, model.dtype, why): axolotl loads the weights in the dtype it trains in."""
    bf16, fp16 = keys.get("bf16"), keys.get("fp16")
    if bf16 in (True, "auto", "full"):
        return "bf16", "bfloat16", f"bf16: {bf16}"
    if fp16 is True:
        return "fp16", "float16", "fp16: true"
    for key, prec, dtype in (("float16", "fp16", "float16"), ("bfloat16", "bf16", "bfloat16")):
        if keys.get(key) is True:  # half weights trained without autocast
            keys.approximated(key, f"the weights in {dtype}, trained with {prec} autocast")
            return prec, dtype, f"{key}: true"
    return "fp32", "float32", "neither bf16 nor fp16"


def map_model(keys: Keys, draft: Draft) -> None:
    base = keys.get("base_model")
    if base is None:
        keys.missing("base_model", "no base model")
        base = "unknown"
    draft.set("model.name", str(base), "base_model")
    if keys.given("revision_of_model"):
        draft.set("model.revision", str(keys.get("revision_of_model")), "revision_of_model")
    for key in ("base_model_config", "tokenizer_config"):
        if keys.get(key) not in (None, base):
            keys.unsupported(key, "a config or tokenizer other than the base model's")
    prec, dtype, why = precision(keys)
    full = keys.peek("adapter") is None
    if prec == "fp16" and full:  # SF032: fp16 gradients on float16 weights
        dtype, why = "float32", "fp16 full fine-tuning: float32 weights, fp16 autocast"
    draft.set("model.dtype", dtype, why)
    map_attention(keys, draft)
    map_quantization(keys, draft, dtype, full)
    if keys.get("trust_remote_code") is True:
        draft.set("model.trust_remote_code", True)
    overrides = keys.peek("model_config")
    if isinstance(overrides, dict) and all(
        isinstance(v, (bool, int, float, str)) for v in overrides.values()
    ):
        draft.set("model.config_overrides", keys.get("model_config"), "model_config")
    elif overrides is not None:
        keys.unsupported("model_config", "config values that are not single numbers or strings")
    draft.set("training.precision", prec, why)


def map_attention(keys: Keys, draft: Draft) -> None:
    chosen = keys.get("attn_implementation")
    for key, kernel in (
        ("flash_attention", "flash_attention_2"),
        ("flex_attention", "flex_attention"),
        ("sdp_attention", "sdpa"),
        ("eager_attention", "eager"),
    ):
        if keys.get(key) is True and chosen is None:
            draft.set("model.attn_implementation", kernel, f"{key}: true")
    if chosen in ("flash_attention_2", "flex_attention", "sdpa", "eager"):
        draft.set("model.attn_implementation", chosen)
    elif chosen is not None:
        keys.unsupported("attn_implementation", f"{chosen} is not a kernel the spec offers")
    if keys.peek("xformers_attention") is True:
        keys.approximated("xformers_attention", "sdpa: the same attention, another kernel")
    if keys.peek("s2_attention") is True:
        keys.unsupported("s2_attention", "shifted sparse attention changes what the model sees")


def map_quantization(keys: Keys, draft: Draft, dtype: str, full: bool) -> None:
    bits = 4 if keys.get("load_in_4bit") is True else 8 if keys.get("load_in_8bit") is True else 0
    if keys.given("gptq"):
        map_gptq(keys, draft, full)
    if not bits:
        return
    key = f"load_in_{bits}bit"
    if full:
        keys.unsupported(key, "k-bit weights train only a LoRA adapter (SF032)")
        return
    bnb = keys.get("bnb_config_kwargs", {})
    quant: dict[str, Any] = {"bits": bits}
    if bits == 4:
        quant |= {
            "quant_type": bnb.get("bnb_4bit_quant_type", "nf4"),
            "double_quant": bnb.get("bnb_4bit_use_double_quant", True),
            "compute_dtype": dtype,
        }
    draft.set("model.quantization", quant, f"{key}: true (bitsandbytes, axolotl's settings)")


def map_gptq(keys: Keys, draft: Draft, full: bool) -> None:
    """`gptq: true`: the base is a GPTQ checkpoint, loaded as its config.json says (both tools
    read the bits from there; the spec declares them for explain: 4, axolotl's only GPTQ)."""
    if keys.get("gptq") is not True:
        return
    if full:
        keys.unsupported("gptq", "packed GPTQ weights train only a LoRA adapter (SF082)")
        return
    draft.set("model.prequantized", {"method": "gptq", "bits": 4}, "gptq: true (4-bit)")
    keys.drop(
        "gptq_disable_exllama",
        NO_EFFECT,
        "exllama kernels had no backward; gptqmodel picks a kernel that trains itself",
    )


LORA_EXTRAS: tuple[str, ...] = ("lora_modules_to_save", "loraplus_lr_ratio")
LORA_EXTRAS += ("loraplus_lr_embedding", "peft_init_lora_weights")
LORA_INITS = ("gaussian", "pissa", "olora")


def map_adapter(keys: Keys, draft: Draft) -> None:
    for key in [k for k in keys.data if str(k).startswith("relora")]:
        keys.unsupported(key, "ReLoRA (merging the adapter and restarting it) is out of scope")
    adapter = keys.get("adapter")
    if adapter is None:
        draft.set("lora", None, "no adapter: full fine-tuning")
        for key in ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", *LORA_EXTRAS):
            keys.drop(key, NO_EFFECT, "no adapter is trained (full fine-tuning)")
        patterns = keys.get("unfrozen_parameters")
        if patterns:
            draft.set("training.unfrozen_parameters", [str(p) for p in patterns])
        return
    keys.unsupported(
        "unfrozen_parameters", "unfrozen weights beside an adapter: use lora_modules_to_save"
    )
    if adapter not in ("lora", "qlora"):
        keys.unsupported("adapter", f"adapter {adapter!r}: the spec trains LoRA or full weights")
        return
    r = keys.get("lora_r", 8)
    draft.set("lora.r", r, "lora_r")
    draft.set(
        "lora.alpha",
        keys.get("lora_alpha", r),
        "lora_alpha" if keys.given("lora_alpha") else "lora_alpha unset: r",
    )
    dropout_note = (
        "lora_dropout" if keys.given("lora_dropout") else "lora_dropout unset: peft's default"
    )
    draft.set("lora.dropout", float(keys.get("lora_dropout", 0.0)), dropout_note)
    map_targets(keys, draft)
    for key, field in (("peft_use_dora", "use_dora"), ("peft_use_rslora", "use_rslora")):
        if keys.get(key) is True:
            draft.set(f"lora.{field}", True, key)
    map_lora_extras(keys, draft)
    if keys.peek("lora_fan_in_fan_out") is True:
        keys.unsupported("lora_fan_in_fan_out", "Conv1D-style weights")
    if keys.given("lora_model_dir"):
        keys.unsupported(
            "lora_model_dir", "start from an adapter folder: model.adapter takes a specforge run"
        )


def map_lora_extras(keys: Keys, draft: Draft) -> None:
    """Modules trained whole, LoRA+, and how the adapter starts."""
    saved = keys.get("lora_modules_to_save")
    if saved:
        draft.set("lora.modules_to_save", [str(m) for m in saved], "lora_modules_to_save")
    for key in ("loraplus_lr_ratio", "loraplus_lr_embedding"):
        if keys.given(key):
            draft.set(f"lora.{key}", float(keys.get(key)), key)
    init = keys.peek("peft_init_lora_weights")
    if init is None or init is True:
        keys.used.add("peft_init_lora_weights")
    elif init in LORA_INITS or re.fullmatch(r"pissa_niter_[1-9][0-9]*", str(init)):
        draft.set("lora.init_lora_weights", keys.get("peft_init_lora_weights"))
    else:
        keys.unsupported(
            "peft_init_lora_weights",
            f"{init}: the spec starts LoRA as peft's default, gaussian, pissa or olora (eva "
            "needs activations from a data loader before training, loftq a quantized base)",
        )


def map_targets(keys: Keys, draft: Draft) -> None:
    targets, linear = keys.get("lora_target_modules"), keys.get("lora_target_linear")
    if linear is True:
        note = "lora_target_linear: true" + (" (covers lora_target_modules)" if targets else "")
        draft.set("lora.target_modules", "all-linear", note)
    elif isinstance(targets, list):
        draft.set("lora.target_modules", [str(t) for t in targets], "lora_target_modules")
    elif isinstance(targets, str):
        keys.unsupported("lora_target_modules", "a regular expression; the spec takes module names")
    else:
        draft.set(
            "lora.target_modules",
            ["q_proj", "v_proj"],
            "unset: peft's default for llama-like models",
        )


def map_tokens(keys: Keys, draft: Draft) -> None:
    special = keys.get("special_tokens", {})
    for name in ("bos", "eos", "pad"):
        if special.get(f"{name}_token"):
            draft.set(
                f"tokenizer.special_tokens.{name}",
                str(special[f"{name}_token"]),
                f"special_tokens.{name}_token",
            )
    if special.get("unk_token"):
        reason = "the tokenizer keeps its own unk token"
        keys.dropped.append(Dropped("special_tokens.unk_token", reason, APPROXIMATED))
    extra = [str(t) for t in keys.get("tokens", [])]
    if extra:
        draft.set("tokenizer.special_tokens.additional", extra, "tokens")


def map_preference(keys: Keys, draft: Draft, method: str) -> None:
    beta_keys = {"dpo": ("rl_beta", "dpo_beta"), "kto": ("rl_beta",), "orpo": ("orpo_alpha",)}
    if method == "sft":
        for key in ("rl_beta", "dpo_beta", "orpo_alpha", "kto_desirable_weight"):
            keys.drop(key, NO_EFFECT, "a preference setting; this is SFT")
        return
    beta = 0.1
    for key in beta_keys[method]:
        if keys.given(key):
            beta = float(keys.get(key))
            draft.set("preference.beta", beta, key)
    if draft.get("preference.beta") is None:
        draft.set("preference.beta", beta, "unset: TRL's default")
    if keys.peek("rl") == "ipo":
        draft.set("preference.loss_type", "ipo", "rl: ipo")
    if method == "dpo" and keys.given("rpo_alpha"):
        draft.set("preference.sft_weight", float(keys.get("rpo_alpha")), "rpo_alpha (RPO)")
    if method == "kto":
        for key, field in (
            ("kto_desirable_weight", "desirable_weight"),
            ("kto_undesirable_weight", "undesirable_weight"),
        ):
            if keys.given(key):
                draft.set(f"preference.{field}", float(keys.get(key)), key)
    if keys.peek("dpo_label_smoothing") not in (None, 0, 0.0):
        keys.unsupported("dpo_label_smoothing", "conservative DPO's label smoothing")


def map_training(keys: Keys, draft: Draft, method: str) -> None:
    micro = keys.get("micro_batch_size", 1)
    draft.set("training.per_device_train_batch_size", micro, "micro_batch_size")
    draft.set(
        "training.per_device_eval_batch_size", keys.get("eval_batch_size", micro), "eval_batch_size"
    )
    accumulation = keys.get("gradient_accumulation_steps")
    if accumulation is None and keys.given("batch_size"):
        accumulation = max(1, int(keys.get("batch_size")) // micro)
        keys.approximated(
            "batch_size", "gradient_accumulation_steps = batch_size / micro_batch_size on one GPU"
        )
    draft.set("training.gradient_accumulation_steps", accumulation or 1)
    draft.set("training.num_train_epochs", float(keys.get("num_epochs", 1)), "num_epochs")
    if keys.given("max_steps"):
        draft.set("training.max_steps", keys.get("max_steps"))
    draft.set("training.learning_rate", float(keys.get("learning_rate", 5e-5)))
    draft.set("training.weight_decay", float(keys.get("weight_decay", 0.0)))
    draft.set("training.max_grad_norm", float(keys.get("max_grad_norm", 1.0)))
    map_optimizer(keys, draft, key="optimizer", default="adamw_torch")
    map_adam(
        keys,
        draft,
        {"adam_beta1": "adam_beta1", "adam_beta2": "adam_beta2", "adam_epsilon": "adam_epsilon"},
    )
    # axolotl's key is adam_epsilon; its examples' adam_eps is no setting (strict: false lets
    # it through, and the optimizer keeps transformers' epsilon)
    keys.drop("adam_eps", NO_EFFECT, "not an axolotl setting (adam_epsilon is); axolotl ignores it")
    checkpointing = keys.get("gradient_checkpointing", False)
    draft.set(
        "training.gradient_checkpointing",
        bool(checkpointing),
        None if checkpointing in (True, False) else f"gradient_checkpointing: {checkpointing}",
    )
    if keys.get("gradient_checkpointing_kwargs", {}).get("use_reentrant") is True:
        keys.approximated(
            "gradient_checkpointing_kwargs",
            "use_reentrant: true; specforge recomputes non-reentrant (same gradients)",
        )
    draft.set("training.max_length", keys.get("sequence_len", 2048), "sequence_len")
    map_packing(keys, draft, method)
    draft.set("training.logging_steps", keys.get("logging_steps", 10))
    if keys.given("seed"):
        draft.set("seed", keys.get("seed"))
    map_small_switches(keys)
    map_tf32_early_stopping(keys, draft)
    map_trackers(keys, draft)


def map_packing(keys: Keys, draft: Draft, method: str) -> None:
    if keys.peek("sample_packing") is not True:
        keys.used.add("sample_packing")
        return
    if method != "sft":
        keys.unsupported("sample_packing", f"{method} batches are padded (trl)")
        return
    keys.get("sample_packing")
    draft.set(
        "training.packing",
        True,
        "sample_packing: multipack bins rows into sequence_len, attention kept per row "
        "(TRL's packing with position ids, the same under flash attention)",
    )


def map_small_switches(keys: Keys) -> None:
    """Settings with no spec key whose effect is speed, order or numerics, or off."""
    for key, value, kind, reason in (
        (
            "train_on_inputs",
            True,
            UNSUPPORTED,
            "loss on the prompt too: the spec trains on completions",
        ),
        (
            "group_by_length",
            True,
            APPROXIMATED,
            "rows are batched in seeded random order, not by length",
        ),
        ("torch_compile", True, APPROXIMATED, "not compiled: the same math, slower"),
    ):
        found = keys.peek(key)
        if found == value:
            keys.drop(key, kind, reason)
        elif found is not None:
            keys.drop(key, NO_EFFECT, "the spec's behaviour already")


def map_tf32_early_stopping(keys: Keys, draft: Draft) -> None:
    """tf32 (true or false: axolotl passes either to transformers) and early stopping."""
    tf32 = keys.get("tf32")
    if isinstance(tf32, bool):
        draft.set("training.tf32", tf32)
    patience = keys.get("early_stopping_patience")
    if patience is not None:
        draft.set("training.early_stopping_patience", int(patience))


def map_trackers(keys: Keys, draft: Draft) -> None:
    trackers = []
    if keys.given("wandb_project"):
        keys.get("wandb_project")
        trackers.append("wandb")
    if keys.get("use_tensorboard") is True:
        trackers.append("tensorboard")
    if keys.given("mlflow_tracking_uri"):
        keys.drop(
            "mlflow_tracking_uri",
            IGNORED,
            "set MLFLOW_TRACKING_URI in the environment",
        )
        trackers.append("mlflow")
    if trackers:
        draft.set(
            "training.report_to", trackers, "wandb_project/use_tensorboard/mlflow_tracking_uri"
        )
    if keys.given("hub_model_id"):
        draft.set("training.push_to_hub", True, "hub_model_id")
        draft.set("training.hub_model_id", str(keys.get("hub_model_id")))


def map_schedule(keys: Keys, draft: Draft) -> None:
    map_scheduler(keys, draft, key="lr_scheduler", default="cosine")
    kwargs = keys.get("lr_scheduler_kwargs", {})
    if keys.given("cosine_min_lr_ratio"):
        draft.set("training.lr_scheduler_type", "cosine_with_min_lr", "cosine_min_lr_ratio")
        kwargs = {**kwargs, "min_lr_rate": float(keys.get("cosine_min_lr_ratio"))}
    if kwargs:
        draft.set("training.lr_scheduler_kwargs", kwargs)
    if keys.given("warmup_steps"):
        draft.set("training.warmup_steps", int(keys.get("warmup_steps")))
    elif keys.given("warmup_ratio"):
        draft.set("training.warmup_ratio", float(keys.get("warmup_ratio")))
    else:
        draft.set(
            "training.warmup_ratio",
            0.03,
            "unset: axolotl warms up for 3 % of the steps (at most 100)",
        )


def map_eval_save(keys: Keys, draft: Draft) -> None:
    held_out = any(
        draft.get(key) is not None for key in ("dataset.validation_fraction", "dataset.eval_path")
    )
    if held_out and keys.given("eval_steps"):
        draft.set("training.eval_strategy", "steps", "eval_steps")
        draft.set("training.eval_steps", int(keys.get("eval_steps")))
    elif held_out:
        per_epoch = keys.peek("evals_per_epoch")
        keys.used.add("evals_per_epoch")
        if per_epoch not in (None, 1):
            keys.approximated(
                "evals_per_epoch",
                f"{per_epoch} evaluations an epoch: one an epoch (the spec counts steps or epochs)",
            )
        draft.set(
            "training.eval_strategy",
            "epoch",
            "evals_per_epoch" if per_epoch else "unset: once an epoch",
        )
    else:
        for key in ("evals_per_epoch", "eval_steps", "eval_strategy"):
            keys.drop(key, NO_EFFECT, "no validation rows (val_set_size is 0, no test_datasets)")
    if keys.given("save_steps"):
        draft.set("training.save_strategy", "steps", "save_steps")
        draft.set("training.save_steps", int(keys.get("save_steps")))
    elif keys.given("saves_per_epoch"):
        per_epoch = keys.get("saves_per_epoch")
        if per_epoch != 1:
            keys.approximated("saves_per_epoch", f"{per_epoch} checkpoints an epoch: one an epoch")
        draft.set("training.save_strategy", "epoch", "saves_per_epoch")
    if keys.given("save_total_limit"):
        draft.set("training.save_total_limit", int(keys.get("save_total_limit")))


FSDP_NO_EFFECT = [
    "fsdp_limit_all_gathers",
    "fsdp_sync_module_states",
    "fsdp_use_orig_params",
    "fsdp_cpu_ram_efficient_loading",
    "fsdp_transformer_layer_cls_to_wrap",
    "fsdp_state_dict_type",
    "limit_all_gathers",
    "sync_module_states",
    "use_orig_params",
    "cpu_ram_efficient_loading",
    "transformer_layer_cls_to_wrap",
    "state_dict_type",
    "fsdp_version",
]


def map_launch(keys: Keys, draft: Draft, path: Path) -> None:
    map_deepspeed(keys, draft, key="deepspeed", config=path)
    fsdp, config = keys.get("fsdp", []), keys.get("fsdp_config", {})
    if not fsdp and not config:
        return
    quantization = draft.get("model.quantization")
    if quantization is not None and quantization.get("bits") != 4:  # SF015
        keys.unsupported("fsdp", "8-bit QLoRA under FSDP: bitsandbytes cannot shard it")
        keys.drop("fsdp_config", UNSUPPORTED, "see fsdp")
        return
    draft.set("launch.strategy", "fsdp", "fsdp / fsdp_config (FSDP2, full shard)")
    draft.set(
        "launch.nproc_per_node", 1, "set to the GPU count (accelerate took it from its launcher)"
    )
    for key, value in config.items():
        short = key.removeprefix("fsdp_")
        if short == "offload_params":
            draft.set("launch.fsdp.cpu_offload", bool(value), f"fsdp_config.{key}")
        elif short == "activation_checkpointing":
            draft.set("launch.fsdp.activation_checkpointing", bool(value), f"fsdp_config.{key}")
            if value:  # SF015: one recomputation, not two
                draft.set(
                    "training.gradient_checkpointing",
                    False,
                    "FSDP's activation checkpointing instead",
                )
        elif short == "auto_wrap_policy":
            policy = {"TRANSFORMER_BASED_WRAP": "transformer_layer", "SIZE_BASED_WRAP": "size"}
            if value in policy:
                draft.set("launch.fsdp.wrap_policy", policy[value], f"fsdp_config.{key}")
            else:
                keys.dropped.append(
                    Dropped(f"fsdp_config.{key}", f"{value}: not a spec wrap policy", UNSUPPORTED)
                )
        elif short == "sharding_strategy" and value not in ("FULL_SHARD", 1):
            keys.dropped.append(
                Dropped(
                    f"fsdp_config.{key}", f"{value}: the spec shards fully (FSDP2)", APPROXIMATED
                )
            )
        elif short == "reshard_after_forward" and value is False:
            keys.dropped.append(
                Dropped(
                    f"fsdp_config.{key}",
                    "the spec reshards after forward (ZeRO-3 style)",
                    APPROXIMATED,
                )
            )
        elif short in FSDP_NO_EFFECT or short in ("sharding_strategy", "reshard_after_forward"):
            keys.dropped.append(
                Dropped(
                    f"fsdp_config.{key}",
                    "specforge's FSDP2 setup decides it; same result",
                    NO_EFFECT,
                )
            )
        else:
            keys.dropped.append(Dropped(f"fsdp_config.{key}", "no spec equivalent", UNSUPPORTED))
