"""Generation engines: one prompt's token ids in, the answer's text out piece by piece.

Both engines answer exactly as the run's infer.py post-processes an answer: new tokens only, cut
at the stop token, padding ids dropped, decoded with special tokens kept and stripped. While
streaming, `TextAssembler` emits only text that the final, stripped answer is sure to start
with, so the pieces of a stream always join into the non-streamed answer.

The ML stack (torch, transformers, llama_cpp) is imported inside the functions that need it:
`specforge chat --help` and the server's start-up stay light.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

STOP = "stop"  # OpenAI's finish reasons
LENGTH = "length"


@dataclass
class Params:
    """One request's decoding settings (the spec's inference settings fill what it leaves out)."""

    max_tokens: int
    temperature: float | None = None  # None: the spec's; 0: greedy
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)  # stop strings, beside the stop token
    stop_ids: list[int] = field(default_factory=list)  # more stop tokens (a chat template's end)


@dataclass
class Outcome:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


class TextAssembler:
    """Token ids in, safe-to-show text out: stop ids end the answer, skipped ids (padding, as
    infer.py drops them) never show, stop strings cut it, and text that could still change (a
    half UTF-8 character, trailing spaces the final strip removes, the start of a stop string)
    is held back until it cannot."""

    def __init__(
        self,
        decode: Callable[[list[int]], str],
        *,
        stop_ids: Iterable[int],
        skip_ids: Iterable[int] = (),
        stop_strings: Iterable[str] = (),
    ) -> None:
        self.decode = decode
        self.stop_ids = set(stop_ids)
        self.skip_ids = set(skip_ids)
        self.stop_strings = [s for s in stop_strings if s]
        self.ids: list[int] = []
        self.count = 0  # tokens generated, stop token included (OpenAI's completion_tokens)
        self.sent = ""
        self.finish: str | None = None

    def add(self, token: int) -> str:
        """The new text to show after `token` ("" while held back or once finished)."""
        if self.finish is not None:
            return ""
        self.count += 1
        if token in self.stop_ids:
            self.finish = STOP
            return self._emit(self._text(), final=True)
        if token in self.skip_ids:
            return ""
        self.ids.append(token)
        return self._emit(self._text(), final=self.finish is not None)

    def close(self, finish: str = LENGTH) -> str:
        """The held-back rest once generation has ended (by length unless a stop came first)."""
        if self.finish is None:
            self.finish = finish
        return self._emit(self._text(), final=True)

    @property
    def text(self) -> str:
        return self.sent

    def _text(self) -> str:
        """The answer so far: stripped at the start, cut at the first stop string."""
        text = self.decode(self.ids).lstrip()
        cuts = [text.find(s) for s in self.stop_strings if s in text]
        if cuts:
            self.finish = STOP
            text = text[: min(cuts)]
        return text

    def _emit(self, text: str, *, final: bool) -> str:
        shown = text.rstrip() if final else self._settled(text)
        if not shown.startswith(self.sent):  # a decode that rewrote earlier text: wait
            return ""
        piece, self.sent = shown[len(self.sent) :], shown
        return piece

    def _settled(self, text: str) -> str:
        text = text.rstrip()
        if text.endswith("\ufffd"):  # a character split over tokens: its next bytes are coming
            return self.sent
        held = max((len(s) - 1 for s in self.stop_strings), default=0)
        for size in range(min(held, len(text)), 0, -1):
            if any(s.startswith(text[-size:]) for s in self.stop_strings):
                return text[:-size]
        return text


class Engine(Protocol):
    """What the server and the terminal chat need from a loaded model."""

    context_length: int
    defaults: dict  # infer.py's GENERATION

    def encode(self, prompt: str) -> list[int]: ...

    def assembler(self, params: Params) -> TextAssembler: ...

    def generate(self, ids: list[int], params: Params, on_token: Callable[[int], bool]) -> None: ...


def run(
    engine: Engine,
    ids: list[int],
    params: Params,
    on_text: Callable[[str], None] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> Outcome:
    """Generate an answer to `ids`, calling on_text with each new piece; stops early when
    `cancelled()` turns true (a client that went away)."""
    assembler = engine.assembler(params)

    def on_token(token: int) -> bool:
        piece = assembler.add(token)
        if piece and on_text is not None:
            on_text(piece)
        return assembler.finish is not None or cancelled()

    engine.generate(ids, params, on_token)
    rest = assembler.close()
    if rest and on_text is not None:
        on_text(rest)
    return Outcome(
        text=assembler.text,
        finish_reason=assembler.finish or LENGTH,
        prompt_tokens=len(ids),
        completion_tokens=assembler.count,
    )


def sampling(defaults: dict, params: Params) -> dict:
    """model.generate's decoding arguments: infer.py's GENERATION, with the request's changes
    (temperature 0 is greedy, as OpenAI's servers read it)."""
    settings = {**defaults, "max_new_tokens": params.max_tokens}
    if params.temperature is None and params.top_p is None:
        return settings
    temperature = params.temperature
    if temperature is None:
        temperature = settings.get("temperature", 1.0) if settings.get("do_sample") else 1.0
    for key in ("temperature", "top_p", "top_k", "do_sample"):
        settings.pop(key, None)
    if temperature == 0:
        return {**settings, "do_sample": False}
    settings.update(do_sample=True, temperature=temperature)
    if params.top_p is not None:
        settings["top_p"] = params.top_p
    return settings


class TransformersEngine:
    """A transformers model (the run's adapter on its base, or a merged export folder), the way
    infer.py loaded it, generating with model.generate and a streamer that sees each token."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        stop_ids: list[int],
        add_special_tokens: bool,
        defaults: dict,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.stop_ids = stop_ids
        self.add_special_tokens = add_special_tokens
        self.defaults = defaults
        config = model.config
        self.context_length = int(
            getattr(config, "max_position_embeddings", None) or tokenizer.model_max_length
        )

    def encode(self, prompt: str) -> list[int]:
        encoded = self.tokenizer(prompt, add_special_tokens=self.add_special_tokens)
        return list(encoded.input_ids)

    def assembler(self, params: Params) -> TextAssembler:
        pad = self.tokenizer.pad_token_id
        return TextAssembler(
            self.tokenizer.decode,
            stop_ids=[*self.stop_ids, *params.stop_ids],
            skip_ids=[] if pad is None else [pad],
            stop_strings=params.stop,
        )

    def generate(self, ids: list[int], params: Params, on_token: Callable[[int], bool]) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, set_seed
        from transformers.generation.streamers import BaseStreamer

        done = [False]

        class Tokens(BaseStreamer):
            """Hands each new token to on_token; generate's first put() is the prompt."""

            prompt_seen = False

            def put(self, value):
                if not self.prompt_seen:
                    self.prompt_seen = True
                    return
                for token in value.reshape(-1).tolist():
                    done[0] = on_token(int(token)) or done[0]

            def end(self):
                pass

        class Finished(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), done[0], device=input_ids.device)

        if params.seed is not None:
            set_seed(params.seed)
        stop_ids = list(dict.fromkeys([*self.stop_ids, *params.stop_ids]))
        inputs = torch.tensor([ids], device=self.model.device)
        with torch.no_grad():
            self.model.generate(
                input_ids=inputs,
                attention_mask=torch.ones_like(inputs),
                eos_token_id=stop_ids[0] if len(stop_ids) == 1 else stop_ids,
                pad_token_id=self.tokenizer.pad_token_id,
                streamer=Tokens(),
                stopping_criteria=StoppingCriteriaList([Finished()]),
                **sampling(self.defaults, params),
            )


