"""`pictor models`: the models this installation serves, read from their folders' JSON (no weights loaded)."""

from __future__ import annotations

import argparse
import sys

from pictor.cli.options import add_operator_models, settings_from


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="list the models this installation serves")
    parser.add_argument("--config")
    add_operator_models(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # JSON only (no torch import): this answers at once, and no weights are loaded.
    from pictor.embedded import WEIGHTS_DIR
    from pictor.engine.families import describe, family, index_class_name, tasks_of
    from pictor.engine.models_file import model_specs

    settings = settings_from(args)
    folder = settings.embedded_model or WEIGHTS_DIR
    try:
        specs = model_specs(settings.models, settings.models_file)
    except ValueError as error:
        print(f"pictor: {error}", file=sys.stderr)
        return 2
    default = "" if any(spec.default for spec in specs) else " (default)"
    print(f"pictor-embedded{default}  {index_class_name(folder)}  {folder}")
    for spec in specs:
        try:
            name, pipeline = describe(spec.name, spec.path, spec.family)
            tasks = ",".join(sorted(tasks_of(family(name), spec.edit_by_img2img))) if name != "?" else "?"
        except ValueError as error:
            print(f"{spec.name}  error: {error}")
            continue
        print(f"{spec.name}{' (default)' if spec.default else ''}  {name}  {pipeline}  tasks: {tasks}  {spec.path}")
    return 0
