"""The `pictor` command line, run as a user runs it."""

import json
import sqlite3
import subprocess
import sys
from contextlib import closing

import numpy as np
from PIL import Image


def pictor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pictor.cli", *args], capture_output=True, text=True,
                          timeout=300, check=False)


def test_generate_then_edit_inside_a_mask(tmp_path):
    out = tmp_path / "star.png"
    done = pictor("generate", "a red star in the top left on a white background", "--size", "96x96",
                  "--seed", "4", "-o", str(out), "--data-dir", str(tmp_path / "data"))
    assert done.returncode == 0, done.stderr
    assert "seed 4" in done.stdout
    image = Image.open(out)
    assert image.size == (96, 96) and image.mode == "RGB"

    mask = Image.new("L", (96, 96), 0)
    mask.paste(255, (48, 48, 96, 96))
    mask.save(tmp_path / "mask.png")
    edited = tmp_path / "edited.png"
    done = pictor("edit", str(out), "a blue heart", "--mask", str(tmp_path / "mask.png"), "-o", str(edited),
                  "--data-dir", str(tmp_path / "data"))
    assert done.returncode == 0, done.stderr
    before, after = np.asarray(image), np.asarray(Image.open(edited))
    assert np.array_equal(before[:48], after[:48]) and np.array_equal(before[:, :48], after[:, :48])


def test_unknown_words_are_printed(tmp_path):
    done = pictor("generate", "a red circle riding a bicycle", "-o", str(tmp_path / "x.png"),
                  "--data-dir", str(tmp_path / "data"))
    assert done.returncode == 0, done.stderr
    assert "riding, bicycle" in done.stderr


def test_a_folder_that_is_not_a_model_is_a_clear_error(tmp_path):
    done = pictor("generate", "a red circle", "--model", str(tmp_path), "-o", str(tmp_path / "x.png"),
                  "--data-dir", str(tmp_path / "data"))
    assert done.returncode != 0
    assert "no model_index.json" in done.stderr


def test_generated_and_edited_files_are_watermarked_signed_and_audited(tmp_path):
    """generate and edit run the server's own image service on the data folder: verify finds each file's manifest,
    watermark and audit entry there, the edit names its parent, and the audit log verifies."""
    data = str(tmp_path / "data")
    made = tmp_path / "circle.png"
    done = pictor("generate", "a blue circle in the middle", "--size", "128x128", "--seed", "2", "-o", str(made),
                  "--data-dir", data)
    assert done.returncode == 0, done.stderr
    report = verified(made, data)
    image_id, index = report["image"]["id"], report["image"]["audit_index"]
    assert report["c2pa"]["validation_state"] == "Trusted"
    assert report["c2pa"]["pictor"]["artifact_id"] == image_id and report["c2pa"]["pictor"]["audit_index"] == index
    assert report["watermark"]["detected"] and report["watermark"]["artifact_id"] == image_id
    assert f"{image_id}, audit entry {index})" in done.stdout
    with closing(sqlite3.connect(tmp_path / "data" / "pictor.db")) as db:
        (entry,) = db.execute("SELECT entry FROM audit_entries WHERE idx = ?", (index,)).fetchone()
    assert json.loads(entry)["artifact_id"] == image_id and json.loads(entry)["event"] == "image"

    mask = Image.new("L", (128, 128), 0)
    mask.paste(255, (64, 64, 128, 128))
    mask.save(tmp_path / "mask.png")
    edited = tmp_path / "edited.webp"
    done = pictor("edit", str(made), "a red square", "--mask", str(tmp_path / "mask.png"), "-o", str(edited),
                  "--data-dir", data)
    assert done.returncode == 0, done.stderr
    assert edited.read_bytes()[8:12] == b"WEBP"  # the format the output's suffix names
    report = verified(edited, data)
    assert report["c2pa"]["validation_state"] == "Trusted" and report["c2pa"]["lineage"] == [image_id]
    assert report["image"]["parents"] == [image_id] and report["image"]["match"] == "exact"

    done = pictor("audit", "verify", "--data-dir", data)
    assert done.returncode == 0 and "OK" in done.stdout, done.stdout + done.stderr


def verified(path, data: str) -> dict:
    done = pictor("verify", str(path), "--json", "--data-dir", data)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)
