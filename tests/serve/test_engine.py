"""TextAssembler: the streamed pieces always join into the final answer, post-processed as
infer.py does (cut at the stop token, padding dropped, stripped), and stop strings cut it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from specforge.serve.engine import LENGTH, STOP, Params, TextAssembler, sampling

STOP_ID, PAD_ID = 0, 1
VOCAB = ["<stop>", "<pad>", " ", "a", "b", "ab", "\n", "é", "<x>"]


def decode(ids: list[int]) -> str:
    return "".join(VOCAB[i] for i in ids)


def infer_answer(ids: list[int]) -> str:
    """infer.py's post-processing of generated ids."""
    if STOP_ID in ids:
        ids = ids[: ids.index(STOP_ID)]
    return decode([i for i in ids if i != PAD_ID]).strip()


def assemble(ids: list[int], stop: tuple[str, ...] = ()) -> tuple[list[str], TextAssembler]:
    assembler = TextAssembler(decode, stop_ids=[STOP_ID], skip_ids=[PAD_ID], stop_strings=stop)
    pieces = []
    for token in ids:
        pieces.append(assembler.add(token))
        if assembler.finish is not None:
            break
    pieces.append(assembler.close())
    return pieces, assembler


@given(st.lists(st.integers(min_value=0, max_value=len(VOCAB) - 1), max_size=12))
def test_pieces_join_into_infer_answer(ids):
    pieces, assembler = assemble(ids)
    assert "".join(pieces) == assembler.text == infer_answer(ids)
    assert assembler.finish == (STOP if STOP_ID in ids else LENGTH)


def test_trailing_spaces_are_held_until_text_follows():
    pieces, _ = assemble([3, 2, 2, 4, 2])  # "a", " ", " ", "b", " "
    assert pieces == ["a", "", "", "  b", "", ""]


def test_stop_strings_cut_the_answer_and_their_start_is_held_back():
    pieces, assembler = assemble([3, 8, 4, 3], stop=("<x>b",))
    assert "".join(pieces) == assembler.text == "a"
    assert assembler.finish == STOP
    pieces, assembler = assemble([3, 8, 3], stop=("<x>b",))  # "<x>" then not "b": shown
    assert "".join(pieces) == "a<x>a" and assembler.finish == LENGTH


def test_temperature_zero_is_greedy_and_defaults_come_from_the_spec():
    spec = {"max_new_tokens": 6, "do_sample": False, "repetition_penalty": 1.0}
    assert sampling(spec, Params(max_tokens=3)) == {**spec, "max_new_tokens": 3}
    sampled = sampling(spec, Params(max_tokens=3, temperature=0.7, top_p=0.9))
    assert sampled["do_sample"] and sampled["temperature"] == 0.7 and sampled["top_p"] == 0.9
    assert sampling({**spec, "do_sample": True, "temperature": 0.5}, Params(3, temperature=0)) == {
        "max_new_tokens": 3,
        "do_sample": False,
        "repetition_penalty": 1.0,
    }
