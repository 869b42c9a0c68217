"""The `pictor` command line, run as a user runs it."""

import subprocess
import sys

import numpy as np
from PIL import Image


def pictor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pictor.cli", *args], capture_output=True, text=True,
                          timeout=300, check=False)


def test_generate_then_edit_inside_a_mask(tmp_path):
    out = tmp_path / "star.png"
    done = pictor("generate", "a red star in the top left on a white background", "--size", "96x96",
                  "--seed", "4", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "seed 4" in done.stdout
    image = Image.open(out)
    assert image.size == (96, 96) and image.mode == "RGB"

    mask = Image.new("L", (96, 96), 0)
    mask.paste(255, (48, 48, 96, 96))
    mask.save(tmp_path / "mask.png")
    edited = tmp_path / "edited.png"
    done = pictor("edit", str(out), "a blue heart", "--mask", str(tmp_path / "mask.png"), "-o", str(edited))
    assert done.returncode == 0, done.stderr
    before, after = np.asarray(image), np.asarray(Image.open(edited))
    assert np.array_equal(before[:48], after[:48]) and np.array_equal(before[:, :48], after[:, :48])


def test_unknown_words_are_printed(tmp_path):
    done = pictor("generate", "a red circle riding a bicycle", "-o", str(tmp_path / "x.png"))
    assert done.returncode == 0, done.stderr
    assert "riding, bicycle" in done.stderr


def test_a_folder_that_is_not_a_model_is_a_clear_error(tmp_path):
    done = pictor("generate", "a red circle", "--model", str(tmp_path), "-o", str(tmp_path / "x.png"))
    assert done.returncode != 0
    assert "no model_index.json" in done.stderr
