-- Hardening: call records that survive a crash, and the device of each registration.
-- Call records are written when a call is answered (or refused) and completed when it ends:
-- `ended_at` is NULL while the call goes on. `node` names the gateway that keeps the row open;
-- each gateway records a heartbeat in `gateway_nodes`, and at start closes the rows it left
-- open as `lost` at the time it was last seen.
CREATE TABLE call_records_new (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    leg_id       TEXT NOT NULL UNIQUE,
    call_id      TEXT NOT NULL,
    direction    TEXT NOT NULL,
    from_uri     TEXT NOT NULL,
    to_uri       TEXT NOT NULL,
    room_number  TEXT,
    started_at   BIGINT NOT NULL,
    answered_at  BIGINT,
    ended_at     BIGINT,
    cause        TEXT NOT NULL,
    codec        TEXT,
    node         TEXT NOT NULL DEFAULT ''
);
INSERT INTO call_records_new (id, leg_id, call_id, direction, from_uri, to_uri, room_number,
    started_at, answered_at, ended_at, cause, codec)
SELECT id, leg_id, call_id, direction, from_uri, to_uri, room_number,
    started_at, answered_at, ended_at, cause, codec
FROM call_records;
DROP TABLE call_records;
ALTER TABLE call_records_new RENAME TO call_records;
CREATE INDEX call_records_room ON call_records (room_number, started_at);
CREATE INDEX call_records_started ON call_records (started_at);
CREATE INDEX call_records_open ON call_records (node) WHERE ended_at IS NULL;

CREATE TABLE gateway_nodes (
    name          TEXT PRIMARY KEY,
    started_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL
);

-- RFC 5626: the device a binding belongs to (`+sip.instance`), so a phone that comes back with
-- a new contact replaces its binding.
ALTER TABLE registrations ADD COLUMN instance TEXT;
