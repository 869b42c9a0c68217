import random

from pictor.embedded.grammar import (
    EditSpec,
    ObjectSpec,
    Relation,
    describe,
    instruct,
    parse_instruction,
    parse_prompt,
)
from pictor.embedded.world import Background, WorldConfig, sample_edit, sample_scene


def test_prompts_round_trip_through_the_parser():
    rng = random.Random(1)
    phrasings = set()
    for _ in range(2000):
        scene = sample_scene(rng, WorldConfig())
        text, spec = describe(scene, rng)
        understood = parse_prompt(text)
        assert understood.spec == spec, text
        assert understood.unknown_words == [], text
        assert all(any(o.matches(s) for s in scene.objects) for o in spec.objects)
        phrasings.add(text)
    assert len(phrasings) > 1900  # varied, not one template


def test_instructions_round_trip_through_the_parser():
    rng = random.Random(2)
    kinds = set()
    for _ in range(2000):
        scene = sample_scene(rng, WorldConfig())
        edit = sample_edit(rng, scene, WorldConfig())
        if edit is None:
            continue
        text, spec = instruct(scene, edit, rng)
        understood = parse_instruction(text)
        assert understood.spec == spec, text
        assert understood.unknown_words == [], text
        kinds.add(spec.kind)
    assert kinds == {"recolour", "move", "add", "remove", "resize", "background"}


def test_synonyms_counts_relations_and_backgrounds():
    spec = parse_prompt("three grey boxes to the left of a big red heart on a vertical blue to white gradient").spec
    assert spec.objects[:3] == (ObjectSpec("square", "gray"),) * 3
    assert spec.objects[3] == ObjectSpec("heart", "red", "large")
    assert spec.relation == Relation(2, "left of", 3)
    assert spec.background == Background(("blue", "white"), "vertical")
    assert parse_prompt("a circle in green at the upper right").spec.objects == (
        ObjectSpec("circle", "green", cell=(0, 2)),)


def test_edit_phrasings():
    assert parse_instruction("make the circle green").spec == EditSpec("recolour", ObjectSpec("circle"), colour="green")
    assert parse_instruction("move the square to the top left").spec == EditSpec(
        "move", ObjectSpec("square"), cell=(0, 0))
    assert parse_instruction("add a small red star on the right").spec == EditSpec(
        "add", new_object=ObjectSpec("star", "red", "small", (1, 2)))
    assert parse_instruction("remove the triangle").spec == EditSpec("remove", ObjectSpec("triangle"))
    assert parse_instruction("make the star bigger").spec == EditSpec(
        "resize", ObjectSpec("star"), direction="bigger")
    assert parse_instruction("change the background to blue").spec == EditSpec("background", colour="blue")
    assert parse_instruction("a red circle").spec is None  # a description, not an instruction


def test_unknown_words_are_reported_not_dropped():
    understood = parse_prompt("a red circle wearing a tiny hat, photorealistic")
    assert understood.unknown_words == ["wearing", "hat", "photorealistic"]
    assert understood.spec.objects == (ObjectSpec("circle", "red"),)
    assert parse_instruction("make the circle sparkle").unknown_words == ["sparkle"]
