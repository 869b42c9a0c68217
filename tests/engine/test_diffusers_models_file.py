"""Operators' models: the models file, --model values, family detection, sources and the preview projection."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from tiny_pipelines import VARIANTS

from pictor.engine.diffusers_backend import DiffusersBackend
from pictor.engine.families import UnsupportedModel, detect_family
from pictor.engine.loading import ModelFolderError, pipeline_class_name, resolve_source
from pictor.engine.models_file import (
    ModelsFileError,
    ModelSpec,
    import_reference,
    load_models_file,
    model_specs,
    parse_model_arg,
)
from pictor.engine.previews import fit_latent_rgb, latents_to_previews


def test_models_file_resolves_relative_paths_and_keeps_options(tmp_path):
    (tmp_path / "weights" / "sdxl").mkdir(parents=True)
    (tmp_path / "models.toml").write_text(
        '[[model]]\nname = "xl"\npath = "weights/sdxl"\nfamily = "sdxl-turbo"\nsteps = 2\nguidance = 0.0\n'
        'dtype = "bf16"\ndevice = "cuda:1"\ndefault = true\n\n'
        '[[model]]\nname = "hub"\npath = "stabilityai/sd-turbo"\n')
    xl, hub = load_models_file(tmp_path / "models.toml")
    assert xl.path == str(tmp_path / "weights" / "sdxl") and xl.family == "sdxl-turbo" and xl.steps == 2
    assert (xl.dtype, xl.device, xl.default, xl.guidance) == ("bf16", "cuda:1", True, 0.0)
    assert hub.path == "stabilityai/sd-turbo" and hub.dtype == "auto" and not hub.default


@pytest.mark.parametrize("text, error", [
    ('[[model]]\nname = "a"\n', "needs name and path"),
    ('[[model]]\nname = "a"\npath = "x"\nsteeps = 3\n', "unknown keys steeps"),
    ('[[model]]\nname = "a"\npath = "x"\ndtype = "int4"\n', "dtype 'int4'"),
    ('[[model]]\nname = "a/b"\npath = "x"\n', "plain name"),
    ('name = "a"\n', "only \\[\\[model\\]\\] tables"),
    ('[[model]\n', "models file"),
    ('[[model]]\nname = "a"\npath = "x"\nvalidator = "scorers.clip"\n', "not an import reference"),
    ('[[model]]\nname = "a"\npath = "x"\nvalidator = 3\n', "not an import reference"),
    ('[[model]]\nname = "a"\npath = "x"\nrelative_to = "/"\n', "unknown keys relative_to"),
])
def test_models_file_errors_say_what_is_wrong(tmp_path, text, error):
    (tmp_path / "models.toml").write_text(text)
    with pytest.raises(ModelsFileError, match=error):
        load_models_file(tmp_path / "models.toml")


def test_command_line_models_join_the_file_and_names_are_unique(tmp_path):
    (tmp_path / "m.toml").write_text('[[model]]\nname = "a"\npath = "/x"\n')
    assert [s.name for s in model_specs(["b=/y", "c = /z"], tmp_path / "m.toml")] == ["a", "b", "c"]
    assert parse_model_arg("sd=/models/sd=1.5").path == "/models/sd=1.5"  # only the first '=' splits
    with pytest.raises(ModelsFileError, match="named twice"):
        model_specs(["a=/other"], tmp_path / "m.toml")
    with pytest.raises(ModelsFileError, match="NAME=PATH"):
        parse_model_arg("just-a-path")


def test_family_detection_reads_the_folder(tiny_models, tmp_path):
    # The hint is what the backend passes (the model's name and path): turbo folders are named so.
    detected = {name: detect_family(path, pipeline_class_name(path), str(path)) for name, path in tiny_models.items()}
    # incl. 9-channel inpainting (SD and SDXL), dev vs schnell, SD 2.x as sd
    assert detected == {name: VARIANTS.get(name, name) for name in tiny_models}
    assert detect_family(tiny_models["sdxl-turbo"], "StableDiffusionXLPipeline") == "sdxl"  # no name, no turbo
    assert detect_family(tiny_models["sd"], "StableDiffusionPipeline", "my-sd-turbo") == "sd-turbo"
    assert detect_family(tiny_models["sdxl"], "StableDiffusionXLPipeline", "/models/SDXL-Turbo") == "sdxl-turbo"
    with pytest.raises(UnsupportedModel, match="StableCascadePriorPipeline is not one Pictor serves"):
        detect_family(tiny_models["sd"], "StableCascadePriorPipeline")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_models["sd"], broken)
    (broken / "model_index.json").write_text(json.dumps({"no": "class"}))
    with pytest.raises(ModelFolderError, match="not a valid model index"):
        pipeline_class_name(broken)


def test_relative_paths_local_first_then_hub_ids(monkeypatch, tmp_path):
    """A relative value that exists next to the models file is local; one with a hub id's shape that does not is a
    hub id (and, offline and not cached, the error names both the local path looked for and the hub); anything else
    is local, so a missing one is reported with the full path."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    (tmp_path / "here").mkdir()
    (tmp_path / "models.toml").write_text("".join(
        f'[[model]]\nname = "m{i}"\npath = "{path}"\n' for i, path in enumerate(
            ("here", "weights/sd", "./weights/sd", "weights", "ckpt/model.safetensors", "a/b/c"))))
    here, typo, dotted, bare, single, deep = load_models_file(tmp_path / "models.toml")
    assert here.path == str(tmp_path / "here") and here.relative_to is None
    assert typo.path == "weights/sd" and typo.relative_to == str(tmp_path)  # kept as a hub id
    assert [s.path for s in (dotted, bare, single, deep)] == [
        str(tmp_path / "./weights/sd"), str(tmp_path / "weights"), str(tmp_path / "ckpt/model.safetensors"),
        str(tmp_path / "a/b/c")]
    with pytest.raises(ModelFolderError) as typo_error:
        resolve_source(typo.path, typo.relative_to)
    message = str(typo_error.value)
    assert f"no such folder or file relative to the models file ({tmp_path / 'weights' / 'sd'})" in message
    assert "not in the hub cache (HF_HUB_OFFLINE is set)" in message
    with pytest.raises(ModelFolderError, match="no such folder or file$"):
        resolve_source(bare.path)
    # The backend passes the spec's folder on: its error is the same.
    with pytest.raises(ModelFolderError, match="relative to the models file"):
        DiffusersBackend(typo)
    # A --model value is used as given: a missing relative one is reported with the folder it was looked in.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelFolderError, match=f"missing: no such folder or file \\({tmp_path / 'missing'}\\)"):
        resolve_source(parse_model_arg("x=missing").path)


