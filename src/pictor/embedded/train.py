"""Train the embedded model from a config and a seed, and export it as a pipeline folder.

Two stages in one run folder. First the scene autoencoder learns to turn an image into 20 codes and to
draw them back as layers (background, and per cell a colour and a signed-distance field), taught by the
exact codes and layers of each rendered scene (see layers.py). Then, with the autoencoder frozen, the text
encoder and the token transformer learn the 11 tokens (layers.scene_tokens) of the image a text asks for
(MaskGIT: a random share of the target tokens is hidden, and the loss is the cross-entropy of the hidden
ones). Data is rendered on the fly from (seed, step); both stages checkpoint and resume; the transformer's
weights kept are an EMA.
"""

from __future__ import annotations

import copy
import json
import math
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from pictor.embedded.autoencoder import SceneAutoencoder, compose
from pictor.embedded.data import DataConfig, autoencoder_batch, make_examples, token_batch
from pictor.embedded.layers import FORMS, SCENE_CODES, SCENE_TOKENS
from pictor.embedded.network import EmbeddedTextEncoder, EmbeddedTransformer
from pictor.embedded.pipeline import PictorEmbeddedPipeline
from pictor.embedded.tokenizer import WorldTokenizer
from pictor.embedded.world import COLOURS


@dataclass
class AutoencoderConfig:
    steps: int = 2500
    batch_size: int = 32
    learning_rate: float = 6e-4
    warmup_steps: int = 100
    codes: int = 64
    width: int = 192
    distance_clip: float = 6.0


@dataclass
class TransformerConfig:
    steps: int = 4000
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    weight_decay: float = 0.01
    ema_decay: float = 0.999
    width: int = 192
    layers: int = 6
    heads: int = 6
    text_width: int = 128
    text_layers: int = 2
    text_heads: int = 4
    # A later phase of a run: its own warmup and cosine start at this step (the earlier phase ended there).
    schedule_from: int = 0
    factored_cells: bool = True  # a cell's token embedded and scored as colour + form (see EmbeddedTransformer)
    text_pairs: bool = False  # factored cells: the words propose (colour, form) pairs (EmbeddedTransformer)
    text_local_window: int = 0  # words convolved with their neighbours in the text encoder (EmbeddedTextEncoder)


@dataclass
class TrainConfig:
    seed: int = 0
    checkpoint_every: int = 250
    device: str = "auto"  # auto / cpu / cuda
    threads: int = 0  # CPU threads; 0 = torch's default
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    data: DataConfig = field(default_factory=DataConfig)

    @classmethod
    def from_dict(cls, raw: dict) -> TrainConfig:
        """From the shape of a TOML config or a run's config.json (lists become tuples)."""
        raw = dict(raw)

        def section(name: str) -> dict:
            return {k: tuple(v) if isinstance(v, list) else v for k, v in raw.pop(name, {}).items()}

        return cls(autoencoder=AutoencoderConfig(**section("autoencoder")),
                   transformer=TransformerConfig(**section("transformer")), data=DataConfig(**section("data")),
                   **raw)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(tomllib.loads(Path(path).read_text()))


def build_autoencoder(config: TrainConfig) -> SceneAutoencoder:
    a = config.autoencoder
    return SceneAutoencoder(field=config.data.field, codes=a.codes, width=a.width, distance_clip=a.distance_clip)


def build_generator(config: TrainConfig, tokenizer: WorldTokenizer,
                    autoencoder: SceneAutoencoder) -> tuple[EmbeddedTransformer, EmbeddedTextEncoder]:
    t = config.transformer
    text_encoder = EmbeddedTextEncoder(vocab_size=tokenizer.vocab_size, max_length=tokenizer.max_length,
                                       width=t.text_width, layers=t.text_layers, heads=t.text_heads,
                                       pad_id=tokenizer.pad_id, local_window=t.text_local_window)
    factors = ({"cell_colours": len(COLOURS), "cell_forms": FORMS, "text_pairs": t.text_pairs}
               if t.factored_cells else {})
    transformer = EmbeddedTransformer(codes=max(SCENE_CODES, autoencoder.codes), tokens=SCENE_TOKENS,
                                      text_width=t.text_width, width=t.width, layers=t.layers, heads=t.heads,
                                      **factors)
    return transformer, text_encoder


