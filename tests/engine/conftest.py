"""Tiny random-weight pipelines of every family (and SD 2.x), built once per test session (see
tests/tiny_pipelines.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_pipelines import BUILDS, build_tiny


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Builder name -> folder; each folder is named after its builder (so turbo folders say turbo, as operators'
    do: Pictor tells a turbo model from its base by name)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny-models")
    return {name: build_tiny(name, root / name) for name in BUILDS}
