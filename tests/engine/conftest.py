"""Tiny random-weight pipelines of every family, built once per test session (see tests/tiny_pipelines.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_pipelines import FAMILIES, build_tiny


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny-models")
    return {family: build_tiny(family, root / family) for family in FAMILIES}
