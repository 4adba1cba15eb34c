//! SIP accounts for desk phones, stored as digest HA1 values.

use serde::Serialize;
use sip_stack::digest::{ha1, Algorithm};
use sqlx::Row;

use super::{duplicate, Storage, StorageError, ROWS_PER_STATEMENT};

/// A phone account. The password itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SipUser {
    pub username: String,
    pub realm: String,
    #[serde(skip)]
    pub ha1_md5: String,
    #[serde(skip)]
    pub ha1_sha256: String,
}

impl SipUser {
    /// The stored HA1 for `algorithm`.
    pub fn ha1(&self, algorithm: Algorithm) -> &str {
        match algorithm {
            Algorithm::Md5 => &self.ha1_md5,
            Algorithm::Sha256 => &self.ha1_sha256,
        }
    }
}

/// An RFC 3261 user part, minus escapes, of 1-64 characters: what phones put in their digest
/// username, and what a trunk puts in its address of record.
pub fn is_user_part(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= 64
        && user.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b))
}

fn validate(username: &str, password: &str) -> Result<(), StorageError> {
    if !is_user_part(username) {
        return Err(StorageError::Invalid {
            field: "username",
            message: format!("`{username}` must be 1-64 unreserved characters"),
        });
    }
    if password.len() < 4 || password.contains(['\r', '\n']) {
        return Err(StorageError::Invalid {
            field: "password",
            message: "must be at least 4 characters on one line".into(),
        });
    }
    Ok(())
}

impl Storage {
    /// Adds an account, or with `replace` sets a new password for an existing one.
    pub async fn add_user(
        &self,
        username: &str,
        password: &str,
        realm: &str,
        replace: bool,
        now_ms: i64,
    ) -> Result<SipUser, StorageError> {
        let mut added = self.add_users(&[(username, password)], realm, replace, now_ms).await?;
        Ok(added.remove(0))
    }

    /// Adds accounts (name, password) in one transaction: all of them, or none when one is
    /// invalid or (without `replace`) exists already.
    pub async fn add_users(
        &self,
        accounts: &[(&str, &str)],
        realm: &str,
        replace: bool,
        now_ms: i64,
    ) -> Result<Vec<SipUser>, StorageError> {
        let sql = if replace {
            "INSERT INTO sip_users (username, realm, ha1_md5, ha1_sha256, created_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (username) DO UPDATE SET realm = $2, ha1_md5 = $3, ha1_sha256 = $4"
        } else {
            "INSERT INTO sip_users (username, realm, ha1_md5, ha1_sha256, created_at)
             VALUES ($1, $2, $3, $4, $5)"
        };
        let mut users = Vec::with_capacity(accounts.len());
        let mut tx = self.pool.begin().await?;
        for &(username, password) in accounts {
            validate(username, password)?;
            let user = SipUser {
                username: username.into(),
                realm: realm.into(),
                ha1_md5: ha1(Algorithm::Md5, username, realm, password),
                ha1_sha256: ha1(Algorithm::Sha256, username, realm, password),
            };
            sqlx::query(sql)
                .bind(&user.username)
                .bind(&user.realm)
                .bind(&user.ha1_md5)
                .bind(&user.ha1_sha256)
                .bind(now_ms)
                .execute(&mut *tx)
                .await
                .map_err(duplicate("user", username))?;
            users.push(user);
        }
        tx.commit().await?;
        Ok(users)
    }

    /// The accounts among `names`, in one query per [`ROWS_PER_STATEMENT`] names: what a
    /// batch of requests asks for at once.
    pub async fn users_named(&self, names: &[&str]) -> Result<Vec<SipUser>, StorageError> {
        let mut users = Vec::with_capacity(names.len());
        for chunk in names.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT username, realm, ha1_md5, ha1_sha256 FROM sip_users WHERE username IN ({})",
                self.params(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for name in chunk {
                query = query.bind(*name);
            }
            for row in query.fetch_all(&self.pool).await? {
                users.push(user_from_row(&row)?);
            }
        }
        Ok(users)
    }

    pub async fn users(&self) -> Result<Vec<SipUser>, StorageError> {
        sqlx::query("SELECT username, realm, ha1_md5, ha1_sha256 FROM sip_users ORDER BY username")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(user_from_row)
            .collect()
    }

    /// Removes an account and its registrations; `false` when there was none.
    pub async fn remove_user(&self, username: &str) -> Result<bool, StorageError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM registrations WHERE username = $1").bind(username).execute(&mut *tx).await?;
        let done =
            sqlx::query("DELETE FROM sip_users WHERE username = $1").bind(username).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}

fn user_from_row(row: &sqlx::any::AnyRow) -> Result<SipUser, StorageError> {
    Ok(SipUser {
        username: row.try_get("username")?,
        realm: row.try_get("realm")?,
        ha1_md5: row.try_get("ha1_md5")?,
        ha1_sha256: row.try_get("ha1_sha256")?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::databases;
    use super::*;

    #[tokio::test]
    async fn users_store_ha1_not_passwords() {
        for (db, guard) in databases().await {
            let user = db.add_user("alice", "s3cret!", "gateway", false, 1).await.unwrap();
            assert_eq!(user.ha1(Algorithm::Md5), ha1(Algorithm::Md5, "alice", "gateway", "s3cret!"));
            let stored = db.users_named(&["alice"]).await.unwrap().pop().unwrap();
            assert_eq!(stored, user);
            assert!(!format!("{stored:?}").contains("s3cret!"));
            assert!(matches!(
                db.add_user("alice", "other1", "gateway", false, 2).await,
                Err(StorageError::Duplicate { what: "user", .. })
            ));
            let changed = db.add_user("alice", "other1", "gateway", true, 2).await.unwrap();
            assert_eq!(db.users_named(&["alice"]).await.unwrap().pop().unwrap(), changed);
            assert_ne!(changed.ha1_md5, user.ha1_md5);
            assert!(matches!(
                db.add_user("bad user", "password", "gateway", false, 1).await,
                Err(StorageError::Invalid { field: "username", .. })
            ));
            assert_eq!(db.users().await.unwrap().len(), 1);
            assert!(db.remove_user("alice").await.unwrap());
            assert!(db.users_named(&["alice"]).await.unwrap().pop().is_none());
            guard.cleanup(db).await;
        }
    }
}
