"""A short CPU training run of both stages: the losses fall, and a resumed run is the run it continues."""

import numpy as np
import torch

from pictor.embedded.data import DataConfig, autoencoder_batch, make_examples
from pictor.embedded.train import AutoencoderConfig, TrainConfig, TransformerConfig, export_checkpoint, train
from pictor.engine.loading import load_model_folder


def tiny_config(autoencoder_steps: int, transformer_steps: int) -> TrainConfig:
    return TrainConfig(
        seed=3, checkpoint_every=10, device="cpu",
        autoencoder=AutoencoderConfig(steps=autoencoder_steps, batch_size=8, learning_rate=2e-3, warmup_steps=5,
                                      width=32),
        transformer=TransformerConfig(steps=transformer_steps, batch_size=8, learning_rate=2e-3, warmup_steps=5,
                                      width=32, layers=1, heads=2, text_width=32, text_layers=1, text_heads=2),
        data=DataConfig(field=48, max_objects=2))


def test_losses_fall_and_the_export_loads(tmp_path):
    logs = train(tiny_config(60, 60), tmp_path / "run", export_to=tmp_path / "model", progress=False)
    autoencoder = [loss for _, loss, _ in logs["autoencoder"]]
    transformer = [loss for _, loss in logs["transformer"]]
    assert len(autoencoder) == 60 and len(transformer) == 60
    assert np.mean(autoencoder[-10:]) < 0.7 * np.mean(autoencoder[:5])
    assert np.mean(transformer[-10:]) < 0.9 * np.mean(transformer[:5])
    pipe = load_model_folder(tmp_path / "model")
    assert pipe("a red circle", seed=0).images[0].size == (48, 48)
    assert pipe("a red circle", width=200, height=120, seed=0).images[0].size == (200, 120)


def test_resuming_reproduces_the_uninterrupted_run(tmp_path):
    train(tiny_config(8, 12), tmp_path / "straight", progress=False)
    train(tiny_config(8, 12), tmp_path / "resumed", progress=False, stop_at=5)  # the autoencoder's step 5
    train(tiny_config(8, 12), tmp_path / "resumed", progress=False, stop_at=10)  # its end, then the transformer's 10
    train(tiny_config(8, 12), tmp_path / "resumed", progress=False)
    a = export_checkpoint(tmp_path / "straight", tmp_path / "a")
    b = export_checkpoint(tmp_path / "resumed", tmp_path / "b")
    for part in ("autoencoder", "transformer", "text_encoder"):
        left, right = getattr(a, part).state_dict(), getattr(b, part).state_dict()
        assert all(torch.equal(left[k], right[k]) for k in left), part


def test_batches_are_a_function_of_seed_and_step():
    config = DataConfig(field=48)
    first, again = autoencoder_batch(1, 5, 6, config, 6.0), autoencoder_batch(1, 5, 6, config, 6.0)
    other = autoencoder_batch(1, 6, 6, config, 6.0)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1]["distance"], again[1]["distance"])
    assert not torch.equal(first[0], other[0])
    examples, same = make_examples(1, 5, 12, config), make_examples(1, 5, 12, config)
    assert [e.text for e in examples] == [e.text for e in same]
    assert {e.task for e in make_examples(1, 7, 64, config)} == {"generate", "edit", "inpaint"}


def test_a_model_over_the_file_limit_ships_in_shards(tmp_path):
    """Weights are split into files under a size limit (16 MiB in the package) and load back whole."""
    from pictor.embedded.tokenizer import WorldTokenizer
    from pictor.embedded.train import build_autoencoder, build_generator, export_pipeline

    config = tiny_config(1, 1)
    tokenizer = WorldTokenizer.build()
    autoencoder = build_autoencoder(config)
    transformer, text_encoder = build_generator(config, tokenizer, autoencoder)
    export_pipeline(autoencoder, transformer, text_encoder, tokenizer, tmp_path / "model", max_shard_size="10KB")
    shards = sorted((tmp_path / "model" / "transformer").glob("*.safetensors"))
    assert len(shards) > 1 and all(path.stat().st_size < 14_000 for path in shards)
    loaded = load_model_folder(tmp_path / "model").transformer.state_dict()
    original = transformer.half().state_dict()
    assert all(torch.equal(loaded[k].half(), original[k]) for k in original)


def test_a_new_run_goes_on_from_an_exported_model(tmp_path):
    """A later phase starts from committed weights (no checkpoints of the first run needed): its transformer
    begins where the export left off, so its first losses are those of a trained model, not of a new one."""
    first = train(tiny_config(30, 40), tmp_path / "first", export_to=tmp_path / "model", progress=False)
    later = tiny_config(30, 50)
    later.transformer.schedule_from = 40
    logs = train(later, tmp_path / "later", export_to=tmp_path / "model2", progress=False,
                 init_from=tmp_path / "model")
    assert len(logs["transformer"]) == 10 and logs["autoencoder"] == []
    fresh = [loss for _, loss in first["transformer"][:5]]
    assert np.mean([loss for _, loss in logs["transformer"][:5]]) < 0.95 * np.mean(fresh)
    assert load_model_folder(tmp_path / "model2")("a red circle", seed=0).images[0].size == (48, 48)


def test_a_phase_that_grows_the_network_starts_where_the_export_left_off(tmp_path):
    """A later phase may add parts (the words' pair proposals, the text's local window): they start as no change,
    so before its first step the grown model draws exactly what the export it grew from draws."""
    train(tiny_config(20, 20), tmp_path / "first", export_to=tmp_path / "model", progress=False)
    grown = tiny_config(20, 40)
    grown.transformer.schedule_from = 20
    grown.transformer.text_pairs = True
    grown.transformer.text_local_window = 3
    train(grown, tmp_path / "grown", progress=False, stop_at=20, init_from=tmp_path / "model")
    export_checkpoint(tmp_path / "grown", tmp_path / "out")
    before, after = load_model_folder(tmp_path / "model"), load_model_folder(tmp_path / "out")
    assert after.transformer.config.text_pairs and after.text_encoder.config.local_window == 3
    for prompt in ("a red circle and a blue square", "two green stars"):
        assert np.array_equal(np.asarray(before(prompt, seed=4).images[0]), np.asarray(after(prompt, seed=4).images[0]))
    grown.transformer.steps = 25  # and the new parts do learn
    train(grown, tmp_path / "grown", progress=False)
    state = torch.load(tmp_path / "grown" / "transformer.pt", weights_only=False)["transformer"]
    assert state["pair_colour.weight"].abs().sum() > 0
