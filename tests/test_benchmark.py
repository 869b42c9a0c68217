"""The benchmark judges a perfect generator (the renderer itself) perfect, and a wrong one wrong."""

import random

from PIL import Image

from pictor.embedded.evaluate import edit_cases, generation_cases, realise, run_edits, run_generation
from pictor.embedded.render import render
from pictor.embedded.world import Background, Scene


def test_the_renderer_scores_full_marks_with_crisp_edges_and_upscaling_does_not():
    rng = random.Random(0)
    cases = generation_cases(seed=4, per_category=8)
    by_prompt = {c.prompt: c for c in cases}

    def oracle(prompts, seeds, side=256):
        return [Image.fromarray(render(realise(by_prompt[p].spec, rng), side).image) for p in prompts]

    result = run_generation(oracle, cases)
    assert set(result.scores) >= {"single_object", "two_objects", "counting", "colours", "position",
                                  "colour_binding", "held_out_colours", "geneval_overall", "one_object_exact_set"}
    rise = result.scores.pop("edge_rise_px")
    assert all(score == 1.0 for score in result.scores.values()), result.failures
    assert rise <= 2.0
    # The same scenes drawn at 64 px and resampled to 256: right objects, blurred edges.
    upscaled = run_generation(lambda prompts, seeds: [im.resize((256, 256), Image.Resampling.LANCZOS)
                                                      for im in oracle(prompts, seeds, 64)], cases)
    assert upscaled.scores["edge_rise_px"] > 3.0


def test_an_empty_canvas_scores_nothing_and_unchanged_edits_fail():
    cases = generation_cases(seed=4, per_category=4)
    blank = Image.fromarray(render(Scene((), Background(("white",))), 64).image)
    result = run_generation(lambda prompts, seeds: [blank] * len(prompts), cases)
    assert result.scores["geneval_overall"] == 0.0

    edits = edit_cases(seed=1, count=24)
    unchanged = run_edits(lambda prompts, images, seeds: images, edits)
    assert unchanged.scores["edit_success"] == 0.0
    assert unchanged.scores["edit_psnr_outside_db"] == 99.0  # nothing outside was touched
