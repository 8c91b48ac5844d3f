"""LLaMA-Factory config -> spec: stage, model, finetuning type, precision, training settings.
Datasets (through dataset_info.json) are mapped in llamafactory_data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from specforge.importers.common import (
    Keys,
    imported,
    map_adam,
    map_deepspeed,
    map_optimizer,
    map_scheduler,
    spec_name,
)
from specforge.importers.llamafactory_data import TEMPLATE_STOPS, find_dataset_info, map_dataset
from specforge.importers.result import (
    APPROXIMATED,
    IGNORED,
    NO_EFFECT,
    UNSUPPORTED,
    Draft,
    Dropped,
    ImportResult,
)

MULTIMODAL = [
    "image_max_pixels",
    "image_min_pixels",
    "video_max_pixels",
    "video_min_pixels",
    "video_fps",
    "video_maxlen",
    "audio_sampling_rate",
    "freeze_vision_tower",
    "freeze_multi_modal_projector",
    "train_mm_proj_only",
    "image_resolution",
    "video_resolution",
]
DPO_LOSSES = {"sigmoid": "sigmoid", "hinge": "hinge", "ipo": "ipo"}
BOOKKEEPING = {
    key: "output and logging bookkeeping"
    for key in [
        "output_dir",
        "logging_dir",
        "plot_loss",
        "overwrite_output_dir",
        "save_only_model",
        "overwrite_cache",
        "preprocessing_num_workers",
        "preprocessing_batch_size",
        "dataloader_num_workers",
        "dataloader_pin_memory",
        "tokenized_path",
        "cache_dir",
        "hf_hub_token",
        "ms_hub_token",
        "om_hub_token",
        "run_name",
        "resume_from_checkpoint",
        "include_num_input_tokens_seen",
        "logging_first_step",
        "include_effective_tokens_per_second",
        "print_param_status",
        "disable_tqdm",
        "save_safetensors",
        "dataset_dir",
    ]
}
NO_EFFECT_KEYS = {
    "ddp_timeout": "the collective timeout; the result is the same",
    "ddp_find_unused_parameters": "a DDP setting for LLaMA-Factory's wrapping",
    "low_cpu_mem_usage": "how weights load; the result is the same",
    "use_fast_tokenizer": "transformers loads the fast tokenizer",
}


def import_llamafactory(
    data: dict[str, Any], path: Path, dataset_info: Path | None
) -> ImportResult:
    """Map a LLaMA-Factory config onto a spec; every key is carried or reported."""
    keys, draft, name = Keys(data, "LLaMA-Factory"), Draft(), spec_name(path)
    shown = [k for k in MULTIMODAL if keys.given(k)]
    if shown:
        why = f"multimodal (vision-language) training is out of scope ({', '.join(shown)})"
        return ImportResult.refusal("llamafactory", path, why)
    info = find_dataset_info(keys, path, dataset_info)
    draft.set("spec_version", 1)
    draft.set("name", name)
    draft.set("description", f"Imported from LLaMA-Factory config {path.name}")
    method = map_stage(keys, draft)
    full = map_finetuning(keys, draft)
    map_model(keys, draft, full)
    stop = map_template(keys, draft, method)
    media = map_dataset(keys, draft, method=method, info_path=info, stop=stop)
    if media:
        why = f"multimodal (vision-language) training is out of scope (dataset columns {', '.join(media)})"
        return ImportResult.refusal("llamafactory", path, why)
    map_preference(keys, draft, method)
    map_training(keys, draft)
    map_eval_save(keys, draft)
    map_deepspeed(keys, draft, key="deepspeed", config=path)
    skipped = {"bookkeeping": BOOKKEEPING, "no_effect": NO_EFFECT_KEYS}
    return imported(
        "llamafactory",
        path,
        name,
        draft,
        keys,
        skipped=skipped,
        notes=[f"datasets defined by {info}"],
    )


def map_stage(keys: Keys, draft: Draft) -> str:
    stage = keys.get("stage", "sft")
    if keys.get("do_train", True) is not True:
        keys.unsupported("do_train", "not a training run (evaluation or prediction only)")
    if stage == "pt":
        draft.set("method", "pretrain", "stage: pt")
        # LLaMA-Factory joins pt's texts (each ending in eos) and cuts cutoff_len blocks
        draft.set("training.packing", True, "stage: pt (packed by default)")
        draft.set(
            "training.packing_strategy",
            "wrapped",
            "stage: pt: texts joined and cut into cutoff_len blocks, as LLaMA-Factory does",
        )
        return "pt"
    if stage == "rm":
        draft.set("method", "reward", "stage: rm")
        return "reward"
    if stage == "ppo":
        keys.unsupported("stage", "ppo: online RL with a reward model has no spec method")
        return "sft"
    if stage == "kto":
        draft.set("method", "kto", "stage: kto")
        return "kto"
    if stage == "dpo":
        loss = keys.peek("pref_loss", "sigmoid")
        if loss == "orpo":
            draft.set("method", "orpo", "stage: dpo with pref_loss: orpo")
            return "orpo"
        draft.set("method", "dpo", "stage: dpo")
        return "dpo"
    if stage != "sft":
        keys.unsupported("stage", f"{stage}: no spec method")
    return "sft"


def map_finetuning(keys: Keys, draft: Draft) -> bool:
    """The lora section (or null for full); True for full fine-tuning."""
    kind = keys.get("finetuning_type", "lora")
    lora_keys = ("lora_rank", "lora_alpha", "lora_dropout", "lora_target", *LORA_EXTRAS)
    if kind == "full":
        draft.set("lora", None, "finetuning_type: full")
        for key in lora_keys:
            keys.drop(key, NO_EFFECT, "no adapter is trained (full fine-tuning)")
        return True
    if kind == "freeze":
        keys.unsupported(
            "finetuning_type",
            "freeze: `lora: null` with training.unfrozen_parameters naming the layers it trains "
            "(freeze_trainable_layers counts from the end, which needs the model's layer count)",
        )
        return False
    if kind != "lora":
        keys.unsupported("finetuning_type", f"{kind}: the spec trains LoRA or all weights")
        return False
    rank = int(keys.get("lora_rank", 8))
    draft.set(
        "lora.r",
        rank,
        "lora_rank" if keys.given("lora_rank") else "lora_rank unset: LLaMA-Factory's default",
    )
    alpha = keys.get("lora_alpha")
    draft.set(
        "lora.alpha",
        int(alpha or rank * 2),
        "lora_alpha" if alpha else "lora_alpha unset: 2 x lora_rank, LLaMA-Factory's default",
    )
    dropout_note = (
        "lora_dropout"
        if keys.given("lora_dropout")
        else "lora_dropout unset: LLaMA-Factory's default"
    )
    draft.set("lora.dropout", float(keys.get("lora_dropout", 0.0)), dropout_note)
    target = str(keys.get("lora_target", "all"))
    if target == "all":
        draft.set("lora.target_modules", "all-linear", "lora_target: all")
    else:
        draft.set("lora.target_modules", [t.strip() for t in target.split(",")], "lora_target")
    for key in ("use_dora", "use_rslora"):
        if keys.get(key) is True:
            draft.set(f"lora.{key}", True)
    map_lora_extras(keys, draft)
    keys.unsupported(
        "adapter_name_or_path", "start from an adapter folder: model.adapter takes a specforge run"
    )
    return False


LORA_EXTRAS: tuple[str, ...] = ("additional_target", "loraplus_lr_ratio", "pissa_init")
LORA_EXTRAS += ("loraplus_lr_embedding",)
LORA_EXTRAS += ("pissa_iter", "pissa_convert")


def map_lora_extras(keys: Keys, draft: Draft) -> None:
    """Modules trained whole (additional_target), LoRA+, and a PiSSA start."""
    extra = keys.get("additional_target")
    if extra:
        names = [t.strip() for t in str(extra).split(",") if t.strip()]
        draft.set("lora.modules_to_save", names, "additional_target")
    for key in ("loraplus_lr_ratio", "loraplus_lr_embedding"):
        if keys.given(key):
            draft.set(f"lora.{key}", float(keys.get(key)), key)
    if keys.get("pissa_init") is not True:
        for key in ("pissa_iter", "pissa_convert"):
            keys.drop(key, NO_EFFECT, "pissa_init is off")
        return
    iterations = int(keys.get("pissa_iter", 16))
    init = f"pissa_niter_{iterations}" if iterations > 0 else "pissa"
    why = f"pissa_init, pissa_iter: {iterations}" + ("" if iterations > 0 else " (a full SVD)")
    draft.set("lora.init_lora_weights", init, why)
    if keys.peek("pissa_convert") is not True:
        keys.drop(
            "pissa_convert",
            NO_EFFECT,
            "specforge always saves the PiSSA adapter converted to a plain LoRA on the base",
        )
    keys.used.add("pissa_convert")


GALORE_DEFAULTS = {"galore_rank": 16, "galore_update_interval": 200, "galore_scale": 2.0}
GALORE_ARGS = {"galore_rank": "rank", "galore_update_interval": "update_proj_gap"}
GALORE_ARGS |= {"galore_scale": "scale", "galore_proj_type": "proj_type"}


def map_galore(keys: Keys, draft: Draft, full: bool) -> None:
    """use_galore: transformers' GaLore optimizers, with LLaMA-Factory's defaults written out."""
    galore_keys = ["galore_target", "galore_layerwise", *GALORE_ARGS]
    if keys.get("use_galore") is not True:
        for key in galore_keys:
            keys.drop(key, NO_EFFECT, "use_galore is off")
        return
    if not full:
        keys.unsupported("use_galore", "GaLore projects whole-weight gradients: full fine-tuning")
        for key in galore_keys:
            keys.drop(key, UNSUPPORTED, "see use_galore")
        return
    optim = {"adamw_torch": "galore_adamw", "adamw_8bit": "galore_adamw_8bit"}
    base = draft.get("training.optim", "adamw_torch")
    if base not in optim:
        keys.unsupported("use_galore", f"GaLore with {base}: the spec's GaLore is AdamW")
        return
    layerwise = keys.get("galore_layerwise") is True
    name = optim[base] + ("_layerwise" if layerwise else "")
    draft.set("training.optim", name, "use_galore" + (", galore_layerwise" if layerwise else ""))
    target = str(keys.get("galore_target", "all"))
    targets: str | list[str] = "all-linear"
    if target != "all":
        targets = [t.strip() for t in target.split(",") if t.strip()]
    draft.set("training.optim_target_modules", targets, "galore_target")
    settings = {
        GALORE_ARGS[key]: keys.get(key, GALORE_DEFAULTS.get(key))
        for key in GALORE_ARGS
        if keys.given(key) or key in GALORE_DEFAULTS
    }
    draft.set("training.optim_args", settings, "galore_*: LLaMA-Factory's values, defaults too")


def precision(keys: Keys, full: bool) -> tuple[str, str, str]:
    """(training.precision, model.dtype, why). LLaMA-Factory loads the base in the compute dtype
    and, for full fine-tuning, upcasts the trained weights to float32 unless pure_bf16."""
    if keys.get("pure_bf16") is True:
        return "bf16", "bfloat16", "pure_bf16: true"
    if keys.get("bf16") is True:
        return (
            "bf16",
            "float32" if full else "bfloat16",
            "bf16: true" + (" (full: float32 trained weights)" if full else ""),
        )
    if keys.get("fp16") is True:
        return (
            "fp16",
            "float32" if full else "float16",
            "fp16: true" + (" (full: float32 trained weights)" if full else ""),
        )
    return "fp32", "float32", "neither bf16 nor fp16"


def map_model(keys: Keys, draft: Draft, full: bool) -> None:
    base = keys.get("model_name_or_path")
    if base is None:
        keys.missing("model_name_or_path", "no base model")
    draft.set("model.name", str(base or "unknown"), "model_name_or_path")
    if keys.given("model_revision") and keys.peek("model_revision") != "main":
        draft.set("model.revision", str(keys.get("model_revision")), "model_revision")
    keys.get("model_revision")
    prec, dtype, why = precision(keys, full)
    prequantized = map_prequantized(keys, draft, str(base or ""), full)
    if prequantized == "awq" and prec == "bf16":  # SF084
        prec, dtype, why = "fp16", "float16", "bf16: true, as fp16: AWQ's kernels run in float16"
        keys.approximated("bf16", "fp16: transformers loads AWQ weights in float16 (SF084)")
    draft.set("model.dtype", dtype, why)
    kernels = {"fa2": "flash_attention_2", "sdpa": "sdpa", "disabled": "eager"}
    attn = keys.get("flash_attn", "auto")
    if attn in kernels:
        draft.set("model.attn_implementation", kernels[attn], f"flash_attn: {attn}")
    elif attn != "auto":
        keys.unsupported("flash_attn", f"{attn}: not a kernel the spec offers")
    if keys.get("trust_remote_code") is True:
        draft.set("model.trust_remote_code", True)
    if prequantized and keys.given("quantization_bit"):
        keys.drop("quantization_bit", NO_EFFECT, "LLaMA-Factory ignores it on a PTQ model")
    elif not prequantized:
        map_quantization(keys, draft, dtype, full)
    draft.set("training.precision", prec, why)
    keys.unsupported("rope_scaling", "RoPE scaling of the base model")
    if keys.peek("use_unsloth") is True:
        keys.approximated("use_unsloth", "transformers' own kernels: the same training, slower")
    if keys.get("enable_liger_kernel") is True:
        draft.set("training.use_liger_kernel", True, "enable_liger_kernel")


# a model id's suffix that names a pre-quantized format (TechxGenus/Meta-Llama-3-8B-Instruct-AWQ)
PREQUANTIZED_SUFFIXES = {"-gptq": "gptq", "-awq": "awq"}


def map_prequantized(keys: Keys, draft: Draft, base: str, full: bool) -> str | None:
    """LLaMA-Factory loads a pre-quantized (PTQ) model as its config.json's quantization_config
    says; that file is not read here, so the format comes from the model id's suffix."""
    found = [m for end, m in PREQUANTIZED_SUFFIXES.items() if base.lower().endswith(end)]
    if not found:
        return None
    method = found[0]
    if full:
        keys.unsupported("model_name_or_path", f"{method} weights train only a LoRA adapter")
        return None
    inferred = "inferred from the model id; LLaMA-Factory reads the checkpoint's config.json"
    draft.set("model.prequantized", {"method": method, "bits": 4}, inferred)
    keys.approximated(
        "model_name_or_path",
        f"model.prequantized {{method: {method}, bits: 4}} {inferred} (check its bits there)",
    )
    return method


