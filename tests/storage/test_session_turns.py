"""Turns added to one session at once (two API processes, or two requests of one client): each gets its own
position, 1, 2, ... with none lost, on SQLite and PostgreSQL."""

from concurrent_writers import run_writers

from pictor.storage import Database
from pictor.storage.sessions import SessionStore


def test_concurrent_turns_of_one_session_get_consecutive_positions(db: Database) -> None:
    store = SessionStore(db)
    tenant = db.create_tenant("acme").id
    session_id = store.create_session(tenant, "sess_concurrent", title=None, options={}).id

    def add_turns(writer: int) -> None:
        for i in range(5):
            store.add_turn(tenant, session_id, f"turn_{writer}_{i}", parent_id=None, text="a red circle",
                           prompt="a red circle", action="generate", image_id=None)

    run_writers(add_turns)
    turns = store.session_turns(tenant, session_id)
    assert [turn.position for turn in turns] == list(range(1, 41))
    assert store.get_session(tenant, session_id).tip_turn_id in {turn.id for turn in turns}
