-- Rooms, DIDs, SIP users, registrations, trunk status and call records (SQLite).
-- Times are Unix epoch milliseconds; flags are integers 0/1.

CREATE TABLE rooms (
    number            TEXT PRIMARY KEY,
    name              TEXT NOT NULL DEFAULT '',
    pin               TEXT,
    moderator_pin     TEXT,
    max_participants  BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

-- Called numbers arriving through trunks that lead to a room.
CREATE TABLE room_dids (
    did          TEXT PRIMARY KEY,
    room_number  TEXT NOT NULL REFERENCES rooms(number) ON DELETE CASCADE
);

-- Desk phone accounts. Passwords are never stored: only HA1 = H(user:realm:password) for the
-- digest algorithms offered (RFC 7616 §3.4.2).
CREATE TABLE sip_users (
    username     TEXT PRIMARY KEY,
    realm        TEXT NOT NULL,
    ha1_md5      TEXT NOT NULL,
    ha1_sha256   TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);

-- Registrar bindings (RFC 3261 §10.3): several contacts per user, each with its own expiry.
CREATE TABLE registrations (
    username     TEXT NOT NULL REFERENCES sip_users(username) ON DELETE CASCADE,
    contact      TEXT NOT NULL,
    q_milli      BIGINT NOT NULL DEFAULT 1000,
    expires_at   BIGINT NOT NULL,
    call_id      TEXT NOT NULL,
    cseq         BIGINT NOT NULL,
    source       TEXT NOT NULL,
    user_agent   TEXT,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (username, contact)
);
CREATE INDEX registrations_expiry ON registrations (expires_at);

-- Live registration state of each configured trunk, as last reported by its state machine.
CREATE TABLE trunk_status (
    name              TEXT PRIMARY KEY,
    state             TEXT NOT NULL,
    detail            TEXT,
    registered_until  BIGINT,
    next_attempt_at   BIGINT,
    updated_at        BIGINT NOT NULL
);

-- One row per call leg, written when the leg ends.
CREATE TABLE call_records (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    leg_id       TEXT NOT NULL UNIQUE,
    call_id      TEXT NOT NULL,
    direction    TEXT NOT NULL,
    from_uri     TEXT NOT NULL,
    to_uri       TEXT NOT NULL,
    room_number  TEXT,
    started_at   BIGINT NOT NULL,
    answered_at  BIGINT,
    ended_at     BIGINT NOT NULL,
    cause        TEXT NOT NULL,
    codec        TEXT
);
CREATE INDEX call_records_room ON call_records (room_number, started_at);
CREATE INDEX call_records_started ON call_records (started_at);
