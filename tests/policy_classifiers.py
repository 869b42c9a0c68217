"""An operator's own image classifier, as a server loads one (PICTOR_IMAGE_CLASSIFIER=module:factory): it calls
an image sexual when most of it is strongly red. Used to prove that a classifier's verdict blocks requests."""

from __future__ import annotations

import numpy as np
from PIL import Image

from pictor.governance.policy import ClassifierResult


class RedIsExplicit:
    name = "red-is-explicit"

    def classify(self, image: Image.Image) -> ClassifierResult:
        rgb = np.asarray(image.convert("RGB")).astype(int)
        red = (rgb[..., 0] > 150) & (rgb[..., 1] < 90) & (rgb[..., 2] < 90)
        return ClassifierResult.scored({"sexual": float(red.mean() > 0.05)}, classifier=self.name)
