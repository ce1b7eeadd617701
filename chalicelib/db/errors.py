"""The database layer's own errors, importable without pg8000 (the web layer maps them to
503 answers; a cold start imports them, not the driver)."""
from __future__ import annotations


class DatabaseUnavailable(Exception):
    """PostgreSQL could not be reached or the connection broke twice."""


class WriteOutcomeUnknown(DatabaseUnavailable):
    """The connection broke after a write was sent: it may or may not have been committed."""


class PoolExhausted(DatabaseUnavailable):
    """Every pooled connection stayed busy for the whole wait."""
