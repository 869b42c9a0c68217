"""What batch and dataset share: a client of a running server (or of one started here), and a progress bar."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from pictor.cli.options import add_installation_options, settings_from

if TYPE_CHECKING:
    from pictor.commands.remote import PictorClient


def add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", help="a running Pictor (e.g. http://127.0.0.1:8000); default: start one here")
    parser.add_argument("--api-key", help="the key for --server (default: PICTOR_API_KEY)")
    parser.add_argument("--tenant", default="demo", help="without --server: the tenant the work is done for")
    add_installation_options(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


@contextlib.contextmanager
def pictor_client(args: argparse.Namespace) -> Iterator[PictorClient]:
    """A client of the server at --server, or of one started in this process on the data folder."""
    from pictor.commands.remote import PictorClient, local_server

    if args.server:
        key = args.api_key or os.environ.get("PICTOR_API_KEY")
        if not key:
            raise SystemExit("--server needs --api-key or PICTOR_API_KEY")
        client = PictorClient(args.server, key)
        try:
            yield client
        finally:
            client.close()
    else:
        with local_server(settings_from(args), args.tenant) as client:
            yield client


def progress_bar(label: str, enabled: bool) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """(on_progress, close) for a tqdm bar whose total follows the batch's."""
    from tqdm import tqdm

    bar = tqdm(desc=label, unit="img", disable=not enabled, dynamic_ncols=True)

    def on_progress(done: int, total: int) -> None:
        if bar.total != total:
            bar.reset(total=total)
        bar.n = done
        bar.refresh()

    return on_progress, bar.close


def remote_work(args: argparse.Namespace, label: str,
                work: Callable[[PictorClient, Callable[[int, int], None]], Any]) -> Any:
    """work(client, on_progress) with a progress bar; None (after printing why) when the server refuses."""
    from pictor.commands.remote import RemoteError

    on_progress, close = progress_bar(label, not args.no_progress)
    try:
        with pictor_client(args) as client:
            return work(client, on_progress)
    except RemoteError as error:
        print(f"error: {error}", file=sys.stderr)
        return None
    finally:
        close()
