"""Pictor's own small model: a procedural world, its language, the network, training and judge."""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"
