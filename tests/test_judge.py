"""The judge reads scenes back from real renders: clean at 32, 64 and 256 px, and blurred and noisy
at 64 px to stand for a small model's outputs. Accuracies are per scene: the object count right and,
matching objects by cell, every object's shape, colour and size right."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from pictor.embedded import render, world
from pictor.embedded.judge import Detection, background_colours, background_direction, detect
from pictor.embedded.world import COLOURS, Background, Scene, SceneObject, WorldConfig

N_SCENES = 300
REQUIRED_ACCURACY = 0.99


def _scenes(seed: int, n: int = N_SCENES, gradient_probability: float = 0.3) -> list[Scene]:
    """Random scenes with 1, 2, 3 and 4 objects in turn (so every count is well represented)."""
    rng = random.Random(seed)
    config = WorldConfig(gradient_probability=gradient_probability)
    return [world.sample_scene(rng, config, n_objects=1 + i % 4) for i in range(n)]


def _degrade(image: np.ndarray, sigma: float, noise: float, seed: int) -> np.ndarray:
    """Gaussian blur and additive noise, as a stand-in for a small generative model's output."""
    pixels = ndimage.gaussian_filter(image.astype(np.float32), (sigma, sigma, 0))
    pixels += np.random.default_rng(seed).normal(0.0, noise, pixels.shape)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _read_back(scene: Scene, detection: Detection) -> bool:
    truth = {o.cell: (o.shape, o.colour, o.size) for o in scene.objects}
    found = {o.cell: (o.shape, o.colour, o.size) for o in detection.objects}
    return len(detection.objects) == len(scene.objects) and found == truth


def _accuracy(name: str, scenes: list[Scene], images: list[np.ndarray]) -> float:
    failures = []
    for index, (scene, image) in enumerate(zip(scenes, images, strict=True)):
        detection = detect(image)
        if not _read_back(scene, detection):
            failures.append((index, scene, [(o.cell, o.shape, o.colour, o.size) for o in detection.objects]))
    accuracy = 1 - len(failures) / len(scenes)
    print(f"\n{name}: {accuracy:.2%} of {len(scenes)} scenes read back entirely")
    for failure in failures[:5]:
        print("  missed:", *failure)
    return accuracy


@pytest.fixture(scope="module")
def scenes_64() -> tuple[list[Scene], list[np.ndarray]]:
    scenes = _scenes(seed=64)
    return scenes, [render.render(scene, 64).image for scene in scenes]


def test_sampled_scenes_cover_the_world(scenes_64: tuple[list[Scene], list[np.ndarray]]) -> None:
    scenes, _ = scenes_64
    assert sum(s.background.is_gradient for s in scenes) >= 50
    directions = {s.background.direction for s in scenes if s.background.is_gradient}
    assert directions == set(world.GRADIENT_DIRECTIONS)
    assert {len(s.objects) for s in scenes} == {1, 2, 3, 4}
    objects = [o for s in scenes for o in s.objects]
    assert {o.shape for o in objects} == set(world.SHAPES)
    assert {o.colour for o in objects} == set(world.COLOURS)
    assert {o.size for o in objects} == set(world.SIZES)


def test_reads_renders_at_64(scenes_64: tuple[list[Scene], list[np.ndarray]]) -> None:
    scenes, images = scenes_64
    start = time.perf_counter()
    accuracy = _accuracy("64 px renders", scenes, images)
    per_image = (time.perf_counter() - start) / len(images)
    print(f"  {per_image * 1e3:.2f} ms per 64 px detection")
    assert accuracy >= REQUIRED_ACCURACY
    assert per_image < 0.03  # a few ms on a laptop; generous for slow machines


def test_reads_blurred_noisy_images_at_64(scenes_64: tuple[list[Scene], list[np.ndarray]]) -> None:
    scenes, images = scenes_64
    degraded = [_degrade(image, sigma=0.8, noise=3.0, seed=i) for i, image in enumerate(images)]
    assert _accuracy("64 px, blur 0.8 px + noise 3", scenes, degraded) >= REQUIRED_ACCURACY


def test_reads_renders_at_32() -> None:
    # Even a small star is 5.4 px across here; the exact anti-aliased templates still read it.
    scenes = _scenes(seed=32)
    images = [render.render(scene, 32).image for scene in scenes]
    assert _accuracy("32 px renders", scenes, images) >= REQUIRED_ACCURACY


def test_reads_renders_at_256() -> None:
    scenes = _scenes(seed=256)
    images = [render.render(scene, 256).image for scene in scenes]
    assert _accuracy("256 px renders", scenes, images) >= REQUIRED_ACCURACY


