//! Registrar bindings (RFC 3261 §10.3): contacts per user, each with its own expiry and q-value.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::Row;

use super::{Backend, Storage, StorageError, ROWS_PER_STATEMENT};

/// What a batch of REGISTERs changed, by (user, contact): the binding now in force, or `None`
/// where it went.
pub type BindingWrites = HashMap<(String, String), Option<Binding>>;

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
    /// Reads the unexpired bindings of `users`, lets `decide` work out what changes, and writes
    /// that, in one transaction: a batch of REGISTERs costs a handful of statements, not
    /// several per REGISTER. `decide` gets every user's bindings, highest q first (a user
    /// without any has no entry).
    pub async fn update_bindings<R>(
        &self,
        users: &[&str],
        now_ms: i64,
        decide: impl FnOnce(HashMap<String, Vec<Binding>>) -> (BindingWrites, R),
    ) -> Result<R, StorageError> {
        // IMMEDIATE: take SQLite's write lock before reading, so no other writer can commit
        // between this read and the writes that depend on it.
        let mut tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        let mut current: HashMap<String, Vec<Binding>> = HashMap::with_capacity(users.len());
        for chunk in users.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT username, contact, q_milli, expires_at, call_id, cseq, source, user_agent, instance
                 FROM registrations WHERE username IN ({}) AND expires_at > {}
                 ORDER BY username, q_milli DESC, contact",
                self.params(1, chunk.len()),
                self.params(chunk.len() + 1, 1)
            );
            let mut query = sqlx::query(&sql);
            for user in chunk {
                query = query.bind(*user);
            }
            for row in query.bind(now_ms).fetch_all(&mut *tx).await? {
                let binding = binding_from_row(&row)?;
                current.entry(binding.username.clone()).or_default().push(binding);
            }
        }
        let (writes, result) = decide(current);
        let (removed, upserted): (Vec<_>, Vec<_>) = writes.into_iter().partition(|(_, b)| b.is_none());
        let removed: Vec<(String, String)> = removed.into_iter().map(|(key, _)| key).collect();
        for chunk in removed.chunks(ROWS_PER_STATEMENT) {
            let condition = (0..chunk.len())
                .map(|i| format!("(username, contact) = ({})", self.params(2 * i + 1, 2)))
                .collect::<Vec<_>>()
                .join(" OR ");
            let sql = format!("DELETE FROM registrations WHERE {condition}");
            let mut query = sqlx::query(&sql);
            for (user, contact) in chunk {
                query = query.bind(user.as_str()).bind(contact.as_str());
            }
            query.execute(&mut *tx).await?;
        }
        let upserted: Vec<Binding> = upserted.into_iter().filter_map(|(_, b)| b).collect();
        for chunk in upserted.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO registrations
                   (username, contact, q_milli, expires_at, call_id, cseq, source, user_agent, updated_at,
                    instance)
                 VALUES {}
                 ON CONFLICT (username, contact) DO UPDATE SET
                   q_milli = excluded.q_milli, expires_at = excluded.expires_at,
                   call_id = excluded.call_id, cseq = excluded.cseq, source = excluded.source,
                   user_agent = excluded.user_agent, updated_at = excluded.updated_at,
                   instance = excluded.instance",
                self.rows(1, 10, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for b in chunk {
                query = query
                    .bind(&b.username)
                    .bind(&b.contact)
                    .bind(i64::from(b.q_milli))
                    .bind(b.expires_at_ms)
                    .bind(&b.call_id)
                    .bind(i64::from(b.cseq))
                    .bind(&b.source)
                    .bind(&b.user_agent)
                    .bind(now_ms)
                    .bind(&b.instance);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(result)
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

    /// Writes `writes` in one batch that reads `users` first; returns what it read.
    async fn batch(
        db: &Storage,
        users: &[&str],
        now_ms: i64,
        writes: BindingWrites,
    ) -> HashMap<String, Vec<Binding>> {
        db.update_bindings(users, now_ms, |current| (writes, current)).await.unwrap()
    }

    fn upsert(b: &Binding) -> BindingWrites {
        BindingWrites::from([((b.username.clone(), b.contact.clone()), Some(b.clone()))])
    }

    #[tokio::test]
    async fn bindings_expire_order_by_q_and_change_in_batches() {
        for (db, guard) in databases().await {
            db.add_user("alice", "password", "gateway", false, 0).await.unwrap();
            db.add_user("bob", "password", "gateway", false, 0).await.unwrap();
            let mut writes = upsert(&binding("sip:a@1", 500, 10_000));
            writes.extend(upsert(&binding("sip:a@2", 1000, 20_000)));
            let bob = Binding { username: "bob".into(), ..binding("sip:b@1", 1000, 20_000) };
            writes.extend(upsert(&bob));
            assert!(batch(&db, &["alice", "bob"], 0, writes).await.is_empty());
            let got = db.bindings("alice", 5_000).await.unwrap();
            assert_eq!(got.iter().map(|b| b.contact.as_str()).collect::<Vec<_>>(), ["sip:a@2", "sip:a@1"]);
            assert_eq!(got[1], binding("sip:a@1", 500, 10_000));
            // A batch reads every user it names, highest q first, and only what has not expired.
            let read = batch(&db, &["alice", "bob", "carol"], 5_000, BindingWrites::new()).await;
            assert_eq!(read["alice"], got);
            assert_eq!(read["bob"], [bob]);
            assert!(!read.contains_key("carol"));
            assert_eq!(db.all_bindings(5_000).await.unwrap().len(), 3);

            // Refresh extends one binding; the other lapses.
            let mut refreshed = binding("sip:a@1", 500, 30_000);
            refreshed.cseq = 2;
            batch(&db, &["alice"], 9_000, upsert(&refreshed)).await;
            assert_eq!(db.bindings("alice", 25_000).await.unwrap(), [refreshed]);
            assert_eq!(db.purge_expired_bindings(25_000).await.unwrap(), 2);

            // Removals and additions in one batch.
            let mut writes = BindingWrites::from([(("alice".into(), "sip:a@1".into()), None)]);
            writes.extend(upsert(&binding("sip:a@3", 1000, 50_000)));
            batch(&db, &["alice"], 0, writes).await;
            let left = db.bindings("alice", 0).await.unwrap();
            assert_eq!(left.iter().map(|b| b.contact.as_str()).collect::<Vec<_>>(), ["sip:a@3"]);
            guard.cleanup(db).await;
        }
    }

    #[tokio::test]
    async fn a_batch_larger_than_one_statement_is_written_whole() {
        for (db, guard) in databases().await {
            let names: Vec<String> = (0..250).map(|i| format!("u{i}")).collect();
            for name in &names {
                db.add_user(name, "password", "gateway", false, 0).await.unwrap();
            }
            let users: Vec<&str> = names.iter().map(String::as_str).collect();
            let writes: BindingWrites = names
                .iter()
                .map(|name| {
                    let b = Binding { username: name.clone(), ..binding("sip:x@1", 1000, 60_000) };
                    ((name.clone(), b.contact.clone()), Some(b))
                })
                .collect();
            batch(&db, &users, 0, writes).await;
            let read = batch(&db, &users, 0, BindingWrites::new()).await;
            assert_eq!(read.len(), 250, "every user read back");
            assert_eq!(db.all_bindings(0).await.unwrap().len(), 250);
            guard.cleanup(db).await;
        }
    }
}