def autoencoder_loss(autoencoder: SceneAutoencoder, inputs: torch.Tensor,
                     targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """The encoder reads each token's code (cross-entropy against the scene's codes); the decoder, given the true
    codes, draws the image, the background layer, each present object's colour and the signed distances."""
    logits = autoencoder.logits(inputs)
    codes = targets["codes"]
    layers = autoencoder.decode_tokens(codes)
    side = inputs.shape[-1]
    image = compose(layers, side, side)
    empty = {**layers, "distance": torch.full_like(layers["distance"], -autoencoder.config.distance_clip)}
    background = compose(empty, side, side)
    present = targets["present"][:, None]
    parts = {
        "codes": F.cross_entropy(logits.flatten(0, 1), codes.flatten()),
        "image": F.mse_loss(image, targets["image"]),
        "background": F.mse_loss(background, targets["background"]),
        "colour": ((layers["colours"] - targets["colours"]).pow(2) * present).sum() / present.sum().clamp(min=1) / 3,
        "distance": (layers["distance"] - targets["distance"]).abs().mean(),
    }
    loss = parts["codes"] + 10 * parts["image"] + 5 * parts["background"] + 5 * parts["colour"] + parts["distance"]
    return loss, {k: v.item() for k, v in parts.items()}


def masked_token_loss(transformer: EmbeddedTransformer, text_encoder: EmbeddedTextEncoder,
                      tokenizer: WorldTokenizer, batch, generator: torch.Generator,
                      device: torch.device) -> torch.Tensor:
    """MaskGIT's objective: hide a cosine-distributed share of the undecided target tokens, predict them."""
    ids = torch.tensor(tokenizer.encode(batch.texts))
    length = max(1, int((ids != tokenizer.pad_id).sum(1).max()))
    states, _, keep = text_encoder(ids[:, :length].to(device))
    target, given = batch.target.to(device), batch.given.to(device)
    b, n = target.shape
    share = torch.cos(0.5 * math.pi * torch.rand(b, generator=generator)).to(device)
    open_count = (~given).sum(1)
    hidden_count = (share * open_count).ceil().clamp(min=1)
    scores = torch.rand(b, n, generator=generator).to(device).masked_fill(given, 2.0)
    ranks = scores.argsort(1).argsort(1)
    hidden = ranks < hidden_count[:, None]
    logits = transformer(states, keep, batch.task.to(device), batch.source.to(device), target.masked_fill(hidden, -1))
    losses = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), reduction="none").view(b, n)
    return (losses * hidden).sum() / hidden.sum()


def _lr(step: int, steps: int, peak: float, warmup: int, start: int = 0) -> float:
    step, steps = step - start, steps - start
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def export_pipeline(autoencoder: SceneAutoencoder, transformer: EmbeddedTransformer,
                    text_encoder: EmbeddedTextEncoder, tokenizer: WorldTokenizer, path: str | Path,
                    max_shard_size: str = "15MB") -> PictorEmbeddedPipeline:
    """Save as a pipeline folder, weights in float16 (half the size; loaded back as float32).

    Weight files are sharded below `max_shard_size`, so a larger model still ships as files under 16 MiB.
    """
    parts = (autoencoder, transformer, text_encoder)
    pipe = PictorEmbeddedPipeline(*(copy.deepcopy(p).cpu().eval().half() for p in parts))
    pipe.tokenizer = tokenizer
    pipe.save_pretrained(path, max_shard_size=max_shard_size)
    return pipe


def config_from_run(run_dir: str | Path) -> TrainConfig:
    return TrainConfig.from_dict(json.loads((Path(run_dir) / "config.json").read_text()))


def _device(config: TrainConfig) -> torch.device:
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)


def _save(state: dict, path: Path) -> None:
    torch.save(state, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)


def _generator_optimizer(transformer: EmbeddedTransformer, text_encoder: EmbeddedTextEncoder,
                         t: TransformerConfig) -> tuple[list[torch.nn.Parameter], torch.optim.Optimizer]:
    params = list(transformer.parameters()) + list(text_encoder.parameters())
    return params, torch.optim.AdamW(params, lr=t.learning_rate, weight_decay=t.weight_decay, betas=(0.9, 0.99))


