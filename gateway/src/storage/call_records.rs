//! Call records: one row per call leg, written when the leg ends.

use serde::Serialize;
use sqlx::Row;

use super::{duplicate, Storage, StorageError};

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
    pub ended_at_ms: i64,
    /// Why the leg ended: `normal` (the phone hung up), `rtp-timeout`, `wrong-pin`, `kicked`,
    /// `session-expired`, `no-ack`, `shutdown`.
    pub cause: String,
    pub codec: Option<String>,
}

impl Storage {
    pub async fn insert_call_record(&self, r: &CallRecord) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO call_records (leg_id, call_id, direction, from_uri, to_uri, room_number,
               started_at, answered_at, ended_at, cause, codec)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&r.leg_id)
        .bind(&r.call_id)
        .bind(r.direction.as_str())
        .bind(&r.from_uri)
        .bind(&r.to_uri)
        .bind(&r.room_number)
        .bind(r.started_at_ms)
        .bind(r.answered_at_ms)
        .bind(r.ended_at_ms)
        .bind(&r.cause)
        .bind(&r.codec)
        .execute(&self.pool)
        .await
        .map_err(duplicate("call record", &r.leg_id))?;
        Ok(())
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
            ended_at_ms: started + 60_000,
            cause: "normal".into(),
            codec: Some("PCMU".into()),
        }
    }

    #[tokio::test]
    async fn records_round_trip_newest_first() {
        for (db, guard) in databases().await {
            db.insert_call_record(&record("a", Some("1000"), 1_000)).await.unwrap();
            let mut out = record("b", Some("2000"), 2_000);
            out.direction = Direction::Outbound;
            out.answered_at_ms = None;
            out.cause = "no-answer".into();
            db.insert_call_record(&out).await.unwrap();
            db.insert_call_record(&record("c", None, 3_000)).await.unwrap();
            let all = db.call_records(None, 10).await.unwrap();
            assert_eq!(all.iter().map(|r| r.leg_id.as_str()).collect::<Vec<_>>(), ["c", "b", "a"]);
            assert_eq!(all[1], out);
            assert_eq!(db.call_records(Some("1000"), 10).await.unwrap(), [record("a", Some("1000"), 1_000)]);
            assert_eq!(db.call_records(None, 1).await.unwrap().len(), 1);
            assert!(matches!(
                db.insert_call_record(&record("a", None, 5)).await,
                Err(StorageError::Duplicate { .. })
            ));
            guard.cleanup(db).await;
        }
    }
}
