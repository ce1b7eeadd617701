"""The OpenAPI 3 document, built from the same pydantic models the routes validate with."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel

from chalicelib.booking.models import (AppointmentListQuery, BookingBody, CancelBody, DoctorsQuery,
                                       PatientsQuery, SlotsQuery, TenantQuery)

_ERROR = {"$ref": "#/components/schemas/Error"}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(by_alias=True)
    required = set(schema.get("required", []))
    return [{"name": name, "in": "query", "required": name in required, "schema": prop}
            for name, prop in schema["properties"].items()]


def _get(summary: str, model: type[BaseModel], roles: str, cached: bool = True) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {"description": "OK", "content": {"application/json": {}}},
        "400": {"description": "validation_error", "content": {"application/json": {"schema": _ERROR}}},
        "401": {"description": "unauthorized", "content": {"application/json": {"schema": _ERROR}}},
        "403": {"description": "forbidden", "content": {"application/json": {"schema": _ERROR}}},
        "404": {"description": "not_found", "content": {"application/json": {"schema": _ERROR}}},
        "503": {"description": "unavailable", "content": {"application/json": {"schema": _ERROR}}},
    }
    if cached:
        responses["304"] = {"description": "Not modified (If-None-Match matched the ETag)"}
    return {"get": {"summary": summary, "description": f"Roles: {roles}.", "parameters": _query_parameters(model),
                    "security": [{"bearer": []}], "responses": responses}}


def _post(summary: str, model: type[BaseModel], roles: str, codes: dict[str, str]) -> dict[str, Any]:
    responses = {code: {"description": text, "content": {"application/json": {}}} for code, text in codes.items()}
    return {"post": {"summary": summary, "description": f"Roles: {roles}.", "security": [{"bearer": []}],
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}},
                     "responses": responses}}


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document for this API."""
    write_codes = {"400": "validation_error", "401": "unauthorized", "403": "forbidden", "404": "not_found",
                   "503": "unavailable"}
    cancel = _post("Cancel an appointment", CancelBody, "staff, admin; patient (own)",
                   {"200": "Cancelled", "409": "not_cancellable", **write_codes})
    cancel["post"]["parameters"] = [{"name": "id", "in": "path", "required": True,
                                     "schema": {"type": "integer", "minimum": 1}}]
    book = _post("Book a free slot", BookingBody, "staff, admin; patient (own)",
                 {"201": "Booked", "409": "slot_taken", **write_codes})
    book["post"]["parameters"] = [{"name": "Idempotency-Key", "in": "header", "required": False,
                                   "schema": {"type": "string", "maxLength": 200}}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Hospital booking API", "version": "1.0.0"},
        "paths": {
            "/api/health": {"get": {"summary": "Health", "responses": {"200": {"description": "OK"},
                                                                       "503": {"description": "Database down"}}}},
            "/api/departments": _get("Departments", TenantQuery, "any"),
            "/api/doctors": _get("Doctors", DoctorsQuery, "any"),
            "/api/patients": _get("Patient search", PatientsQuery, "staff, admin"),
            "/api/slots/available": _get("Free slots of a day", SlotsQuery, "any"),
            "/api/appointments/list": _get("Appointments", AppointmentListQuery, "staff, admin; patient (own)"),
            "/api/appointments": book,
            "/api/appointments/{id}/cancel": cancel,
            "/api/dashboard/stats": _get("Dashboard", TenantQuery, "staff, admin"),
            "/monitor": {"get": {"summary": "Cache monitor page (HTML)",
                                 "description": "No token needed for the page; its data needs an admin token.",
                                 "responses": {"200": {"description": "HTML", "content": {
                                     "text/html": {"schema": {"type": "string"}}}}}}},
            "/api/cache/stats": {"get": {"summary": "Cache statistics", "description": "Roles: admin.",
                                         "security": [{"bearer": []}],
                                         "responses": {"200": {"description": "OK"}}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {
                "BookingBody": BookingBody.model_json_schema(ref_template="#/components/schemas/{model}"),
                "CancelBody": CancelBody.model_json_schema(ref_template="#/components/schemas/{model}"),
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                                   "details": {"type": "array", "items": {}}}}}},
            },
        },
    }