def test_a_validator_reference_is_imported_when_the_model_loads(tmp_path, monkeypatch, tiny_models):
    (tmp_path / "my_scorers.py").write_text("class Scorer:\n    name = 'mine'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_reference("my_scorers:Scorer").name == "mine"
    with pytest.raises(ModelsFileError, match="cannot import module 'no_such_scorers'.*PYTHONPATH"):
        import_reference("no_such_scorers:Scorer")
    with pytest.raises(ModelsFileError, match="module 'my_scorers' has no attribute 'Missing'"):
        import_reference("my_scorers:Missing")
    # At load (server start), before any weights are read: the error names the model and the reference.
    with pytest.raises(ModelsFileError, match="model tiny: validator 'my_scorers:Missing'"):
        DiffusersBackend(ModelSpec(name="tiny", path=str(tiny_models["sd"]), validator="my_scorers:Missing"))
    backend = DiffusersBackend(ModelSpec(name="tiny", path=str(tiny_models["sd"]), validator="my_scorers:Scorer"))
    assert backend.capabilities.validator == "my_scorers:Scorer"  # the service makes it (service/validation)
    assert DiffusersBackend(ModelSpec(name="plain", path=str(tiny_models["sd"]))).capabilities.validator is None


def test_a_hub_id_offline_and_not_cached_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelFolderError, match="HF_HUB_OFFLINE is set"):
        resolve_source("someone/no-such-model")
    with pytest.raises(ModelFolderError, match="no such folder or file"):
        resolve_source(str(tmp_path / "missing" / "folder"))
    assert resolve_source(str(tmp_path)) == tmp_path


class LinearVae(torch.nn.Module):
    """A VAE whose encoder is a known linear map per latent pixel (2x2 average, then 3 -> 4 channels)."""

    def __init__(self):
        super().__init__()
        self.mix = torch.nn.Conv2d(3, 4, 1)
        torch.nn.init.normal_(self.mix.weight, generator=torch.Generator().manual_seed(1))
        self.config = type("Config", (), {"scaling_factor": 0.5, "shift_factor": 0.1})()

    def encode(self, images: torch.Tensor):
        latents = self.mix(torch.nn.functional.avg_pool2d(images, 2))
        return type("Output", (), {"latent_dist": type("Dist", (), {"mode": lambda _self: latents})()})()


def test_the_preview_projection_inverts_a_linear_vae():
    vae = LinearVae()
    projection = fit_latent_rgb(vae, vae_scale_factor=2)
    assert projection.shape == (5, 3)
    red = torch.zeros(1, 3, 8, 8)
    red[:, 0] = 1.0  # pure red in [-1, 1]: (1, 0, 0) -> RGB (255, 128, 128)
    red[:, 1:] = 0.0
    with torch.no_grad():
        latents = (vae.encode(red).latent_dist.mode() - 0.1) * 0.5
    (preview,) = latents_to_previews(latents, projection)
    assert preview.size == (4, 4)
    assert all(abs(a - b) <= 1 for a, b in zip(preview.getpixel((2, 2)), (255, 128, 128)))