def _generator_state(transformer: EmbeddedTransformer, text_encoder: EmbeddedTextEncoder,
                     ema_transformer: EmbeddedTransformer, ema_text: EmbeddedTextEncoder,
                     optimizer: torch.optim.Optimizer, step: int, log: list) -> dict:
    """What transformer.pt holds, read back by train_generator."""
    return {"transformer": transformer.state_dict(), "text_encoder": text_encoder.state_dict(),
            "ema_transformer": ema_transformer.state_dict(), "ema_text": ema_text.state_dict(),
            "optimizer": optimizer.state_dict(), "step": step, "log": log}


def train_autoencoder(config: TrainConfig, run_dir: Path, device: torch.device, progress: bool,
                      stop_at: int | None) -> tuple[SceneAutoencoder, int, list]:
    """Stage one (resumes from run_dir/autoencoder.pt); returns the model, the steps done and the loss log."""
    a = config.autoencoder
    model = build_autoencoder(config).to(device)
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(params, lr=a.learning_rate, weight_decay=0.0)
    checkpoint = run_dir / "autoencoder.pt"
    start, log = 0, []
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, log = state["step"], state["log"]
    end = a.steps if stop_at is None else min(a.steps, stop_at)
    bar = tqdm(range(start, end), initial=start, total=a.steps, disable=not progress, desc="autoencoder",
               dynamic_ncols=True)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, a.steps, a.learning_rate, a.warmup_steps)
        inputs, targets = autoencoder_batch(config.seed, step, a.batch_size, config.data, a.distance_clip)
        loss, parts = autoencoder_loss(model, inputs.to(device), {k: v.to(device) for k, v in targets.items()})
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        log.append((step, loss.item(), parts))
        bar.set_postfix(image=f"{parts['image']:.4f}", distance=f"{parts['distance']:.3f}")
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == end:
            _save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step + 1, "log": log},
                  checkpoint)
    model.eval().requires_grad_(False)
    return model, max(start, end), log


