"""One settings object: environment variables `PICTOR_*`, an optional TOML file, then defaults."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PICTOR_", extra="forbid")

    data_dir: Path | None = None  # default: PICTOR_DATA_DIR, then the user's data folder
    database_url: str | None = None  # default: SQLite in the data folder
    # Where image bytes live: s3://BUCKET/PREFIX (endpoint and credentials from the AWS_* variables) for several
    # machines, or a folder; default: the data folder's blobs/.
    blob_url: str | None = None
    # With an S3 store, `url` responses are the bucket's own presigned GET links (url_lifetime_s) instead of
    # Pictor's signed /v1/images/{id}/content links.
    blob_presigned_urls: bool = False
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None  # base of `url` responses; default http://host:port
    keyless: bool = False  # a local demo without keys: every request is the `demo` tenant
    device: str = "auto"  # auto / cpu / cuda
    embedded_model: Path | None = None  # default: the weights shipped in the package
    # Operators' own diffusers models: NAME=PATH entries (`pictor serve --model`) and a models file (TOML,
    # see engine/models_file.py); PATH is a folder, a single-file checkpoint, or a hub id where online.
    models: list[str] = []
    models_file: Path | None = None
    # Where the models run: "local" (in this process) or "ray" (replicas of a Ray Serve application, started by
    # `pictor engine`, shared by every API process; see pictor/ray_engine.py).
    engine: Literal["local", "ray"] = "local"
    ray_address: str | None = None  # the Ray cluster to join; default: the one running on this machine
    ray_app: str = "pictor-engine"  # the Serve application's name
    ray_replicas: int = 1
    ray_cpus_per_replica: float = 1.0
    ray_gpus_per_replica: float = 0.0  # 0 where there is no GPU: a replica asking for one would never start
    rate_limit_per_minute: int = 0  # requests per API key, in this process; 0 = unlimited
    # Work (images x megapixels x steps) per minute, shared by every process on the database; 0 = unlimited. A
    # tenant's `work_per_minute` quota replaces the tenant default.
    work_per_minute_per_key: int = 0
    work_per_minute_per_tenant: int = 0
    # Who may read /metrics: "loopback" (clients on this machine only, the default), "token" (a bearer
    # `metrics_token`), "open" (anyone who reaches the port) or "off".
    metrics_access: Literal["loopback", "token", "open", "off"] = "loopback"
    metrics_token: str | None = None
    # Proxies whose X-Forwarded-For/-Proto headers are believed (comma-separated addresses, or "*"): the client's
    # address and scheme then come from them. Only the proxy in front of Pictor should be listed.
    forwarded_allow_ips: str = "127.0.0.1"
    retention_sweep_s: float = 600.0  # how often images past their tenant's retention period are deleted
    max_request_bytes: int = 100 * 1024 * 1024
    url_lifetime_s: int = 3600
    max_batch: int = 8
    # CPU threads for the models (torch intra-op); 0 = auto: half the cores, the rest for the server's own work
    # (engine/placement.py).
    torch_threads: int = 0
    # A streamed answer sends an SSE comment (`: keep-alive`) when no event has gone out for this long.
    sse_keepalive_s: float = 15.0
    # Async jobs (POST /v1/jobs, batch lines) run at most this many at once; 0 = auto: 2 one at a time
    # (batch_invariant), max_batch when requests are batched, so that a batch's lines can share forward passes.
    job_workers: int = 0
    # A process's claim on a running job holds this long without a heartbeat (renewed every third of it); then
    # another process on the same database takes the job over, and its audit reservations older than this are void.
    job_lease_s: float = 30.0
    # Hard masks: pixels outside the mask are always the input's own; this many pixels just inside its edge
    # mix the model's output into the original (a feathered seam). 0 = a hard edge.
    mask_blend_px: int = 0
    # An unmasked edit on a world-scene model (the embedded one) is confined to the object its instruction names.
    auto_edit_mask: bool = True
    # One forward pass per image, so a seed reproduces its image whatever shared the batch (see EmbeddedBackend);
    # false batches requests together for throughput, and results then vary slightly with the batch.
    batch_invariant: bool = True
    # With batch_invariant false: requests join a running batch between denoising steps (step-level batching)
    # where the backend can; false batches only requests that start together.
    step_batching: bool = True
    # The exact result cache (service/result_cache): model outputs of seeded requests, per tenant, LRU. 0 = off.
    result_cache_mb: int = 128
    log_json: bool = True
    # C2PA signing with the operator's own chain (leaf first, PEM), key and trust anchors, instead of the
    # CA that Pictor makes in its data folder on first start.
    signing_chain: Path | None = None
    signing_key: Path | None = None
    signing_anchors: Path | None = None
    # The audit checkpoints' Ed25519 signing key (PEM): the operator's, given to every process, so that processes
    # with separate data folders sign one log with one key; default: a key made in the data folder on first start.
    audit_signing_key: Path | None = None
    audit_origin: str = "pictor.local/audit"  # the checkpoints' origin line: name this log uniquely
    audit_checkpoint_every: int = 100  # entries; a checkpoint is also signed a minute after the last one
    # A pending audit reservation older than this belongs to a request whose process died (storing one request's
    # outputs, sign, store, record, never takes this long): any serving process voids it.
    audit_reservation_timeout_s: float = 60.0
    policy_file: Path | None = None  # the content policy (TOML); default: the shipped policies/default.toml
    # An image classifier for inputs and outputs: "nudenet" (the optional extra) or "package.module:factory";
    # none by default (every image check is then recorded as `unavailable`).
    image_classifier: str | None = None

    @classmethod
    def load(cls, config_file: str | Path | None = None, **overrides) -> Settings:
        """Settings from a TOML file (PICTOR_CONFIG if none given), environment, then overrides."""
        path = config_file or os.environ.get("PICTOR_CONFIG")
        values = tomllib.loads(Path(path).read_text()) if path else {}
        # The environment outranks the file: drop file values that an environment variable sets.
        values = {k: v for k, v in values.items() if f"PICTOR_{k.upper()}" not in os.environ}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def resolved_job_workers(self) -> int:
        if self.job_workers > 0:
            return self.job_workers
        return 2 if self.batch_invariant else max(2, self.max_batch)

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
