"""Turns added to one session at once (two API processes, or two requests of one client): each gets its own
position, 1, 2, ... with none lost, on SQLite and PostgreSQL."""

import threading

from pictor.storage import Database
from pictor.storage.sessions import SessionStore


def test_concurrent_turns_of_one_session_get_consecutive_positions(db: Database) -> None:
    store = SessionStore(db)
    tenant = db.create_tenant("acme").id
    session_id = store.create_session(tenant, "sess_concurrent", title=None, options={}).id
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def add_turns(writer: int) -> None:
        start.wait()
        try:
            for i in range(5):
                store.add_turn(tenant, session_id, f"turn_{writer}_{i}", parent_id=None, text="a red circle",
                               prompt="a red circle", action="generate", image_id=None)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=add_turns, args=(writer,)) for writer in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, f"{len(errors)} writers failed, the first with {errors[0]!r}"
    turns = store.session_turns(tenant, session_id)
    assert [turn.position for turn in turns] == list(range(1, 41))
    assert store.get_session(tenant, session_id).tip_turn_id in {turn.id for turn in turns}