def map_quantization(keys: Keys, draft: Draft, dtype: str, full: bool) -> None:
    bits = keys.get("quantization_bit")
    if bits is None:
        for key in ("quantization_method", "quantization_type", "double_quantization"):
            keys.drop(key, NO_EFFECT, "no quantization_bit")
        return
    method = keys.get("quantization_method", "bitsandbytes")
    if method != "bitsandbytes" or int(bits) not in (4, 8):
        keys.unsupported(
            "quantization_bit",
            f"{bits}-bit {method}: the spec quantizes with bitsandbytes to 4 or 8 bits",
        )
        return
    if full:
        keys.unsupported("quantization_bit", "k-bit weights train only a LoRA adapter (SF032)")
        return
    quant: dict[str, Any] = {"bits": int(bits)}
    if int(bits) == 4:
        quant |= {
            "quant_type": keys.get("quantization_type", "nf4"),
            "double_quant": bool(keys.get("double_quantization", True)),
            "compute_dtype": dtype,
        }
    draft.set(
        "model.quantization",
        quant,
        f"quantization_bit: {bits} (bitsandbytes, LLaMA-Factory's settings)",
    )


def map_template(keys: Keys, draft: Draft, method: str = "sft") -> str | None:
    """The answer's stop token from the chat template's name; LLaMA-Factory makes it the eos."""
    name = keys.peek("template")
    if name is None:
        keys.used.add("template")
        return None
    stop = TEMPLATE_STOPS.get(name)
    if method == "reward":  # a score head: no answer to end, the tokenizer's eos unchanged
        stop = None
    how = (
        f"ends answers with {stop}, which LLaMA-Factory makes the eos"
        if stop
        else "the trainer ends answers with the tokenizer's eos"
    )
    if method == "reward":
        how = "a score head reads the end of each answer; no stop token to set"
    keys.approximated(
        "template",
        f"{name}: rendered by the tokenizer's own chat template (LLaMA-Factory's {name} template "
        f"is written for the same model family); {how}",
    )
    if stop:
        draft.set("tokenizer.special_tokens.eos", stop, f"template: {name} (replace_eos)")
    keys.unsupported("default_system", "a system prompt added to every row")
    return stop


