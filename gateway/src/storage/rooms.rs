//! Conference rooms: the number phones dial, optional PINs, limits, and the DIDs that lead there.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{duplicate, Storage, StorageError, ROWS_PER_STATEMENT};
use crate::config::VideoLayout;
use crate::ids::RoomNumber;

/// A conference room as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    /// What callers dial: digits, or a name for SIP URI dialling.
    pub number: RoomNumber,
    pub name: String,
    pub pin: Option<String>,
    pub moderator_pin: Option<String>,
    pub max_participants: Option<u32>,
    /// Numbers arriving through trunks that lead to this room.
    pub dids: Vec<String>,
    /// The layout each conference here starts in; `None`: the gateway's `[video] layout`.
    #[serde(default)]
    pub layout: Option<VideoLayout>,
}

/// Changes to a room; `None` leaves a field alone, `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RoomUpdate {
    pub name: Option<String>,
    pub pin: Option<Option<String>>,
    pub moderator_pin: Option<Option<String>>,
    pub max_participants: Option<Option<u32>>,
    pub dids: Option<Vec<String>>,
    pub layout: Option<Option<VideoLayout>>,
}

impl Room {
    /// Checks every field a caller or operator can get wrong.
    pub fn validate(&self) -> Result<(), StorageError> {
        validate_number("number", &self.number)?;
        if self.name.chars().count() > 200 {
            return invalid("name", "longer than 200 characters".into());
        }
        for (field, pin) in [("pin", &self.pin), ("moderator_pin", &self.moderator_pin)] {
            if let Some(pin) = pin {
                if pin.is_empty() || pin.len() > 16 || !pin.bytes().all(|b| b.is_ascii_digit()) {
                    return invalid(field, format!("`{pin}` is not 1-16 digits"));
                }
            }
        }
        if self.pin.is_some() && self.pin == self.moderator_pin {
            return invalid("moderator_pin", "must differ from the PIN".into());
        }
        if self.max_participants == Some(0) {
            return invalid("max_participants", "must be at least 1".into());
        }
        for did in &self.dids {
            validate_number("did", did)?;
        }
        if self.layout == Some(VideoLayout::Presenter) {
            return invalid(
                "layout",
                "`presenter` names a participant: set it on the live conference".into(),
            );
        }
        Ok(())
    }
}

/// Dialable numbers and names: 1-64 of `0-9 A-Z a-z + * # . _ -`.
fn validate_number(field: &'static str, number: &str) -> Result<(), StorageError> {
    let ok = !number.is_empty()
        && number.len() <= 64
        && number.bytes().all(|b| b.is_ascii_alphanumeric() || b"+*#._-".contains(&b));
    if ok {
        Ok(())
    } else {
        invalid(field, format!("`{number}` must be 1-64 of 0-9 A-Z a-z + * # . _ -"))
    }
}

fn invalid<T>(field: &'static str, message: String) -> Result<T, StorageError> {
    Err(StorageError::Invalid { field, message })
}

