"""Governance: provenance (C2PA), the audit log, and (later) watermarks, badges and content policy."""
