"""Booking: POST /api/appointments through `app.app(event, ctx)` on distinct free future
slots (each booking takes a new slot), interleaved with the bare INSERT transaction floor
and with the booking transaction alone (`commands.book`, no HTTP/auth/cache work)."""
from __future__ import annotations

import random
from typing import Any

from bench import common
from bench.floors import PgFloors


def measure(database: str, n: int, tenant: int = 2) -> dict[str, Any]:
    import app as app_module

    conn = common.connect(database)
    try:
        slots = [r[0] for r in conn.run(
            """SELECT s.id FROM slot s WHERE s.tenant_id = :t AND s.starts_at > now() + interval '1 day'
               AND NOT EXISTS (SELECT 1 FROM appointment a WHERE a.tenant_id = s.tenant_id AND a.slot_id = s.id
                               AND a.status <> 'cancelled') ORDER BY s.id""", t=tenant)]
        patients = [r[0] for r in conn.run("SELECT id FROM patient WHERE tenant_id = :t", t=tenant)]
    finally:
        conn.close()
    rng = random.Random(7)
    rng.shuffle(slots)
    warmup = 30
    n = min(n, len(slots) - warmup)
    # Half the slots for the full request, half for the transaction alone (commands.book).
    direct_slots = slots[n + warmup:][: n + warmup]
    tok = common.token(tenant, "admin")
    ctx = common.LambdaContext()
    events = [common.api_event("POST", "/api/appointments", token_value=tok,
                               body={"clientId": tenant, "slotId": s, "patientId": rng.choice(patients)})
              for s in slots[:n + warmup]]
    statuses: dict[int, int] = {}
    it = iter(events)

    def book() -> None:
        resp = app_module.app(next(it), ctx)
        statuses[resp["statusCode"]] = statuses.get(resp["statusCode"], 0) + 1

    from chalicelib.audit.actor import Actor
    from chalicelib.booking import commands
    from chalicelib.booking.models import BookingBody

    bodies = iter([BookingBody(clientId=tenant, slotId=s, patientId=rng.choice(patients)) for s in direct_slots])
    direct_status: dict[int, int] = {}

    def txn_only() -> None:
        try:
            body = next(bodies)
        except StopIteration:
            return
        result = commands.book(body, Actor("bench", "staff", "bench", tenant))
        direct_status[result.status] = direct_status.get(result.status, 0) + 1

    pg = PgFloors(database)
    try:
        cases = {"floor_insert_txn": (pg.insert_txn, None), "booking": (book, None)}
        if len(direct_slots) >= n + warmup:
            cases["txn_only"] = (txn_only, None)
        res = common.interleaved(cases, n, rounds=6, warmup=warmup)
    finally:
        pg.close()
    res["statuses"] = statuses
    res["txn_only_statuses"] = direct_status
    common.say(f"booking POST p50 {res['booking']['p50_us']:.0f} us p99 {res['booking']['p99_us']:.0f} us |"
               f" bare INSERT txn p50 {res['floor_insert_txn']['p50_us']:.0f} us"
               + (f" | commands.book transaction alone p50 {res['txn_only']['p50_us']:.0f} us"
                  if "txn_only" in res else "")
               + f" | statuses {statuses}")
    return res