def map_preference(keys: Keys, draft: Draft, method: str) -> None:
    pref_keys = ("pref_beta", "pref_ftx", "pref_loss", "kto_chosen_weight", "kto_rejected_weight")
    if method in ("sft", "pt", "reward"):
        for key in pref_keys:
            keys.drop(key, NO_EFFECT, "a preference setting; this is not a preference stage")
        return
    beta = float(keys.get("pref_beta", 0.1))
    draft.set(
        "preference.beta",
        beta,
        "pref_beta" if keys.given("pref_beta") else "pref_beta unset: LLaMA-Factory's default",
    )
    loss = keys.get("pref_loss", "sigmoid")
    if method == "dpo":
        if loss in DPO_LOSSES:
            draft.set("preference.loss_type", DPO_LOSSES[loss], "pref_loss")
        else:
            keys.unsupported("pref_loss", f"{loss}: not a DPO loss of trl's DPOTrainer")
        if float(keys.get("pref_ftx", 0.0)) > 0:
            draft.set("preference.sft_weight", float(keys.get("pref_ftx")), "pref_ftx")
    if method == "kto":
        for key, field in (
            ("kto_chosen_weight", "desirable_weight"),
            ("kto_rejected_weight", "undesirable_weight"),
        ):
            if keys.given(key):
                draft.set(f"preference.{field}", float(keys.get(key)), key)
    if keys.peek("dpo_label_smoothing") not in (None, 0, 0.0):
        keys.unsupported("dpo_label_smoothing", "conservative DPO's label smoothing")
    keys.used.add("dpo_label_smoothing")


