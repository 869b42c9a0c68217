"""The PNG writer: lossless for every mode Pictor returns, readable by Pillow."""

import io

import numpy as np
import pytest
from PIL import Image

from pictor.service.encoding import encode, png_bytes


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "LA"])
def test_png_round_trips_exactly(mode):
    rng = np.random.default_rng(0)
    channels = {"RGB": 3, "RGBA": 4, "L": 1, "P": 1, "LA": 2}[mode]
    array = rng.integers(0, 256, size=(37, 53, channels), dtype=np.uint8).squeeze()
    image = Image.fromarray(array, mode if mode != "P" else "L")
    if mode == "P":
        image = image.convert("P")
    data = png_bytes(image)
    decoded = Image.open(io.BytesIO(data))
    assert decoded.format == "PNG" and decoded.size == (53, 37)
    expected = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    assert decoded.mode == expected.mode
    assert np.array_equal(np.asarray(decoded), np.asarray(expected))


def test_smooth_images_compress_and_encode_dispatches_by_format():
    gradient = np.tile(np.linspace(0, 255, 256, dtype=np.uint8), (256, 1))
    image = Image.fromarray(np.stack([gradient, gradient.T, gradient], axis=-1), "RGB")
    png = encode(image, "png")
    assert len(png) < 256 * 256 * 3 / 10
    assert Image.open(io.BytesIO(encode(image, "jpeg", 80))).format == "JPEG"
    assert Image.open(io.BytesIO(encode(image, "webp"))).format == "WEBP"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), np.asarray(image))
