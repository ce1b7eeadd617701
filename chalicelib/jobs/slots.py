"""The daily slot job: extend every tenant's slots to the horizon (the domain's slot
generation, chalicelib/booking/slot_plan.py) and purge expired Idempotency-Key answers."""
from __future__ import annotations

from chalicelib.booking.slot_plan import extend_slots


def run_scheduled_extension() -> dict[str, int]:
    """What the daily schedule does: create the missing slots up to the horizon, every
    tenant, and delete Idempotency-Key answers past their 24 hours."""
    from chalicelib.booking.idempotency import PURGE_IDEMPOTENCY_SQL
    from chalicelib.db.connection import connect
    from chalicelib.settings import get_settings

    conn = connect(statement_timeout_ms=get_settings().refresh_timeout_ms)
    try:
        inserted = extend_slots(conn, get_settings().slot_horizon_days)
        conn.run(PURGE_IDEMPOTENCY_SQL)
        return {"inserted": inserted, "idempotencyKeysPurged": conn.row_count}
    finally:
        conn.close()
