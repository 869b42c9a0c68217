"""Prompt salts: the secret behind the prompt hash of an image (subject: its id) or of an audit entry
(`audit:<index>`). Erasing a salt makes that hash unlinkable to the prompt; the hash itself stays."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import delete
from sqlalchemy.orm import Session

from pictor.storage.tables import PromptSaltRow, utcnow
from pictor.storage.transactions import Transactions


def add_salts(session: Session, salts: Mapping[str, str]) -> None:
    """Store salts (subject -> hex) in the caller's transaction (with the audit entries they belong to)."""
    now = utcnow()
    for subject, salt in salts.items():
        session.add(PromptSaltRow(subject=subject, salt=salt, created=now))


def delete_salt(session: Session, subject: str) -> bool:
    """Delete one subject's salt in the caller's transaction; True if there was one."""
    return session.execute(delete(PromptSaltRow).where(PromptSaltRow.subject == subject)).rowcount > 0


class PromptSaltQueries(Transactions):
    """Prompt salts: part of `Database`."""

    def prompt_salt(self, subject: str) -> str | None:
        """The salt (hex) behind the prompt hash of an image id or `audit:<index>`; None once erased."""
        with self._transaction() as session:
            row = session.get(PromptSaltRow, subject)
            return None if row is None else row.salt

    def erase_salt(self, subject: str) -> bool:
        """Delete one prompt salt (e.g. `audit:<index>` of a refused request); True if there was one."""
        with self._transaction() as session:
            return delete_salt(session, subject)
