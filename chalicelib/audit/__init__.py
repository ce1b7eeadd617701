"""The audit trail (docs/audit.md): who wrote or read what, recorded in PostgreSQL."""
