"""Train the embedded model from a config and a seed, and export it as a pipeline folder.

Rectified flow: x_t = (1 - t) x0 + t noise, with t drawn from a logit-normal (more weight in the
middle, where the image's layout is decided). The network predicts the clean image x0 (the
sampler turns it into the velocity): flat-colour images are easy to predict, whereas predicting
the velocity would make the network copy 48 channels of noise through its narrow stem. Data is rendered
on the fly from (seed, step), checkpoints are resumable, the weights kept are an EMA.
"""

from __future__ import annotations

import copy
import json
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from tqdm import tqdm

from pictor.embedded.data import DataConfig, batches
from pictor.embedded.network import EmbeddedTextEncoder, EmbeddedUNet
from pictor.embedded.pipeline import PictorEmbeddedPipeline
from pictor.embedded.tokenizer import WorldTokenizer


@dataclass
class ModelConfig:
    channels: tuple[int, ...] = (64, 128, 192)
    patch: int = 4
    text_width: int = 128
    text_layers: int = 2
    heads: int = 4
    self_attention_levels: tuple[int, ...] = (1, 2)
    cross_attention_levels: tuple[int, ...] = (0, 1, 2)


@dataclass
class TrainConfig:
    seed: int = 0
    steps: int = 6000
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    weight_decay: float = 0.01
    ema_decay: float = 0.999
    time_shift: float = 3.0  # noise-level shift in training and in the shipped scheduler
    stop_at: int | None = None  # end the run here without changing the schedule (see configs/)
    schedule_from: int = 0  # a resumed phase's own warmup and cosine start at this step
    # Clean-image loss weight max(1, min(SNR, low_noise_weight)), SNR = ((1 - t) / t)^2: uniform at high noise,
    # up to this factor at low noise, where edges (a star's points) decide the shape; 1 = uniform.
    low_noise_weight: float = 1.0
    checkpoint_every: int = 500
    device: str = "auto"  # auto / cpu / cuda
    bf16: bool = True  # on CUDA only
    compile: bool = False
    threads: int = 0  # CPU threads; 0 = torch's default
    data_workers: int = 0  # processes rendering batches ahead (a GPU needs many; 0 = render in the loop)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)

    @classmethod
    def from_dict(cls, raw: dict) -> TrainConfig:
        """From the shape of a TOML config or a run's config.json (lists become tuples)."""
        raw = dict(raw)

        def section(name: str) -> dict:
            return {k: tuple(v) if isinstance(v, list) else v for k, v in raw.pop(name, {}).items()}

        return cls(model=ModelConfig(**section("model")), data=DataConfig(**section("data")), **raw)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(tomllib.loads(Path(path).read_text()))


def build_models(config: TrainConfig, tokenizer: WorldTokenizer) -> tuple[EmbeddedUNet, EmbeddedTextEncoder]:
    m = config.model
    text_encoder = EmbeddedTextEncoder(vocab_size=tokenizer.vocab_size, max_length=tokenizer.max_length,
                                       width=m.text_width, layers=m.text_layers, heads=m.heads,
                                       pad_id=tokenizer.pad_id)
    unet = EmbeddedUNet(channels=m.channels, patch=m.patch, context_dim=m.text_width, heads=m.heads,
                        self_attention_levels=m.self_attention_levels,
                        cross_attention_levels=m.cross_attention_levels,
                        sample_size=config.data.resolution)
    return unet, text_encoder


