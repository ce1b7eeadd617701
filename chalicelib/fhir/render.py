"""SQL expressions that render our rows as FHIR R4 resources (PostgreSQL builds the JSON;
json_strip_nulls drops absent optional fields, which FHIR forbids as null)."""
from __future__ import annotations

DEPARTMENT_SYSTEM = "urn:hospital-booking:department"
RECORD_NUMBER_SYSTEM = "urn:hospital-booking:record-number"


def service_type(dep: str) -> str:
    """A department (alias `dep`) as a Schedule/Slot/Appointment serviceType."""
    return (f"json_build_array(json_build_object('coding', json_build_array(json_build_object("
            f"'system', '{DEPARTMENT_SYSTEM}', 'code', {dep}.id::text)), 'text', {dep}.name))")


PRACTITIONER = """json_build_object('resourceType', 'Practitioner', 'id', d.id::text, 'active', d.active,
    'name', json_build_array(json_build_object('text', d.name)),
    'qualification', json_build_array(json_build_object('code', json_build_object('text', d.specialty))))"""

HEALTHCARE_SERVICE = """json_build_object('resourceType', 'HealthcareService', 'id', dep.id::text,
    'active', true, 'name', dep.name)"""

SCHEDULE = f"""json_build_object('resourceType', 'Schedule', 'id', d.id::text, 'active', d.active,
    'actor', json_build_array(json_build_object('reference', 'Practitioner/' || d.id, 'display', d.name)),
    'serviceType', {service_type('dep')})"""

# `busy`: a live appointment holds the slot (alias s; dep its department).
SLOT = f"""json_build_object('resourceType', 'Slot', 'id', s.id::text,
    'schedule', json_build_object('reference', 'Schedule/' || s.doctor_id),
    'serviceType', {service_type('dep')},
    'status', CASE WHEN EXISTS (SELECT 1 FROM appointment a WHERE a.tenant_id = s.tenant_id
                                AND a.slot_id = s.id AND a.status <> 'cancelled') THEN 'busy' ELSE 'free' END,
    'start', s.starts_at, 'end', s.ends_at)"""

APPOINTMENT = f"""json_strip_nulls(json_build_object('resourceType', 'Appointment', 'id', a.id::text,
    'status', CASE a.status WHEN 'checked_in' THEN 'arrived' WHEN 'completed' THEN 'fulfilled'
                            WHEN 'no_show' THEN 'noshow' ELSE a.status END,
    'serviceType', {service_type('dep')}, 'description', a.reason,
    'start', a.starts_at, 'end', a.ends_at,
    'slot', json_build_array(json_build_object('reference', 'Slot/' || a.slot_id)),
    'participant', json_build_array(
        json_build_object('actor', json_build_object('reference', 'Patient/' || a.patient_id, 'display', p.name),
                          'status', 'accepted'),
        json_build_object('actor', json_build_object('reference', 'Practitioner/' || a.doctor_id,
                                                     'display', d.name), 'status', 'accepted'))))"""

PATIENT = f"""json_build_object('resourceType', 'Patient', 'id', p.id::text,
    'identifier', json_build_array(json_build_object('system', '{RECORD_NUMBER_SYSTEM}', 'value', p.record_number)),
    'name', json_build_array(json_build_object('text', p.name)), 'birthDate', p.birth_date)"""
