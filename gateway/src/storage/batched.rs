//! Look-ups answered in batches: requests that arrive while one query runs share the next, so
//! a burst costs one round trip to the database per batch instead of one per request, and a
//! lone request goes at once (nothing waits for a batch to fill).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{SipUser, Storage, StorageError};

/// Most look-ups one query answers.
const BATCH: usize = 500;

/// What a caller gets: the account, none by that name, or why the database could not say.
pub type UserAnswer = Result<Option<SipUser>, Arc<StorageError>>;

/// Accounts by name, for digest authentication.
#[derive(Clone)]
pub struct UserLookups {
    asks: mpsc::Sender<(String, oneshot::Sender<UserAnswer>)>,
}

impl UserLookups {
    /// Starts the task that runs the queries; it ends when the last handle is dropped.
    pub fn start(storage: Storage) -> UserLookups {
        let (asks, rx) = mpsc::channel(4 * BATCH);
        tokio::spawn(answer_users(storage, rx));
        UserLookups { asks }
    }

    pub async fn user(&self, name: &str) -> UserAnswer {
        let (tx, rx) = oneshot::channel();
        let gone = || Arc::new(StorageError::Invalid { field: "users", message: "look-ups stopped".into() });
        self.asks.send((name.to_string(), tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

async fn answer_users(storage: Storage, mut rx: mpsc::Receiver<(String, oneshot::Sender<UserAnswer>)>) {
    let mut asks = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut asks, BATCH).await > 0 {
        let mut names: Vec<&str> = asks.iter().map(|(name, _)| name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        match storage.users_named(&names).await {
            Ok(users) => {
                let mut by_name: HashMap<String, SipUser> =
                    users.into_iter().map(|u| (u.username.clone(), u)).collect();
                for (name, tx) in asks.drain(..) {
                    // Several asks for one name each get a copy.
                    let _ = tx.send(Ok(by_name.get(&name).cloned()));
                }
                by_name.clear();
            }
            Err(e) => {
                let e = Arc::new(e);
                for (_, tx) in asks.drain(..) {
                    let _ = tx.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::databases;
    use super::*;

    #[tokio::test]
    async fn concurrent_look_ups_each_get_their_own_answer() {
        for (db, guard) in databases().await {
            db.add_user("alice", "password", "gateway", false, 0).await.unwrap();
            db.add_user("bob", "password", "gateway", false, 0).await.unwrap();
            let lookups = UserLookups::start(db.clone());
            let (a, b, c, d) = tokio::join!(
                lookups.user("alice"),
                lookups.user("nobody"),
                lookups.user("bob"),
                lookups.user("alice")
            );
            let got: Vec<Option<String>> =
                [a, b, c, d].into_iter().map(|a| a.unwrap().map(|u| u.username)).collect();
            assert_eq!(got, [Some("alice".into()), None, Some("bob".into()), Some("alice".into())]);
            drop(lookups);
            guard.cleanup(db).await;
        }
    }
}
