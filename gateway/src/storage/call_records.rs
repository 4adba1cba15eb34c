//! Call records: one row per call leg, written when the call is answered (or refused) and
//! completed when it ends. Rows carry the node that wrote them; each node records a heartbeat,
//! and at start closes the rows it left open (a crash, a kill, a power cut) as `lost` at the
//! time it was last seen.

use serde::Serialize;
use sqlx::Row;

use super::{Storage, StorageError, ROWS_PER_STATEMENT};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// One finished call leg.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallRecord {
    /// The gateway's id for the leg, unique across the deployment.
    pub leg_id: String,
    pub call_id: String,
    pub direction: Direction,
    pub from_uri: String,
    pub to_uri: String,
    pub room_number: Option<String>,
    pub started_at_ms: i64,
    pub answered_at_ms: Option<i64>,
    /// `None` while the call goes on.
    pub ended_at_ms: Option<i64>,
    /// Why the leg ended: `normal` (the phone hung up), `rtp-timeout`, `wrong-pin`, `kicked`,
    /// `session-expired`, `no-ack`, `shutdown`, `lost` (the process died), a refusal's status
    /// code (`404`, `486`, …); [`IN_PROGRESS`] while it goes on.
    pub cause: String,
    pub codec: Option<String>,
}

/// The cause of a record whose call goes on.
pub const IN_PROGRESS: &str = "in-progress";

/// The cause of a record closed at start-up because the process that kept it died.
pub const LOST: &str = "lost";

impl Storage {
    /// Writes a record: a new row, or the end of the one written at the answer. Either order
    /// of the two writes leaves the ended row (an open record never overwrites a closed one).
    pub async fn write_call_record(&self, r: &CallRecord) -> Result<(), StorageError> {
        self.write_call_records(std::slice::from_ref(r)).await
    }