def map_training(keys: Keys, draft: Draft) -> None:
    draft.set(
        "training.per_device_train_batch_size", int(keys.get("per_device_train_batch_size", 8))
    )
    given = keys.given("per_device_eval_batch_size")
    draft.set(
        "training.per_device_eval_batch_size",
        int(keys.get("per_device_eval_batch_size", 8)),
        None if given else "unset: transformers' default",
    )
    draft.set(
        "training.gradient_accumulation_steps", int(keys.get("gradient_accumulation_steps", 1))
    )
    draft.set("training.num_train_epochs", float(keys.get("num_train_epochs", 3.0)))
    if keys.given("max_steps") and int(keys.peek("max_steps")) > 0:
        draft.set("training.max_steps", int(keys.get("max_steps")))
    keys.used.add("max_steps")
    draft.set("training.learning_rate", float(keys.get("learning_rate", 5e-5)))
    map_scheduler(keys, draft, key="lr_scheduler_type", default="linear")
    if keys.given("lr_scheduler_kwargs"):
        draft.set("training.lr_scheduler_kwargs", keys.get("lr_scheduler_kwargs"))
    steps = keys.get("warmup_steps")
    if isinstance(steps, float) and steps < 1:  # transformers 5 reads a float below 1 as a ratio
        draft.set("training.warmup_ratio", steps, f"warmup_steps: {steps} (a ratio)")
    elif steps:
        draft.set("training.warmup_steps", int(steps))
    elif keys.given("warmup_ratio"):
        draft.set("training.warmup_ratio", float(keys.get("warmup_ratio")))
    draft.set("training.weight_decay", float(keys.get("weight_decay", 0.0)))
    draft.set("training.max_grad_norm", float(keys.get("max_grad_norm", 1.0)))
    map_optimizer(keys, draft, key="optim", default="adamw_torch")
    map_galore(keys, draft, full=draft.get("lora", "lora") is None)
    map_adam(
        keys,
        draft,
        {"adam_beta1": "adam_beta1", "adam_beta2": "adam_beta2", "adam_epsilon": "adam_epsilon"},
    )
    off = keys.get("disable_gradient_checkpointing", False) is True
    draft.set(
        "training.gradient_checkpointing",
        not off,
        "disable_gradient_checkpointing: true"
        if off
        else "LLaMA-Factory checkpoints unless disable_gradient_checkpointing",
    )
    keys.drop(
        "gradient_checkpointing",
        NO_EFFECT,
        "LLaMA-Factory decides it by disable_gradient_checkpointing",
    )
    draft.set("training.max_length", int(keys.get("cutoff_len", 2048)), "cutoff_len")
    map_packing(keys, draft)
    draft.set("training.logging_steps", int(keys.get("logging_steps", 500)))
    if keys.given("seed"):
        draft.set("seed", int(keys.get("seed")))
    map_switches(keys, draft)


