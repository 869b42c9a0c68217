"""`pictor engine`: the model replicas on Ray Serve, which `pictor serve --engine ray` processes call."""

from __future__ import annotations

import argparse
import signal
import threading

from pictor.cli.options import add_installation_options, add_operator_models, settings_from


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("engine", help="run the models as Ray Serve replicas for `pictor serve --engine ray`")
    parser.add_argument("--replicas", type=int, dest="ray_replicas", help="replicas of the deployment (default 1)")
    parser.add_argument("--gpus-per-replica", type=float, dest="ray_gpus_per_replica",
                        help="GPUs each replica reserves (default 0)")
    parser.add_argument("--cpus-per-replica", type=float, dest="ray_cpus_per_replica",
                        help="CPUs each replica reserves (default 1)")
    parser.add_argument("--ray-address", dest="ray_address",
                        help="join this Ray cluster (default: start one on this machine, on loopback)")
    add_installation_options(parser)
    add_operator_models(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import ray
    from ray import serve

    from pictor.ray_engine import deploy

    settings = settings_from(args, ray_replicas=args.ray_replicas, ray_gpus_per_replica=args.ray_gpus_per_replica,
                             ray_cpus_per_replica=args.ray_cpus_per_replica, ray_address=args.ray_address)
    if settings.ray_address:
        ray.init(address=settings.ray_address)
    else:  # a cluster of this one machine, on loopback, that lives as long as this command
        ray.init(_node_ip_address="127.0.0.1", include_dashboard=False)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    deploy(settings)
    address = ray.get_runtime_context().gcs_address
    print(f"pictor engine: application '{settings.ray_app}' ready, {settings.ray_replicas} replica(s), Ray cluster "
          f"{address}; serve it with `PICTOR_RAY_ADDRESS={address} pictor serve --engine ray`", flush=True)
    stop.wait()
    serve.shutdown()
    ray.shutdown()
    return 0