    /// Writes records in one transaction, as [`Storage::write_call_record`] writes each: the
    /// open ones first, then the ends, each kind in statements of many rows.
    pub async fn write_call_records(&self, records: &[CallRecord]) -> Result<(), StorageError> {
        // One row per leg and kind in a statement (PostgreSQL refuses to update a row twice
        // in one); a leg's later record of a kind wins.
        let mut open: Vec<&CallRecord> = Vec::new();
        let mut ended: Vec<&CallRecord> = Vec::new();
        for r in records {
            let kind = if r.ended_at_ms.is_some() { &mut ended } else { &mut open };
            kind.retain(|k| k.leg_id != r.leg_id);
            kind.push(r);
        }
        let mut tx = self.pool.begin().await?;
        for (kind, on_conflict) in [
            (open, "ON CONFLICT (leg_id) DO NOTHING"),
            (
                ended,
                "ON CONFLICT (leg_id) DO UPDATE SET ended_at = excluded.ended_at, cause = excluded.cause,
                   codec = excluded.codec,
                   answered_at = COALESCE(call_records.answered_at, excluded.answered_at)",
            ),
        ] {
            for chunk in kind.chunks(ROWS_PER_STATEMENT) {
                let sql = format!(
                    "INSERT INTO call_records (leg_id, call_id, direction, from_uri, to_uri, room_number,
                       started_at, answered_at, ended_at, cause, codec, node)
                     VALUES {} {on_conflict}",
                    self.rows(1, 12, chunk.len())
                );
                // Values from the network; PostgreSQL refuses a NUL in text, which would make
                // the write fail on every retry.
                let text = |s: &str| s.replace('\0', "\u{fffd}");
                let mut query = sqlx::query(&sql);
                for r in chunk {
                    query = query
                        .bind(text(&r.leg_id))
                        .bind(text(&r.call_id))
                        .bind(r.direction.as_str())
                        .bind(text(&r.from_uri))
                        .bind(text(&r.to_uri))
                        .bind(r.room_number.as_deref().map(text))
                        .bind(r.started_at_ms)
                        .bind(r.answered_at_ms)
                        .bind(r.ended_at_ms)
                        .bind(&r.cause)
                        .bind(&r.codec)
                        .bind(self.node.as_ref());
                }
                query.execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records that this node is alive at `now_ms` (its open records are not lost).
    pub async fn heartbeat(&self, now_ms: i64) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO gateway_nodes (name, started_at, last_seen_at) VALUES ($1, $2, $2)
             ON CONFLICT (name) DO UPDATE SET last_seen_at = excluded.last_seen_at",
        )
        .bind(self.node.as_ref())
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// At start, before any call: closes the records this node left open as [`LOST`], ended
    /// when it was last seen alive (never before the call started). Returns how many.
    pub async fn close_lost_call_records(&self) -> Result<u64, StorageError> {
        let seen = "(SELECT last_seen_at FROM gateway_nodes WHERE name = $1)";
        let sql = format!(
            "UPDATE call_records
             SET cause = $2,
                 ended_at = CASE WHEN {seen} > started_at THEN {seen} ELSE started_at END
             WHERE node = $1 AND ended_at IS NULL"
        );
        let done = sqlx::query(&sql).bind(self.node.as_ref()).bind(LOST).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    /// The newest records first, optionally for one room.
    pub async fn call_records(
        &self,
        room_number: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CallRecord>, StorageError> {
        let rows = sqlx::query(
            "SELECT leg_id, call_id, direction, from_uri, to_uri, room_number, started_at,
               answered_at, ended_at, cause, codec
             FROM call_records WHERE ($1 IS NULL OR room_number = $1)
             ORDER BY started_at DESC, id DESC LIMIT $2",
        )
        .bind(room_number)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let direction: String = row.try_get("direction")?;
                Ok(CallRecord {
                    leg_id: row.try_get("leg_id")?,
                    call_id: row.try_get("call_id")?,
                    direction: if direction == "outbound" { Direction::Outbound } else { Direction::Inbound },
                    from_uri: row.try_get("from_uri")?,
                    to_uri: row.try_get("to_uri")?,
                    room_number: row.try_get("room_number")?,
                    started_at_ms: row.try_get("started_at")?,
                    answered_at_ms: row.try_get("answered_at")?,
                    ended_at_ms: row.try_get("ended_at")?,
                    cause: row.try_get("cause")?,
                    codec: row.try_get("codec")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::databases;
    use super::*;

    fn record(leg: &str, room: Option<&str>, started: i64) -> CallRecord {
        CallRecord {
            leg_id: leg.into(),
            call_id: format!("call-{leg}"),
            direction: Direction::Inbound,
            from_uri: "sip:alice@127.0.0.1".into(),
            to_uri: "sip:1000@127.0.0.1".into(),
            room_number: room.map(Into::into),
            started_at_ms: started,
            answered_at_ms: Some(started + 500),
            ended_at_ms: Some(started + 60_000),
            cause: "normal".into(),
            codec: Some("PCMU".into()),
        }
    }

    #[tokio::test]
    async fn records_round_trip_newest_first() {
        for (db, guard) in databases().await {
            db.write_call_record(&record("a", Some("1000"), 1_000)).await.unwrap();
            let mut out = record("b", Some("2000"), 2_000);
            out.direction = Direction::Outbound;
            out.answered_at_ms = None;
            out.cause = "no-answer".into();
            db.write_call_record(&out).await.unwrap();
            db.write_call_record(&record("c", None, 3_000)).await.unwrap();
            let all = db.call_records(None, 10).await.unwrap();
            assert_eq!(all.iter().map(|r| r.leg_id.as_str()).collect::<Vec<_>>(), ["c", "b", "a"]);
            assert_eq!(all[1], out);
            assert_eq!(db.call_records(Some("1000"), 10).await.unwrap(), [record("a", Some("1000"), 1_000)]);
            assert_eq!(db.call_records(None, 1).await.unwrap().len(), 1);
            guard.cleanup(db).await;
        }
    }

    #[tokio::test]
    async fn values_with_nul_bytes_from_the_network_are_written() {
        for (db, guard) in databases().await {
            let mut r = record("nul", None, 1_000);
            r.call_id = "call\0id".into();
            r.from_uri = "sip:\0@h".into();
            db.write_call_record(&r).await.unwrap();
            assert_eq!(db.call_records(None, 1).await.unwrap()[0].call_id, "call\u{fffd}id");
            guard.cleanup(db).await;
        }
    }

    #[tokio::test]
    async fn a_batch_writes_many_records_and_a_legs_open_and_end_together_leave_the_end() {
        for (db, guard) in databases().await {
            let mut batch = Vec::new();
            for n in 0..250 {
                let ended = record(&format!("leg{n}"), Some("1000"), 1_000 + n);
                batch.push(CallRecord { ended_at_ms: None, cause: IN_PROGRESS.into(), ..ended.clone() });
                batch.push(ended);
            }
            // The end of leg 0 first, its open record after, in the same batch.
            batch.swap(0, 1);
            db.write_call_records(&batch).await.unwrap();
            let got = db.call_records(None, 1000).await.unwrap();
            assert_eq!(got.len(), 250);
            assert!(got.iter().all(|r| r.ended_at_ms.is_some()), "every leg ended");
            guard.cleanup(db).await;
        }
    }

    #[tokio::test]
    async fn an_open_record_is_completed_in_either_order_and_never_reopened() {
        for (db, guard) in databases().await {
            let ended = record("a", Some("1000"), 1_000);
            let open = CallRecord { ended_at_ms: None, cause: IN_PROGRESS.into(), ..ended.clone() };
            db.write_call_record(&open).await.unwrap();
            assert_eq!(db.call_records(None, 10).await.unwrap(), std::slice::from_ref(&open));
            db.write_call_record(&ended).await.unwrap();
            db.write_call_record(&open).await.unwrap();
            assert_eq!(db.call_records(None, 10).await.unwrap(), [ended], "the end stays");
            // The end written first (the answer's write was slow): the open one changes nothing.
            let later = record("b", None, 2_000);
            db.write_call_record(&later).await.unwrap();
            db.write_call_record(&CallRecord { ended_at_ms: None, ..later.clone() }).await.unwrap();
            assert_eq!(db.call_records(None, 1).await.unwrap(), [later]);
            guard.cleanup(db).await;
        }
    }

    #[tokio::test]
    async fn records_a_dead_process_left_open_are_closed_as_lost_when_last_seen() {
        for (db, guard) in databases().await {
            db.heartbeat(5_000).await.unwrap();
            let open =
                CallRecord { ended_at_ms: None, cause: IN_PROGRESS.into(), ..record("a", None, 1_000) };
            db.write_call_record(&open).await.unwrap();
            let late =
                CallRecord { ended_at_ms: None, cause: IN_PROGRESS.into(), ..record("b", None, 9_000) };
            db.write_call_record(&late).await.unwrap();
            db.write_call_record(&record("c", None, 500)).await.unwrap();
            // Another node's live call is not ours to close.
            let mut other = db.clone();
            other.set_node("other-node");
            let theirs =
                CallRecord { ended_at_ms: None, cause: IN_PROGRESS.into(), ..record("d", None, 1_500) };
            other.write_call_record(&theirs).await.unwrap();

            assert_eq!(db.close_lost_call_records().await.unwrap(), 2);
            let all = db.call_records(None, 10).await.unwrap();
            let by_leg = |leg: &str| all.iter().find(|r| r.leg_id == leg).unwrap().clone();
            assert_eq!((by_leg("a").cause.as_str(), by_leg("a").ended_at_ms), (LOST, Some(5_000)));
            assert_eq!(by_leg("b").ended_at_ms, Some(9_000), "never before the call started");
            assert_eq!(by_leg("c").cause, "normal");
            assert_eq!(by_leg("d"), theirs);
            assert_eq!(db.close_lost_call_records().await.unwrap(), 0);
            guard.cleanup(db).await;
        }
    }
}
