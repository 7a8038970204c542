"""Extraction of generation prompts from MLLM replies."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.gateway.mllm.generation_tags import VisibleTextFilter, parse_reply, tidy_text


def test_released_checkpoint_spelling() -> None:
    parsed = parse_reply("Here it is: <gen_image> A red fox in snow. </gen_image> Enjoy!")
    assert parsed.prompts == ["A red fox in snow."]
    assert parsed.text == "Here it is: Enjoy!"


def test_paper_spelling_and_several_blocks() -> None:
    reply = "Two ideas.\n<gen_img>a cat</gen_img>\nand\n<gen_image>a dog</gen_image>"
    parsed = parse_reply(reply)
    assert parsed.prompts == ["a cat", "a dog"]
    assert parsed.text == "Two ideas.\n\nand"


def test_unterminated_last_block_counts() -> None:
    parsed = parse_reply("Sure. <gen_image> a castle at dusk, highly detailed")
    assert parsed.prompts == ["a castle at dusk, highly detailed"]
    assert parsed.text == "Sure."


def test_empty_blocks_are_dropped() -> None:
    parsed = parse_reply("x <gen_image>   </gen_image> y <gen_img></gen_img>")
    assert parsed.prompts == []
    assert parsed.text == "x y"


def test_tags_do_not_cross_spellings() -> None:
    # `<gen_img>` is closed only by `</gen_img>`: the stray `</gen_image>` is inside it.
    parsed = parse_reply("<gen_img>a </gen_image> b</gen_img> after")
    assert parsed.prompts == ["a </gen_image> b"]
    assert parsed.text == "after"


def test_stray_closing_tag_is_removed_from_text() -> None:
    parsed = parse_reply("hello </gen_image> world")
    assert parsed.prompts == []
    assert parsed.text == "hello world"


def test_case_and_inner_whitespace_of_tags() -> None:
    parsed = parse_reply("<GEN_IMAGE >Big\nprompt\n</GEN_IMAGE>")
    assert parsed.prompts == ["Big\nprompt"]
    assert parsed.text == ""


def test_reply_without_tags_is_tidied() -> None:
    assert parse_reply("  just   chatting \n\n\n\n ok  ").text == "just chatting\n\nok"
    assert parse_reply("").prompts == []


# Text and prompts without "<" cannot contain tags; prompts have a visible character.
_text = st.text(alphabet=st.characters(blacklist_characters="<", codec="utf-8"), max_size=40)
_prompt = _text.filter(lambda s: s.strip() != "")
_open_close = st.sampled_from([("<gen_image>", "</gen_image>"), ("<gen_img>", "</gen_img>")])


@given(
    blocks=st.lists(st.tuples(_text, _prompt, _open_close), max_size=5),
    tail=_text,
    unterminated=st.booleans(),
)
def test_round_trip(
    blocks: list[tuple[str, str, tuple[str, str]]], tail: str, unterminated: bool
) -> None:
    """Replies built from text segments and prompts give back the prompts and the text."""
    reply = ""
    outside: list[str] = []
    for i, (before, prompt, (open_tag, close_tag)) in enumerate(blocks):
        last = i == len(blocks) - 1
        reply += before + open_tag + prompt
        outside.append(before)
        if not (last and unterminated):
            reply += close_tag
    if not (blocks and unterminated):
        reply += tail
        outside.append(tail)
    else:
        outside.append("")

    parsed = parse_reply(reply)

    assert parsed.prompts == [prompt.strip() for _, prompt, _ in blocks]
    assert parsed.text == tidy_text(" ".join(outside))
    for prompt in parsed.prompts:
        assert prompt == prompt.strip() and prompt


@given(st.text(max_size=200))
def test_never_fails_and_prompts_are_clean(reply: str) -> None:
    parsed = parse_reply(reply)
    assert all(p and p == p.strip() for p in parsed.prompts)
    assert parsed.text == parsed.text.strip()


# --------------------------------------------------------------------------- streaming

_TAGGY = st.lists(
    st.sampled_from(
        ["<gen_image>", "</gen_image>", "<gen_img>", "</gen_img>", "<GEN_IMAGE >", "</Gen_Img\t>",
         "<", ">", "<gen_ima", "<b>", " ", "\n", "a fox", "x", "gen_image"]
    ),
    max_size=30,
).map("".join)  # fmt: skip


def _streamed(reply: str, cuts: list[int]) -> list[str]:
    """Feed `reply` cut at `cuts`; return every output, the flush last."""
    visible = VisibleTextFilter()
    bounds = [0, *sorted({c % (len(reply) + 1) for c in cuts}), len(reply)]
    out = [visible.feed(reply[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    return [*out, visible.flush()]


@given(st.one_of(_TAGGY, st.text(max_size=60)), st.lists(st.integers(min_value=0), max_size=12))
def test_streamed_visible_text_equals_the_parsed_reply(reply: str, cuts: list[int]) -> None:
    """However the reply is cut into pieces, the streamed text is the shown text."""
    assert tidy_text("".join(_streamed(reply, cuts))) == parse_reply(reply).text


def test_streaming_never_shows_a_prompt_and_holds_back_only_a_possible_tag() -> None:
    reply = "Here <gen_image> SECRET prompt </gen_image> done <gen_img>MORE"
    pieces = _streamed(reply, list(range(len(reply))))  # one character at a time
    assert "SECRET" not in "".join(pieces) and "MORE" not in "".join(pieces)
    assert "".join(pieces).split() == ["Here", "done"]
    # Plain text is released at once; "<" waits only until it cannot start a tag.
    visible = VisibleTextFilter()
    assert visible.feed("a <") == "a "
    assert visible.feed("b") == "<b"
    assert visible.feed(" <gen_im") == " "
    assert visible.feed("age >hidden") == " "
    assert visible.flush() == ""
