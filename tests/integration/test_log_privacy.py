"""No row values or patient details in log lines: an unexpected database error is logged
with its type, SQLSTATE and code locations only (issue 11)."""
from __future__ import annotations

import json

from chalicelib.observability import logger
from tests.helpers_servers import free_future_slots


def test_an_unexpected_database_error_logs_type_and_sqlstate_only(client, app_env, caplog):
    secret_detail = "Patient Zelda Quist MRN-424242"
    app_env.sql("""CREATE FUNCTION refuse_booking() RETURNS trigger LANGUAGE plpgsql AS $$
                   BEGIN RAISE EXCEPTION 'refused for %', NEW.reason USING ERRCODE = 'P0001',
                         DETAIL = 'row: ' || NEW.reason; END $$""")
    app_env.sql("CREATE TRIGGER refuse_booking BEFORE INSERT ON appointment"
                " FOR EACH ROW EXECUTE FUNCTION refuse_booking()")
    try:
        (slot, _, _), = free_future_slots(app_env, limit=1)
        patient = app_env.sql("SELECT min(id) FROM patient WHERE tenant_id = 1")[0][0]
        caplog.clear()
        response = client.http.post("/api/appointments", headers={**app_env.headers(1, "staff"),
                                                                   "Content-Type": "application/json"},
                                    body=json.dumps({"clientId": 1, "slotId": slot, "patientId": patient,
                                                     "reason": secret_detail}))
        assert response.status_code == 500, response.body
        assert response.json_body["error"]["code"] == "internal_error"
        assert secret_detail not in response.body.decode()
        # Each record as the Powertools formatter writes it: the JSON line that reaches the log.
        lines = [logger.registered_formatter.format(record) for record in caplog.records]
        errors = [json.loads(line) for line in lines if '"level":"ERROR"' in line]
        assert errors, lines
        assert errors[-1]["sqlstate"] == "P0001" and errors[-1]["error_type"] == "DatabaseError"
        assert "commands.py" in errors[-1]["frames"]
        assert not [line for line in lines if "Zelda" in line or "424242" in line], lines
    finally:
        app_env.sql("DROP TRIGGER refuse_booking ON appointment")
        app_env.sql("DROP FUNCTION refuse_booking()")
