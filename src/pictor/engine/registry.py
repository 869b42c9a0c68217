"""The models a server offers, by name, each behind its own worker."""

from __future__ import annotations

from dataclasses import dataclass, field

from pictor.engine.protocol import Backend
from pictor.engine.worker import ModelWorker

# Model ids that clients of the upstream API send by default; they name the default model here.
UPSTREAM_ALIASES = ("gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5", "gpt-image-2", "chatgpt-image-latest",
                    "dall-e-2", "dall-e-3")


class ModelNotFound(LookupError):
    def __init__(self, name: str):
        super().__init__(f"The model '{name}' does not exist")
        self.name = name


@dataclass
class ModelRegistry:
    default: str | None = None
    workers: dict[str, ModelWorker] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def register(self, backend: Backend, default: bool = False, **worker_options) -> ModelWorker:
        worker = ModelWorker(backend, **worker_options)
        self.workers[backend.name] = worker
        if default or self.default is None:
            self.default = backend.name
            self.aliases.update({alias: backend.name for alias in UPSTREAM_ALIASES})
        return worker

    def resolve(self, name: str | None) -> str:
        """The canonical model name for a request's `model` field (None: the default)."""
        if name is None or name == "":
            if self.default is None:
                raise ModelNotFound("(default)")
            return self.default
        canonical = self.aliases.get(name, name)
        if canonical not in self.workers:
            raise ModelNotFound(name)
        return canonical

    def worker(self, name: str | None) -> ModelWorker:
        return self.workers[self.resolve(name)]

    def close(self) -> None:
        for worker in self.workers.values():
            worker.close()
