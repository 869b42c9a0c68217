"""Model replicas on Ray Serve: the replicas' side, and how an API process finds them.

A replica (`ModelReplica`) builds the same models a single server would (the embedded model and the operator's,
from the same Settings, through the composition root's `local_registry`) and serves them to any API process by
`DeploymentHandle`: `describe()` says what it serves, `run(model, request, previews)` streams a request's step
events and then its result. Requests from every API process queue on the replica's own model worker, which
batches them (step-level batching where the settings allow). Cancelling a call (the client went away) cancels its
engine future, which stops the model call at its next step.

`pictor engine` deploys it (`deploy`); `pictor serve --engine ray` connects to it (`connect`). GPUs per replica
are a setting (0 on a machine without one: a deployment that asks for a GPU it cannot get never becomes ready).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pictor.config import Settings
from pictor.engine.placement import current_cpu_threads
from pictor.engine.protocol import StepObserver
from pictor.engine.ray_backend import RayServeBackend
from pictor.engine.wire import capabilities_to_wire, image_to_wire, request_from_wire, result_to_wire

log = logging.getLogger(__name__)


def reader_reference(reader: object) -> str:
    """An import reference to a scene reader's class, which the API process makes its own instance of."""
    kind = type(reader)
    return f"{kind.__module__}:{kind.__qualname__}"


class ModelReplica:
    """The deployment's class (made a Serve deployment by `deploy`)."""

    def __init__(self, settings_values: dict[str, Any]):
        from pictor.assembly import local_registry

        self.settings = Settings(**settings_values)
        self.registry = local_registry(self.settings)

    def describe(self) -> list[dict]:
        """What each model served here is and can do, for the API processes' backends."""
        described = []
        for name, worker in self.registry.workers.items():
            backend = worker.backend
            described.append({
                "name": name, "default": name == self.registry.default,
                "capabilities": capabilities_to_wire(backend.capabilities), "weights_hash": backend.weights_hash,
                "device": backend.device, "batch_invariant": backend.batch_invariant,
                "family": getattr(getattr(backend, "family", None), "name", None),
                "cpu_threads": current_cpu_threads(),
                "scene_reader": reader_reference(backend.scene)})
        return described

    async def run(self, model: str, request: dict, previews: bool) -> AsyncIterator[tuple]:
        """("step", step, total, preview or None) events, then ("result", result)."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def on_step(step: int, total: int, preview: Any) -> None:
            shown = image_to_wire(preview) if preview is not None else None
            loop.call_soon_threadsafe(events.put_nowait, ("step", step, total, shown))

        future = self.registry.worker(model).submit(request_from_wire(request), StepObserver(on_step, previews))
        finished = asyncio.wrap_future(future)
        finished.add_done_callback(lambda _: events.put_nowait(None))
        try:
            while (event := await events.get()) is not None:
                yield event
            yield ("result", result_to_wire(finished.result()))
        finally:
            if not future.done():
                future.cancel()  # the caller went away: drop the request, or stop its model call at the next step


def deploy(settings: Settings) -> Any:
    """Run the replicas as the Serve application `settings.ray_app` on the Ray cluster this process is connected
    to; returns its handle. No HTTP proxy: API processes call the deployment by handle."""
    from ray import serve

    serve.start(proxy_location="Disabled")
    deployment = serve.deployment(ModelReplica).options(
        num_replicas=settings.ray_replicas, max_ongoing_requests=max(16, 2 * settings.max_batch),
        ray_actor_options={"num_cpus": settings.ray_cpus_per_replica, "num_gpus": settings.ray_gpus_per_replica})
    values = settings.model_dump(mode="json", exclude_none=True)
    return serve.run(deployment.bind(values), name=settings.ray_app, route_prefix=None)


def connect(settings: Settings) -> list[tuple[RayServeBackend, bool]]:
    """The deployment's models as backends of this process, each with whether it is the default."""
    # A cluster started by `pictor engine` requires Ray's token (kept in the user's ~/.ray); a process that joins it
    # must say it uses one before Ray is imported, or Ray does not send it.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray
    from ray import serve

    if not ray.is_initialized():
        handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        ray.init(address=settings.ray_address or "auto", logging_level=logging.WARNING, log_to_driver=False)
        if threading.current_thread() is threading.main_thread():
            # Ray's driver takes SIGTERM for an immediate exit; the server's own handlers stop it gracefully
            # (running jobs back to the queue, a last audit checkpoint).
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
    handle = serve.get_app_handle(settings.ray_app)
    # The handle's blocking calls refuse to run on an event loop's thread (the server builds inside its lifespan).
    with ThreadPoolExecutor(max_workers=1) as pool:
        descriptions = pool.submit(lambda: handle.describe.remote().result()).result()
    return [(RayServeBackend(handle, described), described["default"]) for described in descriptions]
