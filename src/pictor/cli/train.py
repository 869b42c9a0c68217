"""`pictor train-embedded`: train the embedded model from a config and a seed."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train-embedded", help="train the embedded model from a config and a seed")
    parser.add_argument("--config", help="TOML training config (see configs/)")
    parser.add_argument("--run", default="runs/embedded", help="folder for checkpoints and logs (resumes)")
    parser.add_argument("--export", help="write the trained pipeline folder here")
    parser.add_argument("--autoencoder-steps", type=int, help="override the config's autoencoder steps")
    parser.add_argument("--init-from", help="a new run starts from this exported model folder (its weights, at the "
                                            "config's transformer.schedule_from)")
    parser.add_argument("--steps", type=int, help="override the config's transformer steps")
    parser.add_argument("--device", help="cpu / cuda (default: the config's)")
    parser.add_argument("--stop-at", type=int,
                        help="end this session at this step of the stage it is in, without changing the schedule")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pictor.embedded.train import TrainConfig, train

    config = TrainConfig.from_file(args.config) if args.config else TrainConfig()
    if args.autoencoder_steps:
        config.autoencoder.steps = args.autoencoder_steps
    if args.steps:
        config.transformer.steps = args.steps
    if args.device:
        config.device = args.device
    train(config, args.run, export_to=args.export, stop_at=args.stop_at, init_from=args.init_from)
    return 0
