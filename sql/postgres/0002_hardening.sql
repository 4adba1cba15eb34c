-- Hardening: call records that survive a crash, and the device of each registration.
-- Call records are written when a call is answered (or refused) and completed when it ends:
-- `ended_at` is NULL while the call goes on. `node` names the gateway that keeps the row open;
-- each gateway records a heartbeat in `gateway_nodes`, and at start closes the rows it left
-- open as `lost` at the time it was last seen.
ALTER TABLE call_records ALTER COLUMN ended_at DROP NOT NULL;
ALTER TABLE call_records ADD COLUMN node TEXT NOT NULL DEFAULT '';
CREATE INDEX call_records_open ON call_records (node) WHERE ended_at IS NULL;

CREATE TABLE gateway_nodes (
    name          TEXT PRIMARY KEY,
    started_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL
);

-- RFC 5626: the device a binding belongs to (`+sip.instance`), so a phone that comes back with
-- a new contact replaces its binding.
ALTER TABLE registrations ADD COLUMN instance TEXT;
