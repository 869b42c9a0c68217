"""What several commands share: their settings, the data folder's options, sizes, and who acts."""

from __future__ import annotations

import argparse
import getpass
import os

from pictor import core
from pictor.config import Settings


def add_installation_options(parser: argparse.ArgumentParser) -> None:
    """--data-dir and --config: which installation a command works on."""
    parser.add_argument("--data-dir", help="data folder (default: PICTOR_DATA_DIR or the user's data folder)")
    parser.add_argument("--config", help="TOML settings file")


def add_operator_models(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", dest="model_entries", action="append", metavar="NAME=PATH",
                        help="serve a diffusers model folder, single-file checkpoint or hub id as NAME (repeatable)")
    parser.add_argument("--models", dest="models_file", metavar="FILE", help="a models file (TOML, [[model]] tables)")


def settings_from(args: argparse.Namespace, **overrides: object) -> Settings:
    """The settings a command runs with: its config file, the environment, then its own options."""
    return Settings.load(getattr(args, "config", None), data_dir=getattr(args, "data_dir", None),
                         host=getattr(args, "host", None), port=getattr(args, "port", None),
                         keyless=True if getattr(args, "keyless", False) else None,
                         models=getattr(args, "model_entries", None) or None,
                         models_file=getattr(args, "models_file", None), **overrides)


def parse_size(text: str) -> tuple[int, int]:
    """`WIDTHxHEIGHT` (read as the server reads a request's size), or one number for a square."""
    text = text.strip().lower()
    dimensions = core.parse_size(f"{text}x{text}" if text.isdigit() else text)
    if dimensions is None:  # 'auto' is the server's choice, not a size to make
        raise ValueError("--size needs WIDTHxHEIGHT or one number")
    return dimensions


def operator() -> str:
    """Who acts from the command line, for the audit log: the operating-system user."""
    try:
        return f"operator:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"operator:uid-{os.getuid()}"
