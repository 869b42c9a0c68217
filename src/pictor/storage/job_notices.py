"""Job notices between processes on one PostgreSQL: `NOTIFY` on one channel, heard by a `LISTEN` connection.

A notice is a short text (the job events module's JSON); PostgreSQL delivers it to every listening process once the
sending transaction commits, the sender's own included. A listener that loses its connection reconnects; notices
sent meanwhile are missed, which is why job state always lives in the job row and notices only say "look again".
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

CHANNEL = "pictor_jobs"
RECONNECT_S = 1.0


class JobNotices:
    """Send notices through `engine`'s pool; hear everyone's on a thread of its own, handed to `on_notice`."""

    def __init__(self, engine: Engine, on_notice: Callable[[str], None]) -> None:
        self._engine = engine
        self._on_notice = on_notice
        self._conninfo = make_url(engine.url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="job-notices", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def send(self, payload: str) -> None:
        with self._engine.begin() as connection:
            connection.execute(select(func.pg_notify(CHANNEL, payload)))

    def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    while not self._stopping.is_set():
                        for notice in connection.notifies(timeout=1.0):  # returns each second to check for a stop
                            self._on_notice(notice.payload)
            except psycopg.Error:
                log.warning("job notices: the listening connection failed; reconnecting", exc_info=True)
                self._stopping.wait(RECONNECT_S)
