"""Image classifiers for the content policy, chosen by the operator (`PICTOR_IMAGE_CLASSIFIER`).

- `nudenet`: the NudeNet detector (its 12 MB ONNX model ships inside its wheel; `pip install 'pictor[nudenet]'`).
  Its licence files disagree (MIT in the metadata, AGPL-3.0 in the text), so it is an optional extra, off by
  default. It detects exposed body parts; the `sexual` score is the highest confidence among the exposed
  genitalia, breasts, buttocks and anus it finds.
- `module:name`: any object the operator provides (a class or factory called with no arguments) with a
  `name` and a `classify(image) -> ClassifierResult` method, e.g. a site's own model.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
from PIL import Image

from pictor.governance.policy import ClassifierResult, ImageClassifier

# NudeNet's labels that make an image sexual content (covered parts, faces and feet do not).
SEXUAL_LABELS = frozenset({"FEMALE_GENITALIA_EXPOSED", "MALE_GENITALIA_EXPOSED", "FEMALE_BREAST_EXPOSED",
                           "BUTTOCKS_EXPOSED", "ANUS_EXPOSED"})
CORROBORATING_SCORE = 0.25  # another body part (a face, a belly, feet...) at least this sure confirms a detection


class NudeNetClassifier:
    name = "nudenet"

    def __init__(self) -> None:
        try:
            from nudenet import NudeDetector
        except ImportError as error:
            raise RuntimeError("the nudenet image classifier needs its extra: pip install 'pictor[nudenet]'") from error
        self._detector = NudeDetector()

    def classify(self, image: Any) -> ClassifierResult:
        if not isinstance(image, Image.Image):
            raise TypeError("the nudenet classifier reads decoded images")
        # NudeNet converts its input from RGBA (then to its own channel order): give it exactly that.
        pixels = np.ascontiguousarray(np.asarray(image.convert("RGBA")))
        found = self._detector.detect(pixels)
        return ClassifierResult.scored({"sexual": round(sexual_score(found, image.width, image.height), 4)},
                                       classifier=self.name)


def sexual_score(found: list[dict[str, Any]], width: int, height: int) -> float:
    """The highest confidence of an exposed part, where a detection spanning most of the frame with no other body
    part anywhere counts a quarter: alone, NudeNet reads large smooth round shapes as exposed buttocks (a colour
    wheel scored 0.83, a coffee cup 0.30; see tests/governance/test_image_classifier.py)."""
    corroborated = any(hit["class"] not in SEXUAL_LABELS and hit["score"] >= CORROBORATING_SCORE for hit in found)
    best = 0.0
    for hit in found:
        if hit["class"] not in SEXUAL_LABELS:
            continue
        _, _, box_width, box_height = hit["box"]
        score = float(hit["score"])
        if box_width * box_height > 0.5 * width * height and not corroborated:
            score *= 0.25
        best = max(best, score)
    return min(1.0, best)


def load_classifier(spec: str) -> ImageClassifier:
    """The classifier a setting names: `nudenet`, or `package.module:factory`."""
    if spec == "nudenet":
        return NudeNetClassifier()
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"image classifier {spec!r}: use 'nudenet' or 'package.module:factory'")
    factory = getattr(importlib.import_module(module_name), attribute)
    return factory()
