//! Registrar bindings (RFC 3261 §10.3): contacts per user, each with its own expiry and q-value.

use serde::Serialize;
use sqlx::Row;

use super::{Storage, StorageError};

/// One contact bound to a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Binding {
    pub username: String,
    pub contact: String,
    /// q-value in thousandths (RFC 3261 §20.10: 0 to 1 with three decimals).
    pub q_milli: u16,
    pub expires_at_ms: i64,
    /// Call-ID and CSeq of the REGISTER that made it, to order refreshes (§10.3 step 7).
    pub call_id: String,
    pub cseq: u32,
    /// Transport and address the REGISTER came from: where requests to this contact go.
    pub source: String,
    pub user_agent: Option<String>,
    /// The device's `+sip.instance` (RFC 5626), when it sent one.
    pub instance: Option<String>,
}

impl Storage {
    /// Adds or refreshes a binding.
    pub async fn upsert_binding(&self, b: &Binding, now_ms: i64) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO registrations
               (username, contact, q_milli, expires_at, call_id, cseq, source, user_agent, updated_at,
                instance)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (username, contact) DO UPDATE SET
               q_milli = $3, expires_at = $4, call_id = $5, cseq = $6, source = $7,
               user_agent = $8, updated_at = $9, instance = $10",
        )
        .bind(&b.username)
        .bind(&b.contact)
        .bind(i64::from(b.q_milli))
        .bind(b.expires_at_ms)
        .bind(&b.call_id)
        .bind(i64::from(b.cseq))
        .bind(&b.source)
        .bind(&b.user_agent)
        .bind(now_ms)
        .bind(&b.instance)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A user's bindings that have not expired at `now_ms`, highest q first.
    pub async fn bindings(&self, username: &str, now_ms: i64) -> Result<Vec<Binding>, StorageError> {
        self.select_bindings(Some(username), now_ms).await
    }

    /// Every unexpired binding, by user then q.
    pub async fn all_bindings(&self, now_ms: i64) -> Result<Vec<Binding>, StorageError> {
        self.select_bindings(None, now_ms).await
    }

    async fn select_bindings(
        &self,
        username: Option<&str>,
        now_ms: i64,
    ) -> Result<Vec<Binding>, StorageError> {
        sqlx::query(
            "SELECT username, contact, q_milli, expires_at, call_id, cseq, source, user_agent, instance
             FROM registrations WHERE ($1 IS NULL OR username = $1) AND expires_at > $2
             ORDER BY username, q_milli DESC, contact",
        )
        .bind(username)
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(binding_from_row)
        .collect()
    }

    pub async fn remove_binding(&self, username: &str, contact: &str) -> Result<bool, StorageError> {
        let done = sqlx::query("DELETE FROM registrations WHERE username = $1 AND contact = $2")
            .bind(username)
            .bind(contact)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// `Contact: *` with `Expires: 0` (RFC 3261 §10.3 step 6).
    pub async fn remove_all_bindings(&self, username: &str) -> Result<u64, StorageError> {
        let done = sqlx::query("DELETE FROM registrations WHERE username = $1")
            .bind(username)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Deletes bindings expired at `now_ms`; returns how many.
    pub async fn purge_expired_bindings(&self, now_ms: i64) -> Result<u64, StorageError> {
        let done = sqlx::query("DELETE FROM registrations WHERE expires_at <= $1")
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

fn binding_from_row(row: &sqlx::any::AnyRow) -> Result<Binding, StorageError> {
    let q: i64 = row.try_get("q_milli")?;
    let cseq: i64 = row.try_get("cseq")?;
    Ok(Binding {
        username: row.try_get("username")?,
        contact: row.try_get("contact")?,
        q_milli: u16::try_from(q).unwrap_or(1000),
        expires_at_ms: row.try_get("expires_at")?,
        call_id: row.try_get("call_id")?,
        cseq: u32::try_from(cseq).unwrap_or(0),
        source: row.try_get("source")?,
        user_agent: row.try_get("user_agent")?,
        instance: row.try_get("instance")?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::databases;
    use super::*;

    fn binding(contact: &str, q_milli: u16, expires_at_ms: i64) -> Binding {
        Binding {
            username: "alice".into(),
            contact: contact.into(),
            q_milli,
            expires_at_ms,
            call_id: "reg-1".into(),
            cseq: 1,
            source: "udp:127.0.0.1:5070".into(),
            user_agent: Some("phone".into()),
            instance: Some("<urn:uuid:0000-1>".into()),
        }
    }

    #[tokio::test]
    async fn bindings_expire_and_order_by_q() {
        for (db, guard) in databases().await {
            db.add_user("alice", "password", "gateway", false, 0).await.unwrap();
            db.upsert_binding(&binding("sip:a@1", 500, 10_000), 0).await.unwrap();
            db.upsert_binding(&binding("sip:a@2", 1000, 20_000), 0).await.unwrap();
            let got = db.bindings("alice", 5_000).await.unwrap();
            assert_eq!(got.iter().map(|b| b.contact.as_str()).collect::<Vec<_>>(), ["sip:a@2", "sip:a@1"]);
            assert_eq!(got[1], binding("sip:a@1", 500, 10_000));
            assert_eq!(db.all_bindings(5_000).await.unwrap(), got);

            // Refresh extends one binding; the other lapses.
            let mut refreshed = binding("sip:a@1", 500, 30_000);
            refreshed.cseq = 2;
            db.upsert_binding(&refreshed, 9_000).await.unwrap();
            assert_eq!(db.bindings("alice", 25_000).await.unwrap(), [refreshed]);
            assert_eq!(db.purge_expired_bindings(25_000).await.unwrap(), 1);

            assert!(db.remove_binding("alice", "sip:a@1").await.unwrap());
            db.upsert_binding(&binding("sip:a@3", 1000, 50_000), 0).await.unwrap();
            assert_eq!(db.remove_all_bindings("alice").await.unwrap(), 1);
            assert!(db.bindings("alice", 0).await.unwrap().is_empty());
            guard.cleanup(db).await;
        }
    }
}
