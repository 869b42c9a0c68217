"""A model served by Ray Serve replicas, behind the backend protocol: the API process keeps its worker, service and
governance; each engine request becomes a streaming call to the deployment (`DeploymentHandle`), whose step events
drive previews and whose cancellation stops the replica's work at its next step (pictor/ray_engine.py is the
replicas' side). The scene reader runs here, in the API process: it reads images, it does not make them."""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any

from pictor.engine.models_file import make_scene_reader
from pictor.engine.protocol import EngineRequest, EngineResult, StepCallback, wants_previews
from pictor.engine.wire import capabilities_from_wire, image_from_wire, request_to_wire, result_from_wire


class RayServeBackend:
    """One model of a Ray Serve deployment, as `describe()` on the deployment reported it."""

    def __init__(self, handle: Any, description: dict):
        self.handle = handle
        self.name: str = description["name"]
        self.capabilities = capabilities_from_wire(description["capabilities"])
        self.weights_hash: str = description["weights_hash"]
        self.device: str = description["device"]
        self.batch_invariant: bool = description["batch_invariant"]
        self.family = description.get("family")
        self.cpu_threads: int = description["cpu_threads"]  # the replica's, which is what made the images
        self.scene = make_scene_reader(description["scene_reader"])

    def run(self, requests: list[EngineRequest], on_step: StepCallback | None = None) -> list[EngineResult]:
        """Every request as its own streaming call, all in flight at once (the replica's worker batches them)."""
        previews = wants_previews(on_step)
        streaming = self.handle.options(stream=True)
        calls = [streaming.run.remote(self.name, request_to_wire(request), previews) for request in requests]
        results: list[EngineResult | None] = [None] * len(calls)
        stopped = threading.Event()

        def drain(index: int) -> None:
            for kind, *values in calls[index]:
                if stopped.is_set():
                    return
                if kind == "step":
                    step, total, preview = values
                    if on_step is not None:  # raises when every request of the batch is cancelled
                        on_step(index, step, total, image_from_wire(preview) if preview is not None else None)
                else:
                    results[index] = result_from_wire(values[0])

        with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix=f"ray-{self.name}") as pool:
            futures = [pool.submit(drain, index) for index in range(len(calls))]
            wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((future for future in futures if future.done() and future.exception()), None)
            if failed is not None:
                stopped.set()
                for call in calls:
                    call.cancel()  # the replica stops these at their next step
                raise failed.exception()  # type: ignore[misc]
        missing = [index for index, result in enumerate(results) if result is None]
        if missing:
            raise RuntimeError(f"the model replica ended call(s) {missing} without a result")
        return results  # type: ignore[return-value]
