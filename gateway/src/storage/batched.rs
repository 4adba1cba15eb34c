//! Look-ups answered in batches: requests that arrive while one query runs share the next, so
//! a burst costs one round trip to the database per batch instead of one per request, and a
//! lone request goes at once (nothing waits for a batch to fill).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{Dialled, SipUser, Storage, StorageError};

/// Most look-ups one query answers.
const BATCH: usize = 500;

/// What a caller gets: the value, none by that name, or why the database could not say.
pub type Answer<V> = Result<Option<V>, Arc<StorageError>>;

/// What one kind of look-up asks the database for a batch of names.
pub trait Query: Send + 'static {
    type Value: Clone + Send + 'static;
    /// The value of each of `names` the database knows (`names` are distinct).
    fn run(
        storage: &Storage,
        names: &[&str],
    ) -> impl Future<Output = Result<HashMap<String, Self::Value>, StorageError>> + Send;
}

/// Accounts by name, for digest authentication.
pub struct Users;

impl Query for Users {
    type Value = SipUser;
    async fn run(storage: &Storage, names: &[&str]) -> Result<HashMap<String, SipUser>, StorageError> {
        Ok(storage.users_named(names).await?.into_iter().map(|u| (u.username.clone(), u)).collect())
    }
}

/// Rooms by the number a caller dialled: as a room number and as a DID.
pub struct Rooms;

impl Query for Rooms {
    type Value = Dialled;
    async fn run(storage: &Storage, names: &[&str]) -> Result<HashMap<String, Dialled>, StorageError> {
        storage.rooms_dialled(names).await
    }
}

pub type UserAnswer = Answer<SipUser>;

/// A handle on one kind of look-up; the task that runs its queries ends with the last handle.
pub struct Lookups<Q: Query> {
    asks: mpsc::Sender<(String, oneshot::Sender<Answer<Q::Value>>)>,
}

impl<Q: Query> Clone for Lookups<Q> {
    fn clone(&self) -> Self {
        Lookups { asks: self.asks.clone() }
    }
}

impl<Q: Query> Lookups<Q> {
    pub fn start(storage: Storage) -> Lookups<Q> {
        let (asks, rx) = mpsc::channel(4 * BATCH);
        tokio::spawn(answer::<Q>(storage, rx));
        Lookups { asks }
    }

    pub async fn get(&self, name: &str) -> Answer<Q::Value> {
        let (tx, rx) = oneshot::channel();
        let gone = || Arc::new(StorageError::Stopped);
        self.asks.send((name.to_string(), tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

async fn answer<Q: Query>(
    storage: Storage,
    mut rx: mpsc::Receiver<(String, oneshot::Sender<Answer<Q::Value>>)>,
) {
    let mut asks = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut asks, BATCH).await > 0 {
        let mut names: Vec<&str> = asks.iter().map(|(name, _)| name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        match Q::run(&storage, &names).await {
            Ok(mut found) => {
                for (name, tx) in asks.drain(..) {
                    // Several asks for one name each get a copy.
                    let _ = tx.send(Ok(found.get(&name).cloned()));
                }
                found.clear();
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
    use super::super::Room;
    use super::*;

    #[tokio::test]
    async fn concurrent_look_ups_each_get_their_own_answer() {
        for (db, guard) in databases().await {
            db.add_user("alice", "password", "gateway", false, 0).await.unwrap();
            db.add_user("bob", "password", "gateway", false, 0).await.unwrap();
            let lookups = Lookups::<Users>::start(db.clone());
            let (a, b, c, d) = tokio::join!(
                lookups.get("alice"),
                lookups.get("nobody"),
                lookups.get("bob"),
                lookups.get("alice")
            );
            let got: Vec<Option<String>> =
                [a, b, c, d].into_iter().map(|a| a.unwrap().map(|u| u.username)).collect();
            assert_eq!(got, [Some("alice".into()), None, Some("bob".into()), Some("alice".into())]);
            drop(lookups);
            guard.cleanup(db).await;
        }
    }

    #[tokio::test]
    async fn a_dialled_number_finds_its_room_by_number_and_by_did() {
        for (db, guard) in databases().await {
            let room = |number: &str, dids: &[&str]| Room {
                number: number.into(),
                name: format!("Room {number}"),
                pin: None,
                moderator_pin: None,
                max_participants: None,
                dids: dids.iter().map(|d| d.to_string()).collect(),
                layout: None,
            };
            db.add_room(&room("1000", &["+15550001", "2000"]), 0).await.unwrap();
            db.add_room(&room("2000", &[]), 0).await.unwrap();
            let lookups = Lookups::<Rooms>::start(db.clone());
            let (a, b, c, d) = tokio::join!(
                lookups.get("1000"),
                lookups.get("+15550001"),
                lookups.get("2000"),
                lookups.get("3000")
            );
            let numbers = |d: Option<Dialled>| {
                d.map(|d| (d.as_number.map(|r| r.number.to_string()), d.as_did.map(|r| r.number.to_string())))
            };
            let a = a.unwrap().unwrap();
            assert_eq!(a.as_number.as_ref().unwrap().dids, ["+15550001", "2000"], "the room comes whole");
            assert_eq!(numbers(Some(a)), Some((Some("1000".into()), None)));
            assert_eq!(numbers(b.unwrap()), Some((None, Some("1000".into()))));
            // A number that is one room's number and another's DID finds both.
            assert_eq!(numbers(c.unwrap()), Some((Some("2000".into()), Some("1000".into()))));
            assert_eq!(numbers(d.unwrap()), None);
            drop(lookups);
            guard.cleanup(db).await;
        }
    }
}
