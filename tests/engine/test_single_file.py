"""Single-file checkpoints: a tiny SD pipeline written as one original-layout (LDM) .safetensors file, served from a
models file with `family` and `config` through Pictor's loading code, makes the folder's images byte for byte.

The file is made by the test-only converter in tests/tiny_pipelines.py (diffusers -> LDM key names, the reverse of
diffusers' own conversion); `config` is the folder's configs, tokenizer and scheduler with every weight file removed,
so every weight the backend runs with came out of the single file.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_pipelines import write_single_file

from pictor.engine.diffusers_backend import DiffusersBackend, weights_sha256
from pictor.engine.models_file import ModelSpec, load_models_file
from pictor.engine.protocol import EngineRequest


def _request(task: str, seed: int) -> EngineRequest:
    rng = np.random.default_rng(seed)
    picture = Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8), "RGB")
    mask = Image.new("L", (40, 32), 0)
    mask.paste(255, (8, 8, 24, 24))
    return EngineRequest(task, "a red cat on a blue background", 40, 32, seed, steps=3,
                         images=[picture] if task != "generate" else [], mask=mask if task == "inpaint" else None)


@pytest.fixture(scope="module")
def single_file(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("single-file")
    write_single_file(tiny_models["sd"], root / "tiny-sd.safetensors")
    shutil.copytree(tiny_models["sd"], root / "sd-config",
                    ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    (root / "models.toml").write_text('[[model]]\nname = "one-file"\npath = "tiny-sd.safetensors"\nfamily = "sd"\n'
                                      'config = "sd-config"\n')
    return root


def test_a_single_file_checkpoint_makes_the_folders_images(single_file, tiny_models):
    (spec,) = load_models_file(single_file / "models.toml")
    assert spec.path == str(single_file / "tiny-sd.safetensors") and spec.config == str(single_file / "sd-config")
    assert not list((single_file / "sd-config").rglob("*.safetensors"))  # the weights can only come from the file
    loaded = DiffusersBackend(spec)
    folder = DiffusersBackend(ModelSpec(name="folder", path=str(tiny_models["sd"])))
    assert type(loaded.pipe).__name__ == "StableDiffusionPipeline" and loaded.family.name == "sd"
    assert loaded.capabilities == folder.capabilities
    assert loaded.weights_hash == weights_sha256(single_file / "tiny-sd.safetensors") != folder.weights_hash
    for name in ("unet", "vae", "text_encoder"):
        ours, theirs = getattr(loaded.pipe, name).state_dict(), getattr(folder.pipe, name).state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), name
    for task in ("generate", "inpaint", "variation"):  # the derived pipelines share the file's weights too
        made, expected = loaded.run([_request(task, 5)])[0].image, folder.run([_request(task, 5)])[0].image
        assert np.array_equal(np.asarray(made), np.asarray(expected)), task


def test_a_single_file_needs_its_family(single_file):
    with pytest.raises(ValueError, match="single-file checkpoint needs `family`"):
        DiffusersBackend(ModelSpec(name="x", path=str(single_file / "tiny-sd.safetensors"),
                                   config=str(single_file / "sd-config")))
