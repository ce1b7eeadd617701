"""The OpenAPI 3.1 document: request parameters and bodies from the same pydantic models
the routes validate with; every answer a route can give (2xx, 304 and each error) with its
schema, so a client generator or a fuzzer (schemathesis in CI) can check responses."""
from __future__ import annotations

from functools import lru_cache
from typing import Any, get_args

from pydantic import BaseModel

from chalicelib.booking.admin_models import (
    AbsenceBody,
    BulkPatient,
    BulkPatientsBody,
    DepartmentBody,
    DepartmentChange,
    DoctorBody,
    DoctorChange,
    PatientBody,
    PatientFields,
    SlotPublicationBody,
    WorkingHoursBody,
)
from chalicelib.booking.models import (
    AppointmentListQuery,
    AuditAction,
    AuditQuery,
    BookingBody,
    CancelBody,
    DoctorsQuery,
    PatientsQuery,
    RescheduleBody,
    SlotsQuery,
    StatusBody,
    TenantQuery,
)

_REF = "#/components/schemas/{model}"
_ID = {"type": "integer", "minimum": 1}
_TIME = {"type": "string", "format": "date-time"}
_DATE = {"type": "string", "format": "date"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _object(properties: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """A closed-world object schema: every property required unless named optional."""
    return {"type": "object", "required": [name for name in properties if name not in optional],
            "properties": properties}


def _list_of(field: str, item: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return _object({"clientId": _ID, **extra, field: {"type": "array", "items": item}})


_APPOINTMENT = _object({
    "id": _ID, "slotId": _ID, "patientId": _ID, "patientName": {"type": "string"}, "doctorId": _ID,
    "doctorName": {"type": "string"}, "departmentId": _ID, "departmentName": {"type": "string"},
    "startsAt": _TIME, "endsAt": _TIME,
    "status": {"type": "string", "enum": ["booked", "checked_in", "completed", "cancelled", "no_show"]},
    "reason": {"type": ["string", "null"]},
})
_AUDIT_EVENT = _object({
    "id": _ID, "at": _TIME, "actor": _object({"sub": {"type": "string"}, "role": {"type": "string"}}),
    "action": {"type": "string", "enum": list(get_args(AuditAction))},
    "appointmentId": _ID, "patientId": _ID, "requestId": {"type": ["string", "null"]}, "details": {"type": "object"},
}, optional=("appointmentId", "patientId"))
_COUNTS = _object({name: {"type": "integer", "minimum": 0}
                   for name in ("total", "booked", "checkedIn", "completed", "cancelled", "noShow")})
_TIER = {"type": "object", "required": ["hits", "misses", "hitRate", "p50Us", "p99Us"],
         "properties": {"hits": {"type": "integer"}, "misses": {"type": "integer"},
                        "hitRate": {"type": ["number", "null"]}, "p50Us": {"type": ["number", "null"]},
                        "p99Us": {"type": ["number", "null"]}}}

SCHEMAS: dict[str, Any] = {
    "Error": _object({"error": _object({"code": {"type": "string", "pattern": "^[a-z_]+$"},
                                        "message": {"type": "string", "minLength": 1},
                                        "details": {"type": "array", "items": {}}}, optional=("details",))}),
    "Health": _object({"status": {"type": "string", "enum": ["ok", "degraded"]},
                       "db": {"type": "string", "enum": ["ok", "down"]},
                       "redis": {"type": "string", "enum": ["ok", "down", "disabled"]},
                       "replica": {"type": "string", "enum": ["ok", "down"]}}, optional=("replica",)),
    "Departments": _list_of("departments", _object({"id": _ID, "name": {"type": "string"},
                                                    "doctorCount": {"type": "integer", "minimum": 0}})),
    "Doctors": _list_of("doctors", _object({"id": _ID, "name": {"type": "string"}, "departmentId": _ID,
                                            "specialty": {"type": "string"}})),
    "Patients": _list_of("patients", _object({"id": _ID, "name": {"type": "string"}, "birthDate": _DATE})),
    "Slots": _list_of("slots", _object({"slotId": _ID, "doctorId": _ID, "departmentId": _ID, "startsAt": _TIME,
                                        "endsAt": _TIME}), date=_DATE),
    "Appointment": _APPOINTMENT,
    "AppointmentList": _list_of("appointments", _ref("Appointment"), nextCursor={"type": ["string", "null"]}),
    "AuditPage": _list_of("events", _AUDIT_EVENT, nextCursor={"type": ["string", "null"]}),
    "AppointmentAnswer": _object({"appointment": _ref("Appointment")}),
    "Dashboard": _object({
        "clientId": _ID, "asOf": {"type": ["string", "null"], "format": "date-time"}, "today": _COUNTS,
        "upcoming7d": {"type": "integer", "minimum": 0}, "utilization": {"type": "number", "minimum": 0},
        "byDepartment": {"type": "array", "items": _object({
            "departmentId": _ID, "name": {"type": "string"}, "today": {"type": "integer", "minimum": 0},
            "utilization": {"type": "number", "minimum": 0}})}}),
    "DepartmentAnswer": _object({"department": _object({"id": _ID, "name": {"type": "string"},
                                                        "active": {"type": "boolean"}})}),
    "DoctorAnswer": _object({"doctor": _object({"id": _ID, "name": {"type": "string"}, "departmentId": _ID,
                                                "specialty": {"type": "string"}, "active": {"type": "boolean"}})}),
    "WorkingHoursAnswer": _object({
        "doctorId": _ID, "hours": {"type": "array", "items": _ref("WorkingPeriod")},
        "slotsAdded": {"type": "integer", "minimum": 0}, "slotsRemoved": {"type": "integer", "minimum": 0},
        "cancelled": {"type": "array", "items": _ref("Appointment")}}),
    "Absence": _object({"id": _ID, "from": _TIME, "to": _TIME, "reason": {"type": ["string", "null"]}}),
    "AbsenceAnswer": _object({"absence": _ref("Absence"), "slotsRemoved": {"type": "integer", "minimum": 0},
                              "cancelled": {"type": "array", "items": _ref("Appointment")}}),
    "AbsenceRemoved": _object({"absence": _ref("Absence"), "slotsAdded": {"type": "integer", "minimum": 0}}),
    "PatientAnswer": _object({"patient": _object({"id": _ID, "name": {"type": "string"}, "birthDate": _DATE,
                                                  "recordNumber": {"type": "string"}})}),
    "PublicationAnswer": _object({"publication": _object({
        "clientId": _ID, "public": {"type": "boolean"}, "bookingLink": {"type": ["string", "null"]},
        "bookingPhone": {"type": ["string", "null"]}})}),
    "BulkAnswer": _object({"created": {"type": "integer", "minimum": 0}, "updated": {"type": "integer", "minimum": 0}}),
    "CacheFigures": {"type": "object", "required": ["l1", "l2", "db", "staleServed"],
                     "properties": {"l1": _TIER, "l2": _TIER, "db": _TIER, "staleServed": {"type": "integer"}}},
    "CacheStats": {"type": "object", "required": ["fleet", "fleetSource", "container"], "properties": {
        "fleet": {"oneOf": [{"type": "null"}, {"allOf": [_ref("CacheFigures"), {
            "type": "object", "required": ["containers"],
            "properties": {"containers": {"type": "integer", "minimum": 0}}}]}]},
        "fleetSource": {"type": "string", "enum": ["redis", "container"]},
        "fleetError": {"type": ["string", "null"]},
        "container": _ref("CacheFigures"),
        "database": {"type": "object", "properties": {"state": {"type": "string", "enum": ["ok", "down"]}}}}},
}

_ERRORS = {
    400: "validation_error: a parameter, the body or a header is malformed",
    401: "unauthorized: missing, invalid or expired token",
    403: "forbidden: another tenant's clientId, or a role that may not do this",
    404: "not_found: no such tenant, slot, patient or appointment",
    405: "method_not_allowed",
    409: "a conflict named by the code",
    413: "payload_too_large: the body is over 16 KiB (256 KiB for a bulk import)",
    415: "unsupported_media_type: send Content-Type: application/json",
    422: "idempotency_key_reused: this Idempotency-Key came with another body",
    503: "unavailable: the database is down or busy; for a write, the message says whether it may have been saved;"
         " or misconfigured: the service's settings are refused (the message names each variable and what is allowed)",
}
_MISCONFIGURED = ("misconfigured: the service's settings are refused"
                  " (the message names each variable and what is allowed)")
_READ_ERRORS = (400, 401, 403, 404, 405, 503)
_WRITE_ERRORS = (400, 401, 403, 404, 405, 409, 413, 415, 503)
_CACHE_HEADERS = {
    "X-Cache": {"description": "The tier that answered", "schema": {"type": "string",
                                                                   "enum": ["L1", "L2", "DB", "STALE"]}},
    "ETag": {"description": "Tag of the body; send it as If-None-Match", "schema": {"type": "string"}},
    "Cache-Control": {"description": "private, max-age=<seconds of freshness left>", "schema": {"type": "string"}},
    "Server-Timing": {"description": "cache (and db) durations in ms", "schema": {"type": "string"}},
}


def _json(schema_name: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description,
                              "content": {"application/json": {"schema": _ref(schema_name)}}}
    if headers:
        answer["headers"] = headers
    return answer


def _responses(success: dict[str, Any], errors: tuple[int, ...], conflicts: str = "") -> dict[str, Any]:
    out = dict(success)
    for status in errors:
        text = f"{conflicts}" if status == 409 and conflicts else _ERRORS[status]
        out[str(status)] = _json("Error", text)
    return out


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(by_alias=True)
    required = set(schema.get("required", []))
    return [{"name": name, "in": "query", "required": name in required, "schema": prop}
            for name, prop in schema["properties"].items()]


def _cached_get(summary: str, model: type[BaseModel], roles: str, answer: str) -> dict[str, Any]:
    success = {"200": _json(answer, "OK", _CACHE_HEADERS),
               "304": {"description": "Not modified: If-None-Match matched the ETag (no body)"}}
    return {"get": {"summary": summary, "description": f"Roles: {roles}.", "security": [{"bearer": []}],
                    "parameters": _query_parameters(model), "responses": _responses(success, _READ_ERRORS)}}


def _post(summary: str, body: type[BaseModel], roles: str, success: dict[str, Any], conflicts: str,
          extra_errors: tuple[int, ...] = (), parameters: list[dict[str, Any]] | None = None,
          method: str = "post") -> dict[str, Any]:
    return {method: {"summary": summary, "description": f"Roles: {roles}.", "security": [{"bearer": []}],
                     "parameters": parameters or [],
                     "requestBody": {"required": True,
                                     "content": {"application/json": {"schema": _ref(body.__name__)}}},
                     "responses": _responses(success, _WRITE_ERRORS + extra_errors, conflicts)}}


_IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": False,
                    "description": "Repeat a write safely: scoped to your tenant and token subject, kept 24 h",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[\\x20-\\x7e]+$"}}
_PATH_ID = {"name": "id", "in": "path", "required": True,
            "schema": {"type": "integer", "minimum": 1, "maximum": 9_223_372_036_854_775_807}}
_ABSENCE_ID = {**_PATH_ID, "name": "absenceId"}
_RECORD_NUMBER = {"name": "recordNumber", "in": "path", "required": True,
                  "schema": {"type": "string", "minLength": 1, "maxLength": 40}}
_CLIENT_ID = {"name": "clientId", "in": "query", "required": True, "schema": {"type": "integer", "minimum": 1}}
_ADMIN = "admin"
_SCHEDULE_CONFLICT = ("schedule_conflict: booked appointments would fall outside the schedule (details: appointmentId,"
                      " startsAt, patientId); send cancelAppointments: true to cancel them")
_REQUEST_MODELS = (BookingBody, CancelBody, RescheduleBody, StatusBody, DepartmentBody, DepartmentChange, DoctorBody,
                   DoctorChange, WorkingHoursBody, AbsenceBody, PatientBody, PatientFields, BulkPatient,
                   BulkPatientsBody, SlotPublicationBody)


def _request_schemas() -> dict[str, Any]:
    """Every request body's schema, nested models (a working period) as components of their own."""
    schemas: dict[str, Any] = {}
    for model in _REQUEST_MODELS:
        schema = model.model_json_schema(ref_template=_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas["BulkPatientsBody"]["properties"]["patients"]["items"] = _ref("BulkPatient")
    return schemas


def _admin_paths() -> dict[str, Any]:
    """The schedule-management routes (role admin of the tenant)."""
    key = [_IDEMPOTENCY_KEY]
    return {
        "/api/admin/departments": _post("Create a department", DepartmentBody, _ADMIN,
                                        {"201": _json("DepartmentAnswer", "Created")}, _ERRORS[409], (422,), key),
        "/api/admin/departments/{id}": _post(
            "Rename, deactivate or reactivate a department", DepartmentChange, _ADMIN,
            {"200": _json("DepartmentAnswer", "Changed")},
            "department_in_use: it still has active doctors", (422,), [_PATH_ID, *key], "patch"),
        "/api/admin/doctors": _post("Create a doctor", DoctorBody, _ADMIN,
                                    {"201": _json("DoctorAnswer", "Created (no working hours yet)")},
                                    _ERRORS[409], (422,), key),
        "/api/admin/doctors/{id}": _post(
            "Change a doctor (a new department or active flag regenerates the free slots)", DoctorChange, _ADMIN,
            {"200": _json("DoctorAnswer", "Changed")}, _ERRORS[409], (422,), [_PATH_ID, *key], "patch"),
        "/api/admin/doctors/{id}/working-hours": _post(
            "Replace a doctor's weekly working hours", WorkingHoursBody, _ADMIN,
            {"200": _json("WorkingHoursAnswer", "Replaced; future free slots regenerated")}, _SCHEDULE_CONFLICT,
            (422,), [_PATH_ID, *key], "put"),
        "/api/admin/doctors/{id}/absences": _post(
            "Add an absence", AbsenceBody, _ADMIN,
            {"201": _json("AbsenceAnswer", "Added; its free slots removed")}, _SCHEDULE_CONFLICT, (422,),
            [_PATH_ID, *key]),
        "/api/admin/doctors/{id}/absences/{absenceId}": {"delete": {
            "summary": "Remove an absence (its period's slots come back)", "description": "Roles: admin.",
            "security": [{"bearer": []}], "parameters": [_PATH_ID, _ABSENCE_ID, _CLIENT_ID, *key],
            "responses": _responses({"200": _json("AbsenceRemoved", "Removed")}, (*_READ_ERRORS, 422))}},
        "/api/admin/patients": _post("Create a patient", PatientBody, _ADMIN,
                                     {"201": _json("PatientAnswer", "Created")},
                                     "duplicate_record_number", (422,), key),
        "/api/admin/patients/by-record/{recordNumber}": _post(
            "Create or update a patient by record number", PatientFields, _ADMIN,
            {"200": _json("PatientAnswer", "Updated"), "201": _json("PatientAnswer", "Created")}, _ERRORS[409],
            (422,), [_RECORD_NUMBER, *key], "put"),
        "/api/admin/patients/bulk": _post(
            "Import up to 1,000 patients (upsert by record number, all or nothing)", BulkPatientsBody, _ADMIN,
            {"200": _json("BulkAnswer", "Imported; any bad row is a 400 whose details name its index")},
            _ERRORS[409], (422,), key),
        "/api/admin/slot-publication": _post(
            "Publish the free slots as SMART Scheduling Links (or stop), with a booking link and phone",
            SlotPublicationBody, _ADMIN, {"200": _json("PublicationAnswer", "Replaced")}, _ERRORS[409], (422,), key,
            "put"),
    }


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document for this API."""
    schemas = {**SCHEMAS, **_request_schemas()}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Hospital booking API", "version": "1.1.0"},
        "paths": {
            "/api/health": {"get": {"summary": "Health", "responses": {
                "200": _json("Health", "PostgreSQL answers"),
                "503": {"description": f"PostgreSQL is down (Health), or {_MISCONFIGURED} (Error)",
                        "content": {"application/json": {"schema": {"oneOf": [_ref("Health"), _ref("Error")]}}}},
                "405": _json("Error", _ERRORS[405])}}},
            "/api/departments": _cached_get("Departments", TenantQuery, "any", "Departments"),
            "/api/doctors": _cached_get("Doctors", DoctorsQuery, "any", "Doctors"),
            "/api/patients": _cached_get("Patient search", PatientsQuery, "staff, admin", "Patients"),
            "/api/slots/available": _cached_get("Free slots of a day", SlotsQuery, "any", "Slots"),
            "/api/appointments/list": _cached_get("Appointments", AppointmentListQuery,
                                                  "staff, admin; patient (own)", "AppointmentList"),
            "/api/appointments": _post(
                "Book a free slot", BookingBody, "staff, admin; patient (own)",
                {"201": _json("AppointmentAnswer", "Booked")},
                "slot_taken, patient_busy (the patient has another appointment then) or booking_limit (a patient"
                " token's live future bookings are at PATIENT_MAX_FUTURE_BOOKINGS)", (422,), [_IDEMPOTENCY_KEY]),
            "/api/appointments/{id}/cancel": _post(
                "Cancel an appointment", CancelBody, "staff, admin; patient (own)",
                {"200": _json("AppointmentAnswer", "Cancelled")}, "not_cancellable", (), [_PATH_ID]),
            "/api/appointments/{id}/reschedule": _post(
                "Move an appointment to another slot", RescheduleBody, "staff, admin; patient (own)",
                {"200": _json("AppointmentAnswer",
                              "Moved: the old slot is free, the new one taken, in one transaction")},
                "slot_taken, patient_busy or not_reschedulable (not a booked future appointment)", (422,),
                [_PATH_ID, _IDEMPOTENCY_KEY]),
            "/api/appointments/{id}/status": _post(
                "Record arrival or outcome", StatusBody, "staff, admin",
                {"200": _json("AppointmentAnswer", "The new status")},
                "invalid_transition (booked -> checked_in -> completed; booked -> no_show once the slot started)",
                (), [_PATH_ID]),
            **_admin_paths(),
            "/api/dashboard/stats": _cached_get("Dashboard", TenantQuery, "staff, admin", "Dashboard"),
            "/api/audit": {"get": {"summary": "Audit trail", "security": [{"bearer": []}],
                                   "description": "Roles: admin. Newest first; never cached (docs/audit.md).",
                                   "parameters": _query_parameters(AuditQuery), "responses": _responses(
                                       {"200": _json("AuditPage", "OK")}, (400, 401, 403, 405, 503))}},
            "/api/cache/stats": {"get": {"summary": "Cache statistics", "description": "Roles: admin.",
                                         "security": [{"bearer": []}], "responses": _responses(
                                             {"200": _json("CacheStats", "OK")}, (401, 403, 405, 503))}},
            "/api/openapi.json": {"get": {"summary": "This document", "responses": {
                "200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}},
                "405": _json("Error", _ERRORS[405]), "503": _json("Error", _MISCONFIGURED)}}},
            "/monitor": {"get": {"summary": "Cache monitor page (HTML)",
                                 "description": "No token needed for the page; its data needs an admin token.",
                                 "responses": {"200": {"description": "HTML", "content": {
                                     "text/html": {"schema": {"type": "string"}}}},
                                     "405": _json("Error", _ERRORS[405])}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": schemas,
        },
    }
