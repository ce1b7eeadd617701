-- Core schema. Every row is keyed by (tenant_id, id) and every reference carries the
-- tenant, so no row can point across tenants. Ids come from one sequence per table and
-- are unique across tenants too, which keeps cache keys and cursors short.

CREATE TABLE tenant (
    id          integer PRIMARY KEY,
    name        text NOT NULL,
    time_zone   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE department (
    tenant_id   integer NOT NULL REFERENCES tenant (id),
    id          integer NOT NULL,
    name        text NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE doctor (
    tenant_id      integer NOT NULL,
    id             integer NOT NULL,
    department_id  integer NOT NULL,
    name           text NOT NULL,
    specialty      text NOT NULL,
    active         boolean NOT NULL DEFAULT true,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, department_id) REFERENCES department (tenant_id, id)
);
CREATE INDEX doctor_by_department ON doctor (tenant_id, department_id, id);

-- Weekly working hours; slots are generated from them (ISO weekday: 1 = Monday).
CREATE TABLE working_hours (
    tenant_id     integer NOT NULL,
    doctor_id     integer NOT NULL,
    weekday       smallint NOT NULL CHECK (weekday BETWEEN 1 AND 7),
    starts        time NOT NULL,
    ends          time NOT NULL,
    slot_minutes  smallint NOT NULL CHECK (slot_minutes BETWEEN 5 AND 240),
    PRIMARY KEY (tenant_id, doctor_id, weekday, starts),
    FOREIGN KEY (tenant_id, doctor_id) REFERENCES doctor (tenant_id, id),
    CHECK (ends > starts)
);

CREATE TABLE slot (
    tenant_id      integer NOT NULL,
    id             bigint NOT NULL,
    doctor_id      integer NOT NULL,
    department_id  integer NOT NULL,
    day            date NOT NULL,          -- the local date in the tenant's time zone
    starts_at      timestamptz NOT NULL,
    ends_at        timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, doctor_id) REFERENCES doctor (tenant_id, id),
    FOREIGN KEY (tenant_id, department_id) REFERENCES department (tenant_id, id),
    UNIQUE (tenant_id, doctor_id, starts_at),
    CHECK (ends_at > starts_at)
);
CREATE SEQUENCE slot_id_seq AS bigint OWNED BY slot.id;
ALTER TABLE slot ALTER COLUMN id SET DEFAULT nextval('slot_id_seq');
-- Free slots by tenant/day, then department or doctor, in start order.
CREATE INDEX slot_by_day ON slot (tenant_id, day, starts_at);
CREATE INDEX slot_by_department_day ON slot (tenant_id, department_id, day, starts_at);
CREATE INDEX slot_by_doctor_day ON slot (tenant_id, doctor_id, day, starts_at);

CREATE TABLE patient (
    tenant_id      integer NOT NULL REFERENCES tenant (id),
    id             integer NOT NULL,
    record_number  text NOT NULL,
    name           text NOT NULL,
    birth_date     date NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, record_number)
);
-- Name-prefix search: lower(name) with text_pattern_ops serves LIKE 'prefix%'.
CREATE INDEX patient_by_name ON patient (tenant_id, lower(name) text_pattern_ops);

CREATE TABLE appointment (
    tenant_id      integer NOT NULL,
    id             bigint NOT NULL,
    slot_id        bigint NOT NULL,
    patient_id     integer NOT NULL,
    doctor_id      integer NOT NULL,
    department_id  integer NOT NULL,
    day            date NOT NULL,
    starts_at      timestamptz NOT NULL,
    ends_at        timestamptz NOT NULL,
    status         text NOT NULL DEFAULT 'booked'
                   CHECK (status IN ('booked', 'checked_in', 'completed', 'cancelled', 'no_show')),
    reason         text CHECK (length(reason) <= 500),
    created_at     timestamptz NOT NULL DEFAULT now(),
    cancelled_at   timestamptz,
    cancel_reason  text CHECK (length(cancel_reason) <= 500),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, slot_id) REFERENCES slot (tenant_id, id),
    FOREIGN KEY (tenant_id, patient_id) REFERENCES patient (tenant_id, id),
    FOREIGN KEY (tenant_id, doctor_id) REFERENCES doctor (tenant_id, id),
    CHECK (ends_at > starts_at),
    CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL)),
    -- No doctor is in two live appointments at once. Without btree_gist, the scalar
    -- columns become one-point ranges so that GiST can compare them with =.
    CONSTRAINT appointment_no_doctor_overlap EXCLUDE USING gist (
        int4range(tenant_id, tenant_id, '[]') WITH =,
        int4range(doctor_id, doctor_id, '[]') WITH =,
        tstzrange(starts_at, ends_at, '[)') WITH &&
    ) WHERE (status <> 'cancelled')
);
CREATE SEQUENCE appointment_id_seq AS bigint OWNED BY appointment.id;
ALTER TABLE appointment ALTER COLUMN id SET DEFAULT nextval('appointment_id_seq');
-- At most one live appointment per slot.
CREATE UNIQUE INDEX appointment_one_live_per_slot ON appointment (tenant_id, slot_id)
    WHERE status <> 'cancelled';
CREATE INDEX appointment_by_day ON appointment (tenant_id, day, starts_at, id);
CREATE INDEX appointment_by_start ON appointment (tenant_id, starts_at, id);
CREATE INDEX appointment_by_doctor_day ON appointment (tenant_id, doctor_id, day, starts_at);
CREATE INDEX appointment_by_patient ON appointment (tenant_id, patient_id, starts_at);

-- Answers of POST /api/appointments kept for Idempotency-Key retries.
CREATE TABLE idempotency_key (
    tenant_id     integer NOT NULL REFERENCES tenant (id),
    key           text NOT NULL,
    request_hash  text NOT NULL,
    status_code   smallint NOT NULL,
    body          text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);

-- Cache invalidations that could not reach Redis after a commit; replayed when Redis is back.
CREATE TABLE cache_invalidation_outbox (
    id          bigserial PRIMARY KEY,
    version_keys text[] NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