def shifted_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Move noise levels towards pure noise, as diffusers' flow-match schedulers do with `shift`.

    Flat-colour images stay readable under a lot of noise, so unshifted training spends most steps
    where the prompt hardly matters; shifting trains (and samples) more where layout and colour are
    decided.
    """
    return shift * t / (1 + (shift - 1) * t)


def rectified_flow_loss(unet: EmbeddedUNet, text_encoder: EmbeddedTextEncoder, tokenizer: WorldTokenizer,
                        batch, generator: torch.Generator, device: torch.device,
                        time_shift: float = 1.0, low_noise_weight: float = 1.0) -> torch.Tensor:
    x0 = batch.target.to(device)
    b = x0.shape[0]
    noise = torch.randn(x0.shape, generator=generator).to(device)
    t = shifted_time(torch.sigmoid(torch.randn(b, generator=generator)), time_shift).to(device)
    xt = (1 - t)[:, None, None, None] * x0 + t[:, None, None, None] * noise
    ids = torch.tensor(tokenizer.encode(batch.texts), device=device)
    states, pooled, keep = text_encoder(ids)
    predicted = unet(xt, t, batch.condition.to(device), batch.mask.to(device), batch.task.to(device),
                     states, pooled, keep)
    error = (predicted.float() - x0.float()).pow(2)
    if low_noise_weight > 1:
        snr = ((1 - t) / t.clamp(min=1e-4)).pow(2)
        error = error * snr.clamp(1.0, low_noise_weight).float()[:, None, None, None]
    return error.mean()


def _lr(step: int, config: TrainConfig) -> float:
    step, steps = step - config.schedule_from, config.steps - config.schedule_from
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, steps - config.warmup_steps)
    return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(progress * torch.pi)).item()))


def export_pipeline(unet: EmbeddedUNet, text_encoder: EmbeddedTextEncoder, tokenizer: WorldTokenizer,
                    path: str | Path, time_shift: float = 1.0, max_shard_size: str = "15MB") -> PictorEmbeddedPipeline:
    """Save as a pipeline folder, weights in float16 (half the size; loaded back as float32).

    Weight files are sharded below `max_shard_size`, so a larger model still ships as files under 16 MiB.
    """
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=time_shift)
    pipe = PictorEmbeddedPipeline(unet=unet.cpu().eval().half(), text_encoder=text_encoder.cpu().eval().half(),
                                  scheduler=scheduler)
    pipe.tokenizer = tokenizer
    pipe.save_pretrained(path, max_shard_size=max_shard_size)
    unet.float()
    text_encoder.float()
    return pipe


def config_from_run(run_dir: str | Path) -> TrainConfig:
    return TrainConfig.from_dict(json.loads((Path(run_dir) / "config.json").read_text()))


def export_checkpoint(run_dir: str | Path, export_to: str | Path) -> PictorEmbeddedPipeline:
    """Write the EMA weights of a run's latest checkpoint as a pipeline folder."""
    config = config_from_run(run_dir)
    tokenizer = WorldTokenizer.build()
    unet, text_encoder = build_models(config, tokenizer)
    state = torch.load(Path(run_dir) / "checkpoint.pt", map_location="cpu", weights_only=False)
    unet.load_state_dict(state["ema_unet"])
    text_encoder.load_state_dict(state["ema_text"])
    return export_pipeline(unet, text_encoder, tokenizer, export_to, config.time_shift)


def train(config: TrainConfig, run_dir: str | Path, export_to: str | Path | None = None,
          progress: bool = True, stop_at: int | None = None) -> list[tuple[int, float]]:
    """Train (resuming from run_dir's checkpoint if present); returns the (step, loss) log.

    `stop_at` ends this session early (with a checkpoint) without changing the schedule.
    """
    stop_at = stop_at if stop_at is not None else config.stop_at
    end = config.steps if stop_at is None else min(stop_at, config.steps)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = torch.device("cuda" if config.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if config.device == "auto" else config.device))
    torch.manual_seed(config.seed)
    tokenizer = WorldTokenizer.build()
    unet, text_encoder = build_models(config, tokenizer)
    unet.to(device)
    text_encoder.to(device)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay,
                                  betas=(0.9, 0.99))
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
    start, log = 0, []
    checkpoint = run_dir / "checkpoint.pt"
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text_encoder"])
        ema_unet.load_state_dict(state["ema_unet"])
        ema_text.load_state_dict(state["ema_text"])
        optimizer.load_state_dict(state["optimizer"])
        start, log = state["step"], state["log"]
    (run_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))

    forward = torch.compile(unet) if config.compile else unet
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and config.bf16)
    bar = tqdm(range(start, end), initial=start, total=config.steps, disable=not progress,
               desc="train", dynamic_ncols=True)
    started, running = time.time(), None
    stream = batches(config.seed, start, end, config.batch_size, config.data, config.data_workers,
                     pin_memory=device.type == "cuda")
    for step, batch in zip(bar, stream):
        generator = torch.Generator().manual_seed(config.seed * 7919 + step)
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, config)
        with autocast:
            loss = rectified_flow_loss(forward, text_encoder, tokenizer, batch, generator, device, config.time_shift,
                                      config.low_noise_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        decay = min(config.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for ema, live in ((ema_unet, unet), (ema_text, text_encoder)):
                for e, p in zip(ema.parameters(), live.parameters()):
                    e.lerp_(p, 1 - decay)
        value = loss.item()
        running = value if running is None else 0.98 * running + 0.02 * value
        log.append((step, value))
        bar.set_postfix(loss=f"{running:.4f}", lr=f"{_lr(step, config):.1e}")
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == end:
            torch.save({"unet": unet.state_dict(), "text_encoder": text_encoder.state_dict(),
                        "ema_unet": ema_unet.state_dict(), "ema_text": ema_text.state_dict(),
                        "optimizer": optimizer.state_dict(), "step": step + 1, "log": log},
                       checkpoint.with_suffix(".tmp"))
            checkpoint.with_suffix(".tmp").replace(checkpoint)
            (run_dir / "loss.json").write_text(json.dumps(
                {"steps_done": step + 1, "seconds_this_session": time.time() - started, "log": log}))
    if export_to is not None:
        export_pipeline(ema_unet, ema_text, tokenizer, export_to, config.time_shift)
    return log