def test_boxes_areas_and_background_match_the_render(scenes_64: tuple[list[Scene], list[np.ndarray]]) -> None:
    scenes, images = scenes_64
    for scene, image in zip(scenes[:100], images[:100], strict=True):
        rendering = render.render(scene, 64)
        detection = detect(image)
        expected = render.render_background(scene.background, 64, 64)
        assert detection.background.shape == (64, 64, 3)
        assert np.abs(detection.background - expected).max() < 2.0
        found = {o.cell: o for o in detection.objects}
        for obj, box, mask in zip(scene.objects, rendering.boxes, rendering.masks, strict=True):
            detected = found[obj.cell]
            assert np.abs(np.subtract(detected.box, box)).max() <= 1
            assert abs(detected.area - mask.sum()) <= 0.05 * mask.sum() + 1
            ys, xs = np.mgrid[0:64, 0:64] + 0.5
            centroid = ((mask * xs).sum() / mask.sum(), (mask * ys).sum() / mask.sum())
            assert np.hypot(*np.subtract(detected.centroid, centroid)) < 0.5
            assert 0.5 < detected.confidence <= 1.0


def test_background_colours_plain_and_gradient() -> None:
    for name in COLOURS:  # plain, with objects on it
        scene = world.sample_scene(random.Random(name), WorldConfig(gradient_probability=0.0))
        scene = Scene(scene.objects, Background((name,)))
        for image in (render.render(scene, 64).image, _degrade(render.render(scene, 64).image, 0.8, 3.0, 0)):
            detection = detect(image)
            assert background_colours(detection) == (name,)
            assert background_direction(detection) is None
    for i, scene in enumerate(_scenes(seed=7, n=90, gradient_probability=1.0)):
        for side in (32, 64):
            image = render.render(scene, side).image
            if i % 2:
                image = _degrade(image, 0.8, 3.0, i)
            detection = detect(image)
            assert background_colours(detection) == scene.background.colours, (scene, side)
            assert background_direction(detection) == scene.background.direction, (scene, side)


def test_neighbours_stay_apart() -> None:
    # Large objects in adjacent cells are ~1 px apart at 32 px, 2 px at 64 px; anti-aliasing and blur
    # join them: of one colour, of two, and a faint one (yellow on orange) beside a strong one.
    layouts = [((1, 0), (1, 1), (1, 2)), ((0, 0), (0, 1), (1, 0), (1, 1)), ((0, 0), (1, 1))]
    pairs = (("white", ("black", "black")), ("gray", ("yellow", "blue")), ("orange", ("yellow", "blue")))
    for shape in ("square", "circle", "heart"):
        for cells in layouts:
            for background, colours in pairs:
                objects = tuple(SceneObject(shape, colours[i % 2], "large", c) for i, c in enumerate(cells))
                scene = Scene(objects, Background((background,)))
                for image in (render.render(scene, 32).image,
                              _degrade(render.render(scene, 64).image, 1.2, 3.0, 0)):
                    assert _read_back(scene, detect(image)), (scene, image.shape)


def test_objects_touching_the_border_of_a_gradient() -> None:
    # Large squares come within a pixel of the edge and cover most of the border ring's sides.
    cells = ((0, 0), (1, 0), (2, 0), (0, 2))
    for direction in world.GRADIENT_DIRECTIONS:
        scene = Scene(tuple(SceneObject("square", "purple", "large", c) for c in cells),
                      Background(("yellow", "white"), direction))
        for side in (32, 64):
            detection = detect(render.render(scene, side).image)
            assert _read_back(scene, detection)
            assert background_colours(detection) == ("yellow", "white")


def test_noise_alone_is_not_an_object() -> None:
    rng = np.random.default_rng(0)
    for name in COLOURS:
        plain = render.render_background(Background((name,)), 64, 64)
        noisy = np.clip(np.rint(plain + rng.normal(0.0, 8.0, plain.shape)), 0, 255).astype(np.uint8)
        assert detect(noisy).objects == []


def test_accepts_other_image_forms_and_sizes() -> None:
    scene = world.sample_scene(random.Random(5), WorldConfig(gradient_probability=1.0), n_objects=3)
    image = render.render(scene, 64).image
    for form in (Image.fromarray(image), image.astype(np.float32) / 255,
                 np.concatenate([image, np.full((64, 64, 1), 255, np.uint8)], axis=2)):
        assert _read_back(scene, detect(form))
    for width, height in ((96, 64), (64, 48), (1024, 1024)):
        detection = detect(render.render(scene, width, height).image)
        assert detection.background.shape == (height, width, 3)
        assert _read_back(scene, detection)