def map_packing(keys: Keys, draft: Draft) -> None:
    if keys.get("neat_packing") is True:
        draft.set("training.packing", True, "neat_packing: rows packed, attention kept per row")
    elif keys.get("packing") is True:
        draft.set("training.packing", True, "packing")
        keys.dropped.append(
            Dropped(
                "packing",
                "TRL's packing keeps attention within each row under flash attention; "
                "LLaMA-Factory's plain packing lets packed rows attend to each other",
                APPROXIMATED,
            )
        )


def map_switches(keys: Keys, draft: Draft) -> None:
    for key, value, kind, reason in (
        (
            "train_on_prompt",
            True,
            UNSUPPORTED,
            "loss on the prompt too: the spec trains on completions",
        ),
        ("mask_history", True, UNSUPPORTED, "loss on the last turn only"),
        ("streaming", True, APPROXIMATED, "the dataset is loaded whole, not streamed"),
        (
            "tf32",
            True,
            APPROXIMATED,
            "torch's default (no TF32 matmuls): slower on Ampere+, not less exact",
        ),
        (
            "group_by_length",
            True,
            APPROXIMATED,
            "rows are batched in seeded random order, not by length",
        ),
    ):
        found = keys.peek(key)
        if found == value:
            keys.drop(key, kind, reason)
        elif found is not None:
            keys.drop(key, NO_EFFECT, "the spec's behaviour already")
    report = keys.get("report_to", "none")
    trackers = [
        t for t in ([report] if isinstance(report, str) else report) if t not in ("none", None)
    ]
    known = [t for t in trackers if t in ("wandb", "tensorboard", "mlflow", "trackio")]
    if known:
        draft.set("training.report_to", known, "report_to")
    if len(known) < len(trackers):
        keys.dropped.append(
            Dropped(
                "report_to",
                f"{', '.join(t for t in trackers if t not in known)}: not a spec tracker",
                IGNORED,
            )
        )
    if keys.get("push_to_hub") is True:
        draft.set("training.push_to_hub", True)
        if keys.given("hub_model_id"):
            draft.set("training.hub_model_id", str(keys.get("hub_model_id")))


