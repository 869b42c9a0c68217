"""The NudeNet image classifier (the optional extra) on real images: no false positives on the world's
renders nor on natural photographs (scikit-image's bundled samples), at the strictest level's threshold."""

from __future__ import annotations

import random

import pytest
import skimage.data
from PIL import Image

from pictor.embedded.render import render
from pictor.embedded.world import WorldConfig, sample_scene
from pictor.governance.classifiers import NudeNetClassifier, load_classifier, sexual_score
from pictor.governance.policy import Policy

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "colorwheel",
          "camera")


@pytest.fixture(scope="module")
def nudenet() -> NudeNetClassifier:
    classifier = load_classifier("nudenet")
    assert isinstance(classifier, NudeNetClassifier)
    return classifier


def strictest_threshold() -> float:
    return min(level.image_thresholds["sexual"] for level in Policy.load().levels.values())


@pytest.mark.parametrize("name", PHOTOS)
def test_natural_photos_are_not_sexual(nudenet, name):
    image = Image.fromarray(getattr(skimage.data, name)())
    result = nudenet.classify(image)
    assert result.state == "scored" and result.classifier == "nudenet"
    assert result.scores["sexual"] < strictest_threshold(), (name, result.scores)
    decision = Policy.load().with_classifier(nudenet).evaluate_image(image, "strict", "output")
    assert decision.allowed and dict(decision.scores) == result.scores


def test_the_worlds_images_are_not_sexual(nudenet):
    rng = random.Random(3)
    world = WorldConfig(max_objects=4, gradient_probability=0.5)
    scores = [nudenet.classify(Image.fromarray(render(sample_scene(rng, world), 256).image)).scores["sexual"]
              for _ in range(40)]
    assert max(scores) < strictest_threshold()


def test_a_lone_frame_filling_detection_is_discounted_and_a_corroborated_one_is_not():
    lone = [{"class": "BUTTOCKS_EXPOSED", "score": 0.8, "box": [0, 0, 100, 100]}]
    assert sexual_score(lone, 100, 100) == pytest.approx(0.2)
    with_face = lone + [{"class": "FACE_FEMALE", "score": 0.7, "box": [10, 10, 20, 20]}]
    assert sexual_score(with_face, 100, 100) == pytest.approx(0.8)
    small = [{"class": "FEMALE_BREAST_EXPOSED", "score": 0.6, "box": [10, 10, 30, 30]}]
    assert sexual_score(small, 100, 100) == pytest.approx(0.6)
    assert sexual_score([{"class": "FEET_EXPOSED", "score": 0.9, "box": [0, 0, 5, 5]}], 100, 100) == 0.0


def test_an_operator_classifier_is_loaded_by_name():
    classifier = load_classifier("tests.policy_classifiers:RedIsExplicit")
    assert classifier.classify(Image.new("RGB", (8, 8), (220, 30, 30))).scores["sexual"] == 1.0
    with pytest.raises(ValueError):
        load_classifier("not-a-spec")
