-- Patients' discharge packets. A packet's code is printed on the patient's papers (codes.kind = 'discharge',
-- no asset); opening it needs the patient's date of birth and a PIN from a separate slip, kept only as an
-- argon2id hash. Names live here and in no other table; scan analytics never see them.
CREATE TABLE patients (
    id INTEGER PRIMARY KEY,
    display_name TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE packets (
    -- Random; the owner tag of the packet's documents. Not the printed code.
    id TEXT PRIMARY KEY,
    code TEXT NOT NULL UNIQUE REFERENCES codes(code),
    patient_id INTEGER NOT NULL REFERENCES patients(id),
    language TEXT NOT NULL,
    -- argon2id of the date of birth and the PIN together: a wrong guess does not say which was wrong.
    secret_hash TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    locked_at TEXT
);

CREATE TABLE packet_documents (
    id INTEGER PRIMARY KEY,
    packet_id TEXT NOT NULL REFERENCES packets(id),
    position INTEGER NOT NULL,
    title TEXT NOT NULL,
    markdown TEXT NOT NULL,
    -- The bundled leaflet it started from, if any.
    template TEXT
);
CREATE INDEX packet_documents_packet ON packet_documents(packet_id, position);

CREATE TABLE patient_sessions (
    token_hash TEXT PRIMARY KEY,
    packet_id TEXT NOT NULL REFERENCES packets(id),
    created_at TEXT NOT NULL,
    last_seen TEXT NOT NULL
);

-- Every access to a packet and every failed attempt; read by clinicians and admins.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    -- A staff username, or 'patient' / 'anonymous'.
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    packet_id TEXT,
    detail TEXT NOT NULL DEFAULT '',
    ip_prefix TEXT
);
CREATE INDEX audit_log_packet ON audit_log(packet_id, id);