impl Storage {
    pub async fn add_room(&self, room: &Room, now_ms: i64) -> Result<(), StorageError> {
        room.validate()?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO rooms (number, name, pin, moderator_pin, max_participants, layout, created_at,
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(room.number.as_str())
        .bind(&room.name)
        .bind(&room.pin)
        .bind(&room.moderator_pin)
        .bind(room.max_participants.map(i64::from))
        .bind(room.layout.map(VideoLayout::as_str))
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(duplicate("room", &room.number))?;
        insert_dids(&mut tx, &room.number, &room.dids).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every room, ordered by number.
    pub async fn rooms(&self) -> Result<Vec<Room>, StorageError> {
        let rows = sqlx::query(
            "SELECT number, name, pin, moderator_pin, max_participants, layout FROM rooms ORDER BY number",
        )
        .fetch_all(&self.pool)
        .await?;
        let dids =
            sqlx::query("SELECT did, room_number FROM room_dids ORDER BY did").fetch_all(&self.pool).await?;
        let mut rooms = rows.iter().map(room_from_row).collect::<Result<Vec<_>, _>>()?;
        for row in dids {
            let (did, number): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            if let Some(room) = rooms.iter_mut().find(|r| r.number == number) {
                room.dids.push(did);
            }
        }
        Ok(rooms)
    }

    pub async fn room(&self, number: &str) -> Result<Option<Room>, StorageError> {
        let row = sqlx::query(
            "SELECT number, name, pin, moderator_pin, max_participants, layout FROM rooms WHERE number = $1",
        )
        .bind(number)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut room = room_from_row(&row)?;
        room.dids = sqlx::query("SELECT did FROM room_dids WHERE room_number = $1 ORDER BY did")
            .bind(number)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        Ok(Some(room))
    }

    /// Applies `update` and returns the room as it now is.
    pub async fn update_room(
        &self,
        number: &str,
        update: &RoomUpdate,
        now_ms: i64,
    ) -> Result<Room, StorageError> {
        let mut room = self
            .room(number)
            .await?
            .ok_or_else(|| StorageError::NotFound { what: "room", key: number.into() })?;
        if let Some(name) = &update.name {
            room.name = name.clone();
        }
        if let Some(pin) = &update.pin {
            room.pin = pin.clone();
        }
        if let Some(pin) = &update.moderator_pin {
            room.moderator_pin = pin.clone();
        }
        if let Some(max) = update.max_participants {
            room.max_participants = max;
        }
        if let Some(dids) = &update.dids {
            room.dids = dids.clone();
        }
        if let Some(layout) = update.layout {
            room.layout = layout;
        }
        room.validate()?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE rooms SET name = $2, pin = $3, moderator_pin = $4, max_participants = $5,
             layout = $6, updated_at = $7 WHERE number = $1",
        )
        .bind(room.number.as_str())
        .bind(&room.name)
        .bind(&room.pin)
        .bind(&room.moderator_pin)
        .bind(room.max_participants.map(i64::from))
        .bind(room.layout.map(VideoLayout::as_str))
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        if update.dids.is_some() {
            sqlx::query("DELETE FROM room_dids WHERE room_number = $1")
                .bind(room.number.as_str())
                .execute(&mut *tx)
                .await?;
            insert_dids(&mut tx, &room.number, &room.dids).await?;
        }
        tx.commit().await?;
        Ok(room)
    }

    /// Removes a room and its DIDs; `false` when there was no such room.
    pub async fn remove_room(&self, number: &str) -> Result<bool, StorageError> {
        let mut tx = self.pool.begin().await?;
        // Explicit, so it holds even on a connection without foreign key enforcement.
        sqlx::query("DELETE FROM room_dids WHERE room_number = $1").bind(number).execute(&mut *tx).await?;
        let done = sqlx::query("DELETE FROM rooms WHERE number = $1").bind(number).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}

/// What a dialled number leads to: the room of that number, and the room that has it as a DID
/// (one number can be both, in two rooms).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dialled {
    pub as_number: Option<Room>,
    pub as_did: Option<Room>,
}

impl Storage {
    /// What each of `names` leads to, for the names that lead anywhere: one statement per
    /// [`ROWS_PER_STATEMENT`] names, for a batch of calls at once.
    pub async fn rooms_dialled(&self, names: &[&str]) -> Result<HashMap<String, Dialled>, StorageError> {
        let mut rooms: HashMap<String, Room> = HashMap::new();
        for chunk in names.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT r.number, r.name, r.pin, r.moderator_pin, r.max_participants, r.layout, d.did
                 FROM rooms r LEFT JOIN room_dids d ON d.room_number = r.number
                 WHERE r.number IN ({}) OR r.number IN (SELECT room_number FROM room_dids WHERE did IN ({}))
                 ORDER BY r.number, d.did",
                self.params(1, chunk.len()),
                self.params(chunk.len() + 1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for name in chunk.iter().chain(chunk) {
                query = query.bind(*name);
            }
            for row in query.fetch_all(&self.pool).await? {
                let number: String = row.try_get("number")?;
                let did: Option<String> = row.try_get("did")?;
                let room = match rooms.entry(number) {
                    Entry::Occupied(room) => room.into_mut(),
                    Entry::Vacant(entry) => entry.insert(room_from_row(&row)?),
                };
                room.dids.extend(did);
            }
        }
        // A room found by one name may have DIDs nobody in this batch dialled.
        let wanted: HashSet<&str> = names.iter().copied().collect();
        let mut dialled: HashMap<String, Dialled> = HashMap::new();
        for room in rooms.values() {
            for did in room.dids.iter().filter(|did| wanted.contains(did.as_str())) {
                dialled.entry(did.clone()).or_default().as_did = Some(room.clone());
            }
        }
        for (number, room) in rooms {
            if wanted.contains(number.as_str()) {
                dialled.entry(number).or_default().as_number = Some(room);
            }
        }
        Ok(dialled)
    }
}

/// Adds a room's DIDs inside its transaction; a DID taken by another room is a Duplicate.
async fn insert_dids(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    number: &str,
    dids: &[String],
) -> Result<(), StorageError> {
    for did in dids {
        sqlx::query("INSERT INTO room_dids (did, room_number) VALUES ($1, $2)")
            .bind(did)
            .bind(number)
            .execute(&mut **tx)
            .await
            .map_err(duplicate("DID", did))?;
    }
    Ok(())
}

fn room_from_row(row: &sqlx::any::AnyRow) -> Result<Room, StorageError> {
    let max: Option<i64> = row.try_get("max_participants")?;
    Ok(Room {
        number: row.try_get::<String, _>("number")?.into(),
        name: row.try_get("name")?,
        pin: row.try_get("pin")?,
        moderator_pin: row.try_get("moderator_pin")?,
        max_participants: max.and_then(|m| u32::try_from(m).ok()),
        dids: Vec::new(),
        // A name this version does not know (written by a newer one): the gateway's default.
        layout: row.try_get::<Option<String>, _>("layout")?.as_deref().and_then(VideoLayout::from_name),
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::databases;
    use super::*;

    fn room(number: &str) -> Room {
        Room {
            number: number.into(),
            name: format!("Room {number}"),
            pin: Some("4321".into()),
            moderator_pin: Some("9999".into()),
            max_participants: Some(10),
            dids: vec![format!("+1555000{number}")],
            layout: Some(VideoLayout::SpeakerStrip),
        }
    }

    /// The number of the room `did` leads to.
    async fn by_did(db: &Storage, did: &str) -> Option<String> {
        let mut dialled = db.rooms_dialled(&[did]).await.unwrap();
        dialled.remove(did).and_then(|d| d.as_did).map(|room| room.number.to_string())
    }

    #[tokio::test]
    async fn add_list_update_remove() {
        for (db, guard) in databases().await {
            db.add_room(&room("2000"), 1).await.unwrap();
            db.add_room(&room("1000"), 2).await.unwrap();
            let listed = db.rooms().await.unwrap();
            assert_eq!(listed.iter().map(|r| r.number.as_str()).collect::<Vec<_>>(), ["1000", "2000"]);
            assert_eq!(listed[0], room("1000"), "{:?}", db.backend());

            assert!(matches!(
                db.add_room(&room("1000"), 3).await,
                Err(StorageError::Duplicate { what: "room", .. })
            ));
            assert_eq!(by_did(&db, "+15550002000").await.as_deref(), Some("2000"));

            let update = RoomUpdate {
                pin: Some(None),
                max_participants: Some(Some(3)),
                dids: Some(vec!["+15559999".into()]),
                layout: Some(Some(VideoLayout::Grid)),
                ..RoomUpdate::default()
            };
            let updated = db.update_room("1000", &update, 4).await.unwrap();
            assert_eq!((updated.pin, updated.max_participants), (None, Some(3)));
            assert_eq!(db.room("1000").await.unwrap().unwrap().layout, Some(VideoLayout::Grid));
            let dialled = db.rooms_dialled(&["1000"]).await.unwrap();
            assert_eq!(dialled["1000"].as_number.as_ref().unwrap().layout, Some(VideoLayout::Grid));
            let cleared = RoomUpdate { layout: Some(None), ..RoomUpdate::default() };
            assert_eq!(db.update_room("1000", &cleared, 5).await.unwrap().layout, None);
            assert_eq!(db.room("1000").await.unwrap().unwrap().layout, None);
            assert_eq!(db.room("1000").await.unwrap().unwrap().dids, ["+15559999"]);
            assert_eq!(by_did(&db, "+15550001000").await, None);

            assert!(db.remove_room("1000").await.unwrap());
            assert!(!db.remove_room("1000").await.unwrap());
            assert!(db.room("1000").await.unwrap().is_none());
            assert_eq!(by_did(&db, "+15559999").await, None);
            guard.cleanup(db).await;
        }
    }

    #[tokio::test]
    async fn bad_rooms_are_refused_and_nothing_is_written() {
        for (db, guard) in databases().await {
            let mut bad = room("1000");
            bad.pin = Some("12a4".into());
            assert!(matches!(db.add_room(&bad, 1).await, Err(StorageError::Invalid { field: "pin", .. })));
            let mut bad = room("10 00");
            bad.pin = None;
            assert!(matches!(db.add_room(&bad, 1).await, Err(StorageError::Invalid { field: "number", .. })));
            let mut bad = room("1000");
            bad.layout = Some(VideoLayout::Presenter);
            assert!(matches!(db.add_room(&bad, 1).await, Err(StorageError::Invalid { field: "layout", .. })));
            // A DID clash rolls the whole room back.
            db.add_room(&room("1000"), 1).await.unwrap();
            let mut clash = room("3000");
            clash.dids = vec!["+15550001000".into()];
            assert!(matches!(db.add_room(&clash, 1).await, Err(StorageError::Duplicate { what: "DID", .. })));
            assert!(db.room("3000").await.unwrap().is_none());
            assert!(matches!(
                db.update_room("4000", &RoomUpdate::default(), 1).await,
                Err(StorageError::NotFound { .. })
            ));
            guard.cleanup(db).await;
        }
    }
}
