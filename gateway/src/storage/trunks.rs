//! The last reported registration state of each trunk, for the API and for other nodes.

use serde::Serialize;
use sqlx::Row;

use super::{Storage, StorageError};

/// A trunk's registration state as its state machine last reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrunkStatus {
    pub name: String,
    /// `registering`, `registered`, `retrying`, `rejected` or `unregistered`.
    pub state: String,
    /// The last error, or the registrar's reason.
    pub detail: Option<String>,
    pub registered_until_ms: Option<i64>,
    pub next_attempt_at_ms: Option<i64>,
    pub updated_at_ms: i64,
}

impl Storage {
    pub async fn set_trunk_status(&self, s: &TrunkStatus) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO trunk_status (name, state, detail, registered_until, next_attempt_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (name) DO UPDATE SET state = $2, detail = $3, registered_until = $4,
               next_attempt_at = $5, updated_at = $6",
        )
        .bind(&s.name)
        .bind(&s.state)
        .bind(&s.detail)
        .bind(s.registered_until_ms)
        .bind(s.next_attempt_at_ms)
        .bind(s.updated_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn trunk_statuses(&self) -> Result<Vec<TrunkStatus>, StorageError> {
        sqlx::query(
            "SELECT name, state, detail, registered_until, next_attempt_at, updated_at
             FROM trunk_status ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(TrunkStatus {
                name: row.try_get("name")?,
                state: row.try_get("state")?,
                detail: row.try_get("detail")?,
                registered_until_ms: row.try_get("registered_until")?,
                next_attempt_at_ms: row.try_get("next_attempt_at")?,
                updated_at_ms: row.try_get("updated_at")?,
            })
        })
        .collect()
    }

    /// Forgets trunks no longer in the configuration.
    pub async fn retain_trunks(&self, names: &[String]) -> Result<(), StorageError> {
        for status in self.trunk_statuses().await? {
            if !names.contains(&status.name) {
                sqlx::query("DELETE FROM trunk_status WHERE name = $1")
                    .bind(&status.name)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::databases;
    use super::*;

    #[tokio::test]
    async fn status_is_replaced_and_pruned() {
        for (db, guard) in databases().await {
            let mut s = TrunkStatus {
                name: "carrier".into(),
                state: "registering".into(),
                detail: None,
                registered_until_ms: None,
                next_attempt_at_ms: None,
                updated_at_ms: 1,
            };
            db.set_trunk_status(&s).await.unwrap();
            s.state = "retrying".into();
            s.detail = Some("timeout".into());
            s.next_attempt_at_ms = Some(60_000);
            db.set_trunk_status(&s).await.unwrap();
            let mut other = s.clone();
            other.name = "mcu".into();
            db.set_trunk_status(&other).await.unwrap();
            assert_eq!(db.trunk_statuses().await.unwrap(), [s.clone(), other]);
            db.retain_trunks(&["carrier".into()]).await.unwrap();
            assert_eq!(db.trunk_statuses().await.unwrap(), [s]);
            guard.cleanup(db).await;
        }
    }
}
