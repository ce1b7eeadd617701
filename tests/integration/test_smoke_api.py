"""A first pass over every cached route: DB then L1, headers present."""
from tests.data_finders import days_with_free_slots, new_patient


def test_departments_db_then_l1(client, app_env):
    headers = app_env.headers()
    first = client.http.get("/api/departments?clientId=1", headers=headers)
    assert first.status_code == 200, first.body
    assert first.headers["X-Cache"] == "DB"
    client.http.get("/api/departments?clientId=1", headers=headers)
    third = client.http.get("/api/departments?clientId=1", headers=headers)
    assert third.headers["X-Cache"] == "L1"
    assert third.body == first.body
    assert third.headers["ETag"] == first.headers["ETag"]
    again = client.http.get("/api/departments?clientId=1", headers={**headers, "If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304


def test_book_then_slot_gone(client, app_env):
    headers = app_env.headers(role="staff")
    day = days_with_free_slots(app_env.sql, 1)[0]
    slots = client.http.get(f"/api/slots/available?clientId=1&date={day}", headers=headers).json_body["slots"]
    slot = slots[0]["slotId"]
    booked = client.http.post("/api/appointments", headers={**headers, "Content-Type": "application/json"},
                              body=f'{{"clientId":1,"slotId":{slot},"patientId":{new_patient(app_env.sql)}}}')
    assert booked.status_code == 201, booked.body
    after = client.http.get(f"/api/slots/available?clientId=1&date={day}", headers=headers).json_body["slots"]
    assert slot not in [s["slotId"] for s in after]
