"""Answer prompts with an exported model folder through plain transformers, as a user would.

`specforge export --format merged` runs a copy of this file as a script in a fresh process:
it imports nothing from specforge, and loads the folder with nothing but its own files
(from_pretrained, the folder's generation_config: greedy, eos = the stop token).

    python plain_transformers.py JOB.json OUT.json

JOB.json: {"model": folder, "prompts": [...], "batch_size": 16, "probes": [...]}
OUT.json: the answers (new tokens only, up to the eos, special tokens kept, stripped: as the
generated infer.py's answer()), the eos the folder declares, and each probe's last-position
logits (in OUT.json's sibling OUT.pt).
"""

import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


@torch.no_grad()
def main(job_path, out_path):
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(job["model"])
    model = AutoModelForCausalLM.from_pretrained(job["model"], device_map=device).eval()
    eos = model.generation_config.eos_token_id
    stops = set(eos if isinstance(eos, list) else [eos])
    answers = []
    prompts = job["prompts"]
    for start in range(0, len(prompts), job["batch_size"]):
        batch = tokenizer(
            prompts[start : start + job["batch_size"]], return_tensors="pt", padding=True
        )
        output = model.generate(**batch.to(model.device))
        for sequence in output[:, batch["input_ids"].shape[1] :].tolist():
            cut = [i for i, token in enumerate(sequence) if token in stops]
            sequence = sequence[: cut[0]] if cut else sequence
            sequence = [i for i in sequence if i != tokenizer.pad_token_id]
            text: str = tokenizer.decode(sequence)  # type: ignore[assignment]  # ids in, one str out
            answers.append(text.strip())
    logits = [
        model(**tokenizer(text, return_tensors="pt").to(model.device)).logits[0, -1].float().cpu()
        for text in job["probes"]
    ]
    torch.save(torch.stack(logits) if logits else torch.empty(0), Path(out_path).with_suffix(".pt"))
    report = {
        "answers": answers,
        "tokenizer_eos_token": tokenizer.eos_token,
        "tokenizer_eos_token_id": tokenizer.eos_token_id,
        "generation_eos_token_id": eos,
        "eos_token_ids": sorted(stops),
        "padding_side": tokenizer.padding_side,
        "dtype": str(model.dtype).removeprefix("torch."),
        "device": str(model.device),
        "imported_specforge": sorted(m for m in sys.modules if m.split(".")[0] == "specforge"),
    }
    Path(out_path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:3])
