"""A short CPU training run: the loss falls, and a resumed run is the run it continues."""

import numpy as np
import torch

from pictor.embedded.data import DataConfig, batches, make_batch
from pictor.embedded.train import ModelConfig, TrainConfig, export_checkpoint, train
from pictor.engine.loading import load_model_folder

TINY = ModelConfig(channels=(16, 32, 32), text_width=32, text_layers=1, heads=2)


def tiny_config(steps: int, **extra) -> TrainConfig:
    return TrainConfig(seed=3, steps=steps, batch_size=8, learning_rate=2e-3, warmup_steps=5,
                       checkpoint_every=10, device="cpu", model=TINY,
                       data=DataConfig(resolution=32, max_objects=2), **extra)


def test_loss_falls_and_the_export_loads(tmp_path):
    log = train(tiny_config(80), tmp_path / "run", export_to=tmp_path / "model", progress=False)
    losses = [loss for _, loss in log]
    assert len(losses) == 80
    assert np.mean(losses[-15:]) < 0.7 * np.mean(losses[:5])
    pipe = load_model_folder(tmp_path / "model")
    assert pipe("a red circle", seed=0).images[0].size == (32, 32)


def test_resuming_reproduces_the_uninterrupted_run(tmp_path):
    train(tiny_config(20), tmp_path / "straight", progress=False)
    train(tiny_config(20), tmp_path / "resumed", progress=False, stop_at=10)
    train(tiny_config(20), tmp_path / "resumed", progress=False)
    a = export_checkpoint(tmp_path / "straight", tmp_path / "a").unet.state_dict()
    b = export_checkpoint(tmp_path / "resumed", tmp_path / "b").unet.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_batches_are_a_function_of_seed_and_step():
    config = DataConfig(resolution=32)
    first, again, other = make_batch(1, 5, 6, config), make_batch(1, 5, 6, config), make_batch(1, 6, 6, config)
    assert torch.equal(first.target, again.target) and first.texts == again.texts
    assert not torch.equal(first.target, other.target)
    assert set(first.task.tolist()) <= {0, 1, 2}


def test_worker_processes_render_the_same_batches_in_the_same_order():
    config = DataConfig(resolution=32)
    direct = list(batches(2, 3, 9, 4, config))
    parallel = list(batches(2, 3, 9, 4, config, workers=2))
    assert [b.texts for b in parallel] == [b.texts for b in direct]
    assert all(torch.equal(a.target, b.target) and torch.equal(a.condition, b.condition)
               for a, b in zip(direct, parallel))


def test_a_model_over_the_file_limit_ships_in_shards(tmp_path):
    """Weights are split into files under a size limit (16 MiB in the package) and load back whole."""
    from pictor.embedded.tokenizer import WorldTokenizer
    from pictor.embedded.train import build_models, export_pipeline

    tokenizer = WorldTokenizer.build()
    unet, text_encoder = build_models(tiny_config(1), tokenizer)
    export_pipeline(unet, text_encoder, tokenizer, tmp_path / "model", max_shard_size="50KB")
    shards = sorted((tmp_path / "model" / "unet").glob("*.safetensors"))
    assert len(shards) > 1 and all(path.stat().st_size < 60_000 for path in shards)
    loaded = load_model_folder(tmp_path / "model").unet.state_dict()
    original = unet.half().state_dict()
    assert all(torch.equal(loaded[k].half(), original[k]) for k in original)