class LlamaCppEngine:
    """A GGUF export in llama.cpp (llama-cpp-python): prompts are tokenized by llama.cpp as the
    export's check did, and every end-of-generation token of the GGUF (its eos is the stop
    token) ends the answer, as llama-server and Ollama stop."""

    def __init__(self, llm: Any, *, add_bos: bool, defaults: dict) -> None:
        import llama_cpp

        self.llm = llm
        self.add_bos = add_bos
        self.defaults = defaults
        self.context_length = int(llm.n_ctx())
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self.stop_ids = [i for i in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, i)]

    def encode(self, prompt: str) -> list[int]:
        return list(self.llm.tokenize(prompt.encode("utf-8"), add_bos=self.add_bos, special=True))

    def decode(self, ids: list[int]) -> str:
        return self.llm.detokenize(ids, special=True).decode("utf-8", errors="replace")

    def assembler(self, params: Params) -> TextAssembler:
        stop_ids = [*self.stop_ids, *params.stop_ids]
        return TextAssembler(self.decode, stop_ids=stop_ids, stop_strings=params.stop)

    def generate(self, ids: list[int], params: Params, on_token: Callable[[int], bool]) -> None:
        settings = sampling(self.defaults, params)
        greedy = not settings.get("do_sample")
        sampler = {
            "temp": 0.0 if greedy else float(settings.get("temperature", 1.0)),
            "top_k": 1 if greedy else int(settings.get("top_k", 40)),
            "top_p": float(settings.get("top_p", 1.0)),
            "min_p": 0.0,
            "repeat_penalty": float(settings.get("repetition_penalty") or 1.0),
        }
        if params.seed is not None:
            self.llm.set_seed(params.seed)
        self.llm.reset()
        for count, token in enumerate(self.llm.generate(ids, **sampler), start=1):
            if on_token(int(token)) or count >= params.max_tokens:
                break
