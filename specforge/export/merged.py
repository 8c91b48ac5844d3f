"""--format merged: the base model with the adapter merged in, as a plain transformers folder.

The folder loads with `AutoModelForCausalLM.from_pretrained(dir)` and
`AutoTokenizer.from_pretrained(dir)` alone: safetensors weights with the new tokens' trained rows
in the embedding (and in an untied head), the tokenizer with the special tokens, and the stop
token as the eos of both the tokenizer and generation_config (whose decoding is the spec's).

Three checks, each failing loudly:
1. after merge_and_unload, every trained token's row in the merged embedding and head equals the
   row the adapter computes with (merges have wiped them on tied embeddings: transformers#45127);
2. the saved folder, reloaded in a fresh process that imports nothing from specforge
   (plain_transformers.py), gives the adapter's logits on probe prompts (float32: within 1e-4
   relative to the largest logit), new tokens included;
3. its greedy answers to the run's held-out prompts agree with the adapter's (verify.finish).
"""

from __future__ import annotations

import gc
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from specforge.export.run import ExportError, ExportRun
from specforge.export.verify import ExportResult, finish, staged_folder

NAME = "merged"
BATCH_SIZE = 16  # infer.py's --batch-size default, which `specforge run`'s evaluate step uses
PROBES = 4  # held-out prompts whose logits are compared, plus one that holds the stop token
LOGITS_RTOL = 1e-4  # float32 only; half-precision merges round differently, answers still gate
SCRIPT = Path(__file__).with_name("plain_transformers.py")


def export(run: ExportRun, out_dir: Path, threshold: float) -> ExportResult:
    probes = probe_texts(run)
    with staged_folder(out_dir) as folder:
        expected, rows = build(run, folder, probes)
    started = time.monotonic()
    report, logits = answer_in_fresh_process(out_dir, run.prompts(), probes)
    seconds = time.monotonic() - started
    checks, failures = compare(run, report, logits=logits, expected=expected)
    checks["trained_rows"] = rows
    return finish(
        run,
        NAME,
        out_dir,
        answers=report["answers"],
        threshold=threshold,
        seconds=seconds,
        checks=checks,
        failures=failures,
    )


def probe_texts(run: ExportRun) -> list[str]:
    """The first held-out prompts, and one with the adapter's answer and the stop token inside
    (the stop token's embedding row is read only when it is an input)."""
    prompts = run.prompts()[:PROBES]
    second = prompts[1] if len(prompts) > 1 else prompts[0]
    stop = run.spec.stop_token() or ""  # infer.py's STOP_TOKEN, where the spec declares one
    return [*prompts, prompts[0] + run.reference[0] + stop + second]


def merge(model):
    """peft's merge: LoRA into the projections, trained token rows into embedding and head."""
    return model.merge_and_unload()


def build(run: ExportRun, folder: Path, probes: list[str]) -> tuple[object, dict]:
    """Merge the run's adapter into its base and save the folder; the adapter's probe logits
    (computed before merging) and the trained rows checked."""
    import torch

    infer = run.infer()
    model, tokenizer = run.load_adapter()
    with torch.no_grad():
        expected = last_logits(model, tokenizer, probes)
        trained = trained_rows(model)
        merged = merge(model)
        check_rows(merged, trained, tokenizer)
        check_tying(merged)
        tokenizer.eos_token = stop_token(run, tokenizer)  # completions end with it
        # batched generation continues at the right edge; save_pretrained writes init_kwargs'
        # padding_side, not the attribute infer.py set
        tokenizer.padding_side = tokenizer.init_kwargs["padding_side"] = "left"
        stop_id = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
        merged.generation_config = generation_config(
            merged, infer.GENERATION, stop_id=stop_id, tokenizer=tokenizer
        )
        merged.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    del model, merged
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the fresh process loads the merged model next
    rows = {name: indices for name, (indices, _) in trained.items()}
    return expected, rows


def stop_token(run: ExportRun, tokenizer) -> str:
    """The spec's stop token (infer.py's STOP_TOKEN is compiled from it), else the tokenizer's eos."""
    return run.spec.stop_token() or tokenizer.eos_token


def last_logits(model, tokenizer, texts: list[str]):
    """Each text's last-position logits (float32, on the CPU), one unpadded sequence at a time."""
    import torch

    rows = []
    for text in texts:
        batch = tokenizer(text, return_tensors="pt").to(model.device)
        rows.append(model(**batch).logits[0, -1].float().cpu())
    return torch.stack(rows)


def trained_rows(model) -> dict[str, tuple[list[int], object]]:
    """{module name in the merged model: (token ids, the rows the adapter computes with)} for
    each layer whose token rows the adapter trains (peft's TrainableTokensLayer)."""
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    found: dict[str, tuple[list[int], object]] = {}
    for name, module in model.named_modules():
        if not isinstance(module, TrainableTokensLayer):
            continue
        adapters = [a for a in module.active_adapters if a in module.token_indices]
        if not adapters:
            continue
        ids = sorted({i for a in adapters for i in module.token_indices[a]})
        rows = module.get_merged_weights(adapters)[ids].detach().clone()
        target = name.removeprefix("base_model.model.").removesuffix(".token_adapter")
        found[target] = (ids, rows)
    return found