def train_generator(config: TrainConfig, run_dir: Path, autoencoder: SceneAutoencoder, device: torch.device,
                    progress: bool, stop_at: int | None
                    ) -> tuple[EmbeddedTransformer, EmbeddedTextEncoder, int, list]:
    """Stage two (resumes from run_dir/transformer.pt); returns the EMA weights, the steps done and the loss log."""
    t = config.transformer
    tokenizer = WorldTokenizer.build()
    transformer, text_encoder = build_generator(config, tokenizer, autoencoder)
    transformer.to(device)
    text_encoder.to(device)
    params, optimizer = _generator_optimizer(transformer, text_encoder, t)
    ema_transformer, ema_text = copy.deepcopy(transformer).eval(), copy.deepcopy(text_encoder).eval()
    checkpoint = run_dir / "transformer.pt"
    start, log = 0, []
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        transformer.load_state_dict(state["transformer"])
        text_encoder.load_state_dict(state["text_encoder"])
        ema_transformer.load_state_dict(state["ema_transformer"])
        ema_text.load_state_dict(state["ema_text"])
        optimizer.load_state_dict(state["optimizer"])
        start, log = state["step"], state["log"]
    end = t.steps if stop_at is None else min(t.steps, stop_at)
    bar = tqdm(range(start, end), initial=start, total=t.steps, disable=not progress, desc="transformer",
               dynamic_ncols=True)
    running = None
    for step in bar:
        generator = torch.Generator().manual_seed(config.seed * 7919 + step)
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, t.steps, t.learning_rate, t.warmup_steps, t.schedule_from)
        examples = make_examples(config.seed, step, t.batch_size, config.data)
        batch = token_batch(examples, autoencoder, config.data.field)
        loss = masked_token_loss(transformer, text_encoder, tokenizer, batch, generator, device)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        decay = min(t.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for ema, live in ((ema_transformer, transformer), (ema_text, text_encoder)):
                for e, p in zip(ema.parameters(), live.parameters()):
                    e.lerp_(p, 1 - decay)
        value = loss.item()
        running = value if running is None else 0.98 * running + 0.02 * value
        log.append((step, value))
        bar.set_postfix(loss=f"{running:.4f}")
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == end:
            _save(_generator_state(transformer, text_encoder, ema_transformer, ema_text, optimizer, step + 1, log),
                  checkpoint)
    return ema_transformer, ema_text, max(start, end), log


def export_checkpoint(run_dir: str | Path, export_to: str | Path) -> PictorEmbeddedPipeline:
    """Write a run's latest weights (the transformer's EMA) as a pipeline folder."""
    run_dir = Path(run_dir)
    config = config_from_run(run_dir)
    tokenizer = WorldTokenizer.build()
    autoencoder = build_autoencoder(config)
    autoencoder.load_state_dict(torch.load(run_dir / "autoencoder.pt", map_location="cpu", weights_only=False)["model"])
    transformer, text_encoder = build_generator(config, tokenizer, autoencoder)
    state = torch.load(run_dir / "transformer.pt", map_location="cpu", weights_only=False)
    transformer.load_state_dict(state["ema_transformer"])
    text_encoder.load_state_dict(state["ema_text"])
    return export_pipeline(autoencoder, transformer, text_encoder, tokenizer, export_to)


def start_from_pipeline(config: TrainConfig, run_dir: Path, folder: str | Path) -> None:
    """Seed an empty run folder with an exported pipeline's weights: the autoencoder as finished, the transformer
    (both its live and EMA copies, from the export's EMA) at `transformer.schedule_from`, with a fresh optimiser.
    So a run can go on from committed weights when the machine that held its checkpoints is gone."""
    if (run_dir / "autoencoder.pt").exists() or (run_dir / "transformer.pt").exists():
        raise ValueError(f"{run_dir} already holds checkpoints: resume from them instead")
    pipe = PictorEmbeddedPipeline.from_pretrained(str(folder))
    tokenizer = WorldTokenizer.build()
    autoencoder = build_autoencoder(config)
    autoencoder.load_state_dict({k: v.float() for k, v in pipe.autoencoder.state_dict().items()})
    transformer, text_encoder = build_generator(config, tokenizer, autoencoder)
    _load_growing(transformer, pipe.transformer.state_dict())
    _load_growing(text_encoder, pipe.text_encoder.state_dict())
    optimizer = torch.optim.AdamW(autoencoder.parameters())
    _save({"model": autoencoder.state_dict(), "optimizer": optimizer.state_dict(), "step": config.autoencoder.steps,
           "log": []}, run_dir / "autoencoder.pt")
    _, optimizer = _generator_optimizer(transformer, text_encoder, config.transformer)
    _save(_generator_state(transformer, text_encoder, transformer, text_encoder, optimizer,
                           config.transformer.schedule_from, []), run_dir / "transformer.pt")


def _load_growing(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load an earlier model's weights into one that may add parts (a new phase that grows the network); parts it
    adds keep their own initialisation, which must start them as no change. Any other mismatch is an error."""
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    if unexpected:
        raise ValueError(f"the starting weights hold parts this model lacks: {unexpected}")
    if missing:
        print(f"new parts, initialised fresh: {', '.join(missing)}")


def train(config: TrainConfig, run_dir: str | Path, export_to: str | Path | None = None,
          progress: bool = True, stop_at: int | None = None, init_from: str | Path | None = None) -> dict:
    """Train both stages (resuming from run_dir, or starting from the pipeline folder `init_from` when run_dir is
    new); `stop_at` ends this session at that many steps of the stage it is in, with a checkpoint, without
    changing the schedule. Returns the loss logs."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = _device(config)
    torch.manual_seed(config.seed)
    (run_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))
    if init_from is not None and not (run_dir / "transformer.pt").exists():
        start_from_pipeline(config, run_dir, init_from)
    started = time.time()
    autoencoder, ae_steps, ae_log = train_autoencoder(config, run_dir, device, progress, stop_at)
    if ae_steps < config.autoencoder.steps:
        return {"autoencoder": ae_log, "transformer": []}
    transformer, text_encoder, steps, log = train_generator(config, run_dir, autoencoder, device, progress, stop_at)
    (run_dir / "loss.json").write_text(json.dumps({
        "seconds_this_session": time.time() - started, "autoencoder": ae_log, "transformer": log}))
    if export_to is not None and steps >= config.transformer.steps:
        export_pipeline(autoencoder.cpu(), transformer.cpu(), text_encoder.cpu(), WorldTokenizer.build(), export_to)
    return {"autoencoder": ae_log, "transformer": log}
