import math

import numpy as np
import pytest

from pictor.embedded.render import render
from pictor.embedded.world import COLOURS, SHAPES, SIZES, Background, Scene, SceneObject


def scene_of(shape: str, size: str = "large", cell=(1, 1), background=("white",), direction=None) -> Scene:
    return Scene((SceneObject(shape, "red", size, cell),), Background(background, direction))


@pytest.mark.parametrize("resolution", [32, 64, 200, 512])
def test_circle_covers_its_area_and_sits_in_its_cell(resolution):
    rendering = render(scene_of("circle"), resolution)
    side = SIZES["large"] * resolution
    assert rendering.masks[0].sum() == pytest.approx(math.pi / 4 * side * side, rel=0.03)
    x0, y0, x1, y1 = rendering.boxes[0]
    assert (x0 + x1) / 2 == pytest.approx(resolution / 2, abs=1)
    assert (y0 + y1) / 2 == pytest.approx(resolution / 2, abs=1)
    centre = rendering.image[resolution // 2, resolution // 2]
    assert tuple(centre) == COLOURS["red"]


def test_edges_are_anti_aliased():
    mask = render(scene_of("circle"), 64).masks[0]
    partial = ((mask > 0.02) & (mask < 0.98)).sum()
    assert partial > 20  # a ring of partly covered pixels, not a hard staircase


def test_shapes_are_different_and_cells_are_placed():
    masks = {s: render(scene_of(s), 96).masks[0] > 0.5 for s in SHAPES}
    for a in SHAPES:
        for b in SHAPES:
            if a < b:
                iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
                assert iou < 0.9, (a, b, iou)
    top_left = render(scene_of("square", cell=(0, 0)), 90).boxes[0]
    assert top_left[0] < 30 and top_left[1] < 30


def test_gradient_background_runs_between_its_colours():
    image = render(Scene((), Background(("black", "white"), "horizontal")), 100).image.astype(int)
    assert image[50, 0].sum() < 3 * 40 and image[50, -1].sum() > 3 * 230
    assert (np.diff(image[50, :, 0]) >= 0).all()
    vertical = render(Scene((), Background(("black", "white"), "vertical")), 100).image.astype(int)
    assert vertical[0, 50].sum() < vertical[-1, 50].sum()


def test_render_is_deterministic_and_sizes_are_ordered():
    a, b = render(scene_of("star"), 64), render(scene_of("star"), 64)
    assert np.array_equal(a.image, b.image)
    areas = [render(scene_of("square", size), 64).masks[0].sum() for size in ("small", "medium", "large")]
    assert areas[0] < areas[1] < areas[2]
