"""The toy world: scenes are a pure function of their seed, render what they say, and come
with captions naming every attribute (the detailed one partly after token 75)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from toyworld.captions import (
    _PRETOKEN,
    CHUNK_TOKENS,
    DETAILED_MAX_TOKENS,
    DETAILED_MIN_TOKENS,
    POSITION_PHRASES,
    count_tokens,
    detailed_caption,
    short_caption,
)
from toyworld.scenes import (
    COLOURS,
    POSITION_NAMES,
    Scene,
    SceneObject,
    object_centre,
    render,
    sample_scene,
    scene_from_seed,
)


def test_a_seed_names_one_scene_and_one_image() -> None:
    assert scene_from_seed(7) == scene_from_seed(7)
    assert np.array_equal(
        np.asarray(render(scene_from_seed(7))), np.asarray(render(scene_from_seed(7)))
    )
    assert len({scene_from_seed(seed) for seed in range(50)}) > 45


def test_scenes_keep_the_worlds_rules() -> None:
    rng = random.Random(3)
    counts = set()
    for _ in range(500):
        scene = sample_scene(rng)
        counts.add(len(scene.objects))
        positions = [obj.position for obj in scene.objects]
        assert len(set(positions)) == len(positions)  # one object per cell
        assert all(obj.colour != scene.background for obj in scene.objects)
    assert counts == {1, 2, 3}


def test_render_draws_the_object_in_its_colour_at_its_position_on_the_background() -> None:
    scene = Scene((SceneObject("circle", "red", "large", "center"),), "blue", textured=False)
    pixels = np.asarray(render(scene, 64)).astype(int)
    cx, cy = (int(v) for v in object_centre("center", 64))
    assert tuple(pixels[cy, cx]) == COLOURS["red"]
    assert tuple(pixels[2, 2]) == COLOURS["blue"]
    # Nothing red in the other cells.
    red = np.abs(pixels - np.array(COLOURS["red"])).sum(-1) < 30
    assert red[:21].sum() == 0 and red[43:].sum() == 0


def test_shapes_differ_in_their_corners() -> None:
    def at(shape: str) -> np.ndarray:
        scene = Scene((SceneObject(shape, "white", "large", "center"),), "black", False)
        return np.asarray(render(scene, 64)).astype(int)

    circle, square, triangle = at("circle"), at("square"), at("triangle")
    corner = (int(32 - 0.155 * 64 * 0.85), int(32 - 0.155 * 64 * 0.85))  # top-left corner
    assert square[corner].sum() > 600 and circle[corner].sum() < 100
    assert triangle[corner].sum() < 100 and triangle[40, 24].sum() > 600


def test_short_caption_reads_as_the_issue_says() -> None:
    scene = Scene((SceneObject("circle", "red", "medium", "center"),), "blue", False)
    assert short_caption(scene) == "a red circle in the center on a blue background"
    two = Scene(
        (
            SceneObject("square", "orange", "small", "top left"),
            SceneObject("triangle", "green", "large", "bottom"),
        ),
        "white",
        True,
    )
    assert short_caption(two, with_size=True) == (
        "a small orange square in the top left and a large green triangle at the bottom "
        "on a white background"
    )


@pytest.mark.parametrize("seed", range(40))
def test_detailed_caption_names_everything_within_its_length_and_some_late(seed: int) -> None:
    rng = random.Random(seed)
    scene = sample_scene(rng)
    caption = detailed_caption(scene, rng)
    text = caption.text.lower()
    assert DETAILED_MIN_TOKENS <= caption.tokens <= DETAILED_MAX_TOKENS
    assert caption.tokens == count_tokens(caption.text)
    assert scene.background in text
    for obj in scene.objects:
        for word in (obj.colour, obj.shape, obj.size, POSITION_PHRASES[obj.position]):
            assert word in text
    # The first 75 tokens say nothing of a late attribute.
    first_chunk = " ".join(_PRETOKEN.findall(text)[:CHUNK_TOKENS])
    for index, attribute in caption.late:
        if index < 0:
            assert scene.background not in first_chunk
            continue
        obj = scene.objects[index]
        if attribute == "size":
            assert f"{obj.size} {obj.colour} {obj.shape}" not in first_chunk
            assert f"{obj.colour} {obj.shape} is {obj.size}" not in first_chunk
        else:
            assert f"{obj.colour} {obj.shape} {POSITION_PHRASES[obj.position]}" not in first_chunk
            assert f"sits {POSITION_PHRASES[obj.position]}" not in first_chunk
            assert f"sits {POSITION_PHRASES[obj.position]}" in text


def test_late_attributes_are_common() -> None:
    rng = random.Random(11)
    late = [len(detailed_caption(sample_scene(rng), rng).late) for _ in range(300)]
    assert sum(1 for n in late if n > 0) > 250


def test_world_tokenizer_has_one_token_per_world_word(tmp_path: Path) -> None:
    from toyworld.tokenizer import build_world_tokenizer

    tokenizer = build_world_tokenizer(tmp_path)
    rng = random.Random(5)
    for _ in range(50):
        scene = sample_scene(rng)
        text = detailed_caption(scene, rng).text
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert len(ids) == count_tokens(text)
    for position in POSITION_NAMES:
        assert len(tokenizer(position, add_special_tokens=False)["input_ids"]) == len(
            position.split()
        )