def check_rows(merged, trained: dict, tokenizer) -> None:
    """Every trained token's row in the merged model equals the adapter's, bit for bit (peft
    copies the rows in): otherwise the export would silently lose what the new tokens learnt."""
    import torch

    wrong = []
    for name, (ids, rows) in trained.items():
        weight = merged.get_submodule(name).weight
        got = weight[ids].to(rows.device, rows.dtype)
        for position, token_id in enumerate(ids):
            if not torch.equal(got[position], rows[position]):
                diff = (got[position] - rows[position]).abs().max().item()
                token = tokenizer.convert_ids_to_tokens(token_id)
                wrong.append(f"{name} row {token_id} ({token}): off by up to {diff:.3g}")
    if wrong:
        raise ExportError(
            "the merge lost trained token rows (the merged weights differ from the adapter's):\n"
            + "\n".join(f"  {line}" for line in wrong)
        )


def check_tying(merged) -> None:
    """A config that says tied with a head that differs from the embedding would be re-tied on
    load, overwriting one of them (transformers#45127)."""
    import torch

    embeddings, head = merged.get_input_embeddings(), merged.get_output_embeddings()
    if not getattr(merged.config, "tie_word_embeddings", False) or head is None:
        return
    if head.weight is not embeddings.weight and not torch.equal(head.weight, embeddings.weight):
        raise ExportError(
            "the merged head and embedding differ but the config ties them: a reload would "
            "overwrite one with the other (transformers#45127)"
        )


def generation_config(merged, generation: dict, *, stop_id: int, tokenizer):
    """The base's generation config with the spec's decoding, and the stop token as eos."""
    import copy

    config = copy.deepcopy(merged.generation_config)
    config.update(**generation)
    if not generation.get("do_sample"):  # greedy: sampling settings would only warn
        config.temperature = config.top_p = config.top_k = None
    config.eos_token_id = stop_id
    config.pad_token_id = tokenizer.pad_token_id
    return config


def answer_in_fresh_process(folder: Path, prompts: list[str], probes: list[str]):
    """plain_transformers.py on the saved folder: (its report, the probes' logits)."""
    import torch

    with tempfile.TemporaryDirectory(prefix="specforge-export-") as tmp:
        work = Path(tmp)
        script = shutil.copy(SCRIPT, work / SCRIPT.name)  # the job folder only on sys.path
        job = {"model": str(folder.resolve()), "prompts": prompts, "batch_size": BATCH_SIZE}
        job["probes"] = probes
        (work / "job.json").write_text(json.dumps(job), encoding="utf-8")
        result = subprocess.run(
            [sys.executable, script, str(work / "job.json"), str(work / "out.json")],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
            raise ExportError(f"plain transformers could not load or run {folder}:\n{tail}")
        report = json.loads((work / "out.json").read_text(encoding="utf-8"))
        logits = torch.load(work / "out.pt")
    return report, logits


def compare(run: ExportRun, report: dict, *, logits, expected) -> tuple[dict, list[str]]:
    """The fresh process's evidence against the adapter's: (checks, failures)."""
    failures = []
    diff = (logits - expected).abs().max().item()
    scale = max(1.0, expected.abs().max().item())
    tolerance = LOGITS_RTOL * scale if report["dtype"] == "float32" else None
    if tolerance is not None and not diff <= tolerance:
        failures.append(
            f"the reloaded folder's logits differ from the adapter's by {diff:.3g} "
            f"(tolerance {tolerance:.3g}) on {len(expected)} probe prompts"
        )
    stop = run.spec.stop_token()
    if stop and report["tokenizer_eos_token"] != stop:
        failures.append(
            f"the tokenizer's eos is {report['tokenizer_eos_token']!r}, not the stop token"
        )
    if report["eos_token_ids"] != [report["tokenizer_eos_token_id"]]:
        failures.append(
            f"generation_config's eos is {report['generation_eos_token_id']}, not the stop token's "
            f"id {report['tokenizer_eos_token_id']}"
        )
    if report["padding_side"] != "left":
        failures.append(
            f"the tokenizer pads on the {report['padding_side']}: batched generation needs left"
        )
    if report["imported_specforge"]:
        failures.append(f"the check imported specforge: {report['imported_specforge']}")
    checks = {
        "logits_max_abs_diff": diff,
        "logits_tolerance": tolerance,
        "probes": len(expected),
        "stop_token": stop,
        "tokenizer_eos_token": report["tokenizer_eos_token"],
        "generation_eos_token_id": report["generation_eos_token_id"],
        "padding_side": report["padding_side"],
        "dtype": report["dtype"],
        "device": report["device"],
        "nonempty_answers": sum(bool(answer) for answer in report["answers"]),
    }
    return checks, failures
