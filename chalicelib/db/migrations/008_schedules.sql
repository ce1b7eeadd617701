-- Schedule management through the API (issue 23): departments can be deactivated, doctors
-- can be away, slots can be withdrawn, and departments, doctors and patients get ids from
-- sequences (the seeder moves them past the rows it writes).

ALTER TABLE department ADD COLUMN active boolean NOT NULL DEFAULT true;

-- A period a doctor does not work (a date-time range; no slot is generated inside it).
CREATE TABLE absence (
    tenant_id   integer NOT NULL,
    id          bigint NOT NULL,
    doctor_id   integer NOT NULL,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    reason      text CHECK (length(reason) <= 500),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, doctor_id) REFERENCES doctor (tenant_id, id),
    CHECK (ends_at > starts_at)
);
CREATE SEQUENCE absence_id_seq AS bigint OWNED BY absence.id;
ALTER TABLE absence ALTER COLUMN id SET DEFAULT nextval('absence_id_seq');
CREATE INDEX absence_by_doctor ON absence (tenant_id, doctor_id, starts_at);

-- A slot the schedule no longer offers but that cancelled appointments still refer to (so
-- it cannot be deleted): never listed free, never bookable.
ALTER TABLE slot ADD COLUMN withdrawn_at timestamptz;

CREATE SEQUENCE department_id_seq AS integer OWNED BY department.id;
CREATE SEQUENCE doctor_id_seq AS integer OWNED BY doctor.id;
CREATE SEQUENCE patient_id_seq AS integer OWNED BY patient.id;
SELECT setval('department_id_seq', (SELECT coalesce(max(id), 0) + 1 FROM department), false);
SELECT setval('doctor_id_seq', (SELECT coalesce(max(id), 0) + 1 FROM doctor), false);
SELECT setval('patient_id_seq', (SELECT coalesce(max(id), 0) + 1 FROM patient), false);
ALTER TABLE department ALTER COLUMN id SET DEFAULT nextval('department_id_seq');
ALTER TABLE doctor ALTER COLUMN id SET DEFAULT nextval('doctor_id_seq');
ALTER TABLE patient ALTER COLUMN id SET DEFAULT nextval('patient_id_seq');
