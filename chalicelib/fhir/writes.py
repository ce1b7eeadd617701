"""FHIR Appointment writes, each mapped onto the native service (the same booking rules,
idempotency and after-write invalidation) and answered with the Appointment as FHIR renders it.

- POST: `slot` (one `Slot/<id>`), a `Patient/<id>` participant, optional `description`;
  `If-None-Exist: slot=Slot/<id>&patient=Patient/<id>` returns the live appointment if any.
- PUT or PATCH (a partial resource): `status` cancelled (cancel), arrived / fulfilled /
  noshow (status change), or `slot` (reschedule). Other fields are ignored.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional
from urllib.parse import parse_qs

import orjson
from chalice import Response

from chalicelib.auth import Principal
from chalicelib.booking import service
from chalicelib.booking.outcome import WriteResult
from chalicelib.booking.read_source import primary_fill
from chalicelib.fhir import queries
from chalicelib.fhir.outcome import fhir_response
from chalicelib.fhir.search import STATUS_FROM_FHIR, Query, resource_id
from chalicelib.http import ApiError, write_response


def _reference(value: Any, resource_type: str, where: str) -> int:
    """The id of `{"reference": "<Type>/<id>"}`; 400 for anything else."""
    if not isinstance(value, dict) or not isinstance(value.get("reference"), str):
        raise ApiError(400, f"'{where}' must be a reference to a {resource_type}.")
    return resource_id(value["reference"], resource_type, wide=resource_type == "Slot")


def _one_slot(body: Mapping[str, Any]) -> int:
    slots = body.get("slot")
    if not isinstance(slots, list) or len(slots) != 1:
        raise ApiError(400, "'slot' must list exactly one Slot reference.")
    return _reference(slots[0], "Slot", "slot")


def _patient(body: Mapping[str, Any]) -> int:
    participants = body.get("participant")
    if not isinstance(participants, list):
        raise ApiError(400, "'participant' must list the Patient.")
    patients = [p.get("actor") for p in participants
                if isinstance(p, dict) and str((p.get("actor") or {}).get("reference", "")).startswith("Patient/")]
    if len(patients) != 1:
        raise ApiError(400, "'participant' must name exactly one Patient.")
    return _reference(patients[0], "Patient", "participant.actor")


def _appointment(body: Mapping[str, Any]) -> Mapping[str, Any]:
    if body.get("resourceType") != "Appointment":
        raise ApiError(400, "The body must be an Appointment resource.")
    return body


def _rendered(principal: Principal, native: WriteResult) -> Response:
    """A native write's result as the FHIR Appointment it produced (a refusal answered as a
    result, such as 409 slot_taken, passes through in the API's error shape, which the FHIR
    boundary turns into an OperationOutcome)."""
    if native.status >= 400:
        return write_response(native)
    ident = orjson.loads(native.body)["appointment"]["id"]
    # Read on the primary: the write has just committed there (a replica may not have it yet).
    found = Query(clientId=principal.tenant, filters=(("_id", str(ident)),))
    appointment = queries.read(primary_fill(), "Appointment", found)
    return fhir_response(appointment, status=native.status)


def _existing(principal: Principal, condition: str) -> Optional[str]:
    """The live appointment If-None-Exist names (`slot=...&patient=...`), or None."""
    params = parse_qs(condition, keep_blank_values=True)
    if set(params) != {"slot", "patient"} or any(len(v) != 1 for v in params.values()):
        raise ApiError(400, "If-None-Exist supports slot=Slot/<id>&patient=Patient/<id>.")
    slot = resource_id(params["slot"][0], "Slot", wide=True)
    patient = resource_id(params["patient"][0], "Patient")
    if principal.is_patient and patient != principal.patient_id:
        raise ApiError(403, "A patient may book only for themselves.")
    live = Query(clientId=principal.tenant, filters=(("live-slot", str(slot)), ("patient", str(patient))))
    return queries.read(primary_fill(), "Appointment", live)


def create(principal: Principal, body: Mapping[str, Any], idempotency_key: Optional[str],
           if_none_exist: Optional[str]) -> Response:
    """POST /fhir/R4/Appointment: book (201), or 200 with the live appointment If-None-Exist finds."""
    appointment = _appointment(body)
    if appointment.get("status", "booked") != "booked":
        raise ApiError(400, "A new Appointment's status must be booked.")
    if if_none_exist:
        existing = _existing(principal, if_none_exist)
        if existing is not None:
            return fhir_response(existing)
    native = {"clientId": principal.tenant, "slotId": _one_slot(appointment), "patientId": _patient(appointment)}
    if "description" in appointment:
        native["reason"] = appointment["description"]
    return _rendered(principal, service.book(principal, native, idempotency_key))


def update(principal: Principal, appointment_id: str, body: Mapping[str, Any],
           idempotency_key: Optional[str]) -> Response:
    """PUT/PATCH /fhir/R4/Appointment/{id}: cancel, a status change, or a reschedule."""
    appointment = _appointment(body)
    changes_slot, status = "slot" in appointment, appointment.get("status")
    client = {"clientId": principal.tenant}
    if changes_slot and status not in (None, "booked"):
        raise ApiError(400, "Change either 'status' or 'slot', not both.")
    if changes_slot:
        new_slot = {**client, "slotId": _one_slot(appointment)}
        return _rendered(principal, service.reschedule(principal, appointment_id, new_slot, idempotency_key))
    if status == "cancelled":
        return _rendered(principal, service.cancel(principal, appointment_id, client))
    if status in STATUS_FROM_FHIR and status != "booked":
        changed = {**client, "status": STATUS_FROM_FHIR[status]}
        return _rendered(principal, service.set_status(principal, appointment_id, changed))
    raise ApiError(400, "Send 'status' (cancelled, arrived, fulfilled, noshow) or 'slot' to change.")
