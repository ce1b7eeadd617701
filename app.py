"""Routes and schedules only: parse the request, call a service, answer its result."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalice import Rate, Response

from chalicelib import monitor, process_copy, runtime, web
from chalicelib.api_app import ShapedErrorsChalice
from chalicelib.booking import resources
from chalicelib.fhir import routes as fhir_routes
from chalicelib.http import ApiError, json_response, parse_json_body, write_response
from chalicelib.lazy import lazy_module
from chalicelib.observability import configure, log_scheduled

# Imported by the first request or job that needs them, not by a cold start (docs/performance.md).
if TYPE_CHECKING:
    from chalicelib import openapi as api_document
    from chalicelib.audit import listing as audit_log
    from chalicelib.booking import admin_service, service
    from chalicelib.jobs import refresh as refresh_job
    from chalicelib.jobs import slots as slots_job
else:
    api_document = lazy_module("chalicelib.openapi", globals())
    audit_log = lazy_module("chalicelib.audit.listing", globals())
    service = lazy_module("chalicelib.booking.service", globals())
    admin_service = lazy_module("chalicelib.booking.admin_service", globals())
    refresh_job = lazy_module("chalicelib.jobs.refresh", globals())
    slots_job = lazy_module("chalicelib.jobs.slots", globals())

# Chalice, with its own errors (wrong method, ...) answered in the API's error shape.
app = ShapedErrorsChalice(app_name="hospital-booking", configure_logs=False)
configure(app, current_runtime=runtime.built)
web.bind(app)
process_copy.install()  # a forked or restored copy starts as a new container
fhir_routes.register(app)  # /fhir/R4 (docs/fhir.md)

# "*/*": every Content-Type reaches the handler, so a wrong one gets the API's JSON 415, not Chalice's.
JSON_TYPES = ["application/json", "*/*"]
# A bulk import of 1,000 patients is about 80 KiB of JSON.
BULK_BODY_BYTES = 256 * 1024


def _json_body(max_bytes: int = 16 * 1024) -> dict[str, Any]:
    request = web.request()
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise ApiError(415, "Send the body as Content-Type: application/json.", code="unsupported_media_type")
    return parse_json_body(request.raw_body, max_bytes)


def _admin_write(action: Any, *path: str, max_bytes: int = 16 * 1024) -> Response:
    """A schedule-management write: the caller, the path's ids, the body and its Idempotency-Key."""
    headers = web.request().headers
    return write_response(action(web.principal(headers), *path, _json_body(max_bytes), headers.get("idempotency-key")))


@app.route("/api/health")
@web.endpoint
def health() -> Response:
    return web.health()


@app.route("/api/openapi.json")
@web.endpoint
def openapi() -> Response:
    return json_response(api_document.document())


@app.route(resources.DEPARTMENTS.path)
@web.endpoint
def departments() -> Response:
    return web.cached_read(resources.DEPARTMENTS)


@app.route(resources.DOCTORS.path)
@web.endpoint
def doctors() -> Response:
    return web.cached_read(resources.DOCTORS)


@app.route(resources.PATIENTS.path)
@web.endpoint
def patients() -> Response:
    return web.cached_read(resources.PATIENTS)


@app.route(resources.SLOTS.path)
@web.endpoint
def free_slots() -> Response:
    return web.cached_read(resources.SLOTS)


@app.route(resources.APPOINTMENTS.path)
@web.endpoint
def appointment_list() -> Response:
    return web.cached_read(resources.APPOINTMENTS)


@app.route("/api/appointments", methods=["POST"], content_types=JSON_TYPES)
@web.endpoint
def book() -> Response:
    headers = web.request().headers
    caller = web.principal(headers)
    return write_response(service.book(caller, _json_body(), headers.get("idempotency-key")))


@app.route("/api/appointments/{appointment_id}/cancel", methods=["POST"], content_types=JSON_TYPES)
@web.endpoint
def cancel(appointment_id: str) -> Response:
    caller = web.principal(web.request().headers)
    return write_response(service.cancel(caller, appointment_id, _json_body()))


@app.route("/api/appointments/{appointment_id}/reschedule", methods=["POST"], content_types=JSON_TYPES)
@web.endpoint
def reschedule(appointment_id: str) -> Response:
    headers = web.request().headers
    caller = web.principal(headers)
    return write_response(service.reschedule(caller, appointment_id, _json_body(), headers.get("idempotency-key")))


