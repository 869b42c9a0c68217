"""The metadata database: one `Database` object, composed of one set of queries per record type.

Each record type's queries live in a module of their own (tenants, usage, api_keys, images, audit_log,
prompt_salts); sessions, jobs and batches have stores of their own built on a `Database` (`JobStore(database)`).
The names below are re-exported so that `from pictor.storage.database import ...` keeps working.
"""

from __future__ import annotations

from pictor.storage.api_keys import ApiKeyInfo, ApiKeyQueries, NewApiKey, Principal
from pictor.storage.audit_log import AuditCheckpoint, AuditEntry, AuditItem, AuditLogQueries, AuditReservationLost
from pictor.storage.images import PROMPT_DERIVED_KEYS, PROMPT_KEYS, ImageQueries, ImageRecord, without_prompts
from pictor.storage.jobs import JOB_TERMINAL, JobNotFound, JobRecord, JobStore, QueueHead
from pictor.storage.prompt_salts import PromptSaltQueries
from pictor.storage.sessions import SessionNotFound, SessionRecord, SessionStore, TurnRecord
from pictor.storage.shared_queries import blob_held, tenant_row
from pictor.storage.tenants import Tenant, TenantQueries
from pictor.storage.usage import UsageQueries


class Database(TenantQueries, UsageQueries, ApiKeyQueries, ImageQueries, AuditLogQueries, PromptSaltQueries):
    """The metadata store behind one SQLAlchemy engine; any URL works, SQLite is the default.

    Every public method is one transaction (see `Transactions`); the engine, `close()` and the unit of work
    come from `Transactions`, which each record type's queries share.
    """


__all__ = [
    "JOB_TERMINAL",
    "PROMPT_DERIVED_KEYS",
    "PROMPT_KEYS",
    "ApiKeyInfo",
    "AuditCheckpoint",
    "AuditEntry",
    "AuditItem",
    "AuditReservationLost",
    "Database",
    "ImageRecord",
    "JobNotFound",
    "JobRecord",
    "JobStore",
    "NewApiKey",
    "Principal",
    "QueueHead",
    "SessionNotFound",
    "SessionRecord",
    "SessionStore",
    "Tenant",
    "TurnRecord",
    "blob_held",
    "tenant_row",
    "without_prompts",
]