def map_eval_save(keys: Keys, draft: Draft) -> None:
    size = keys.get("val_size")
    if size is not None and 0 < float(size) < 1:
        draft.set("dataset.validation_fraction", float(size), "val_size")
    elif size is not None and float(size) >= 1:
        keys.unsupported("val_size", f"{size} rows held out: the spec holds out a fraction")
    strategy = keys.get("eval_strategy") or keys.get("evaluation_strategy")
    held_out = ("dataset.validation_fraction", "dataset.eval_path")
    if strategy in ("steps", "epoch") and any(draft.get(key) is not None for key in held_out):
        draft.set(
            "training.eval_strategy",
            strategy,
            "eval_strategy" if keys.given("eval_strategy") else "evaluation_strategy",
        )
        if strategy == "steps":
            draft.set("training.eval_steps", int(keys.get("eval_steps", 500)))
    elif strategy in ("steps", "epoch"):
        keys.unsupported(
            "eval_strategy", "evaluation without val_size or eval_dataset: no rows to evaluate"
        )
    keys.used.add("eval_steps")
    save = keys.get("save_strategy", "steps")
    if save == "steps":
        steps = int(keys.get("save_steps", 500))
        draft.set(
            "training.save_strategy",
            "steps",
            None if keys.given("save_strategy") else "transformers' default: every save_steps",
        )
        draft.set(
            "training.save_steps",
            steps,
            None if keys.given("save_steps") else "save_steps unset: transformers' default",
        )
    elif save in ("epoch", "no"):
        draft.set("training.save_strategy", save)
        keys.drop("save_steps", NO_EFFECT, f"save_strategy is {save}")
    if keys.given("save_total_limit"):
        draft.set("training.save_total_limit", int(keys.get("save_total_limit")))