@app.route("/api/appointments/{appointment_id}/status", methods=["POST"], content_types=JSON_TYPES)
@web.endpoint
def set_status(appointment_id: str) -> Response:
    caller = web.principal(web.request().headers)
    return write_response(service.set_status(caller, appointment_id, _json_body()))


@app.route("/api/admin/departments", methods=["POST"], content_types=JSON_TYPES)
@web.endpoint
def create_department() -> Response:
    return _admin_write(admin_service.create_department)


@app.route("/api/admin/departments/{department_id}", methods=["PATCH"], content_types=JSON_TYPES)
@web.endpoint
def change_department(department_id: str) -> Response:
    return _admin_write(admin_service.change_department, department_id)


@app.route("/api/admin/doctors", methods=["POST"], content_types=JSON_TYPES)
@web.endpoint
def create_doctor() -> Response:
    return _admin_write(admin_service.create_doctor)


@app.route("/api/admin/doctors/{doctor_id}", methods=["PATCH"], content_types=JSON_TYPES)
@web.endpoint
def change_doctor(doctor_id: str) -> Response:
    return _admin_write(admin_service.change_doctor, doctor_id)


@app.route("/api/admin/doctors/{doctor_id}/working-hours", methods=["PUT"], content_types=JSON_TYPES)
@web.endpoint
def working_hours(doctor_id: str) -> Response:
    return _admin_write(admin_service.replace_working_hours, doctor_id)


@app.route("/api/admin/doctors/{doctor_id}/absences", methods=["POST"], content_types=JSON_TYPES)
@web.endpoint
def add_absence(doctor_id: str) -> Response:
    return _admin_write(admin_service.add_absence, doctor_id)


@app.route("/api/admin/doctors/{doctor_id}/absences/{absence_id}", methods=["DELETE"])
@web.endpoint
def remove_absence(doctor_id: str, absence_id: str) -> Response:
    request = web.request()
    return write_response(admin_service.remove_absence(web.principal(request.headers), doctor_id, absence_id,
                                                       dict(request.query_params or {}),
                                                       request.headers.get("idempotency-key")))


@app.route("/api/admin/patients", methods=["POST"], content_types=JSON_TYPES)
@web.endpoint
def create_patient() -> Response:
    return _admin_write(admin_service.create_patient)


@app.route("/api/admin/patients/by-record/{record_number}", methods=["PUT"], content_types=JSON_TYPES)
@web.endpoint
def upsert_patient(record_number: str) -> Response:
    return _admin_write(admin_service.upsert_patient, record_number)


@app.route("/api/admin/patients/bulk", methods=["POST"], content_types=JSON_TYPES)
@web.endpoint
def import_patients() -> Response:
    return _admin_write(admin_service.import_patients, max_bytes=BULK_BODY_BYTES)


@app.route("/api/admin/slot-publication", methods=["PUT"], content_types=JSON_TYPES)
@web.endpoint
def set_slot_publication() -> Response:
    return _admin_write(admin_service.set_slot_publication)


@app.route(resources.DASHBOARD.path)
@web.endpoint
def dashboard() -> Response:
    return web.cached_read(resources.DASHBOARD)


@app.route("/api/audit")
@web.endpoint
def audit_trail() -> Response:
    request = web.request()
    return audit_log.audit_page(web.principal(request.headers), dict(request.query_params or {}))


@app.route("/api/cache/stats")
@web.endpoint
def cache_stats() -> Response:
    return web.cache_stats(web.principal(web.request().headers))


@app.route("/monitor")
def monitor_page() -> Response:
    return monitor.page_response()


# The job's module is imported inside log_scheduled, so an import failure is logged as the job's.
@app.schedule(Rate(1, unit=Rate.MINUTES), name="refresh_views")
def refresh_views(event: Any) -> dict[str, Any]:
    return log_scheduled("refresh_views", lambda: refresh_job.run_scheduled_refresh(),
                         getattr(event, "context", None))


@app.schedule(Rate(1, unit=Rate.DAYS), name="extend_slots")
def extend_slots(event: Any) -> dict[str, Any]:
    return log_scheduled("extend_slots", lambda: slots_job.run_scheduled_extension(),
                         getattr(event, "context", None))
