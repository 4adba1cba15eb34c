//! The REST API under `/api/v1`, described in `gateway/openapi.yaml` (served at
//! `/api/v1/openapi.yaml`). Every call needs a bearer token: `http.read_token` reads rooms
//! (without their PINs), conferences, call records and trunks; `http.api_token`, the admin
//! token, reads everything and is the only one that changes anything.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::oneshot;

use crate::control::{ConferenceView, Control, ControlError, DialRequest, ParticipantAction};
use crate::dns;
use crate::media::ParticipantId;
use crate::state::Shared;
use crate::storage::{Room, RoomUpdate, StorageError};

pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v1/openapi.yaml", get(openapi))
        .route("/api/v1/rooms", get(list_rooms).post(create_room))
        .route("/api/v1/rooms/{number}", get(show_room).patch(update_room).delete(delete_room))
        .route("/api/v1/conferences", get(list_conferences))
        .route("/api/v1/conferences/{room}", get(show_conference).patch(update_conference))
        .route("/api/v1/conferences/{room}/dial", post(dial))
        .route("/api/v1/conferences/{room}/participants/{id}", axum::routing::delete(kick))
        .route("/api/v1/conferences/{room}/participants/{id}/{action}", post(participant_action))
        .route("/api/v1/call-records", get(call_records))
}

/// An API failure: a status and a message, as `{"error": "…"}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> ApiError {
        let status = match &e {
            StorageError::Duplicate { .. } => StatusCode::CONFLICT,
            StorageError::NotFound { .. } => StatusCode::NOT_FOUND,
            StorageError::Invalid { .. } => StatusCode::BAD_REQUEST,
            _ => {
                tracing::error!(error = %e, "API storage failure");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        let status = match e {
            ControlError::NoSuchParticipant | ControlError::NoSuchConference => StatusCode::NOT_FOUND,
            ControlError::VideoOff => StatusCode::CONFLICT,
            ControlError::BadTarget(_) => StatusCode::BAD_REQUEST,
            ControlError::NoPorts | ControlError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.to_string())
    }
}

/// What a bearer token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// `http.read_token`: rooms without their PINs, conferences, call records, trunks.
    Read,
    /// `http.api_token`: everything, PINs included.
    Admin,
}

/// The access `headers` carry, if it is at least `need`. Tokens are compared in constant time.
pub fn authorize(shared: &Shared, headers: &HeaderMap, need: Access) -> Result<Access, ApiError> {
    let http = &shared.config.http;
    if http.api_token.is_none() && (need == Access::Admin || http.read_token.is_none()) {
        let message = match need {
            Access::Admin => "mutating calls are disabled: set http.api_token in the config",
            Access::Read => "the API is disabled: set http.api_token or http.read_token in the config",
        };
        return Err(ApiError::new(StatusCode::FORBIDDEN, message));
    }
    let given = bearer(headers).unwrap_or("");
    let access = if http.api_token.as_deref().is_some_and(|t| same_secret(given, t)) {
        Access::Admin
    } else if http.read_token.as_deref().is_some_and(|t| same_secret(given, t)) {
        Access::Read
    } else {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token"));
    };
    if access < need {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "this token may only read"));
    }
    Ok(access)
}

/// The token of an `Authorization: Bearer …` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// Equal, in time that depends on the lengths only.
pub fn same_secret(given: &str, secret: &str) -> bool {
    given.len() == secret.len()
        && given.bytes().zip(secret.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// A room as `access` may see it: PINs only for the admin token, otherwise whether there is one.
fn room_view(room: &Room, access: Access) -> Value {
    let mut value = serde_json::to_value(room).unwrap_or(Value::Null);
    if let (Access::Read, Value::Object(fields)) = (access, &mut value) {
        fields.remove("pin");
        fields.remove("moderator_pin");
        fields.insert("has_pin".into(), Value::Bool(room.pin.is_some()));
        fields.insert("has_moderator_pin".into(), Value::Bool(room.moderator_pin.is_some()));
    }
    value
}

/// A JSON body, with a clear message when it does not parse.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let message = if path == "." { e.inner().to_string() } else { format!("{path}: {}", e.inner()) };
        ApiError::new(StatusCode::BAD_REQUEST, message)
    })
}

async fn openapi(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&shared, &headers, Access::Read)?;
    Ok(([(header::CONTENT_TYPE, "application/yaml")], include_str!("../openapi.yaml")))
}

async fn list_rooms(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Json<Vec<Value>>, ApiError> {
    let access = authorize(&shared, &headers, Access::Read)?;
    Ok(Json(shared.storage.rooms().await?.iter().map(|room| room_view(room, access)).collect()))
}

async fn show_room(
    State(shared): State<Arc<Shared>>,
    Path(number): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let access = authorize(&shared, &headers, Access::Read)?;
    match shared.storage.room(&number).await? {
        Some(room) => Ok(Json(room_view(&room, access))),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("room `{number}` not found"))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRoom {
    number: String,
    #[serde(default)]
    name: String,
    pin: Option<String>,
    moderator_pin: Option<String>,
    max_participants: Option<u32>,
    #[serde(default)]
    dids: Vec<String>,
    layout: Option<crate::config::VideoLayout>,
}

#[allow(clippy::disallowed_methods)] // an HTTP handler: the I/O shell
async fn create_room(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    authorize(&shared, &headers, Access::Admin)?;
    let new: NewRoom = body(&bytes)?;
    let room = Room {
        number: new.number.into(),
        name: new.name,
        pin: new.pin,
        moderator_pin: new.moderator_pin,
        max_participants: new.max_participants,
        dids: new.dids,
        layout: new.layout,
    };
    shared.storage.add_room(&room, crate::clock::unix_ms()).await?;
    tracing::info!(room = %room.number, "room created through the API");
    Ok((StatusCode::CREATED, Json(room_view(&room, Access::Admin))))
}

/// PATCH: a field left out is kept; `null` clears an optional one.
#[allow(clippy::disallowed_methods)] // an HTTP handler: the I/O shell
async fn update_room(
    State(shared): State<Arc<Shared>>,
    Path(number): Path<String>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Json<Room>, ApiError> {
    authorize(&shared, &headers, Access::Admin)?;
    let fields: Map<String, Value> = body(&bytes)?;
    let update = room_update(fields)?;
    Ok(Json(shared.storage.update_room(&number, &update, crate::clock::unix_ms()).await?))
}

fn room_update(fields: Map<String, Value>) -> Result<RoomUpdate, ApiError> {
    fn field<T: serde::de::DeserializeOwned>(key: &str, value: Value) -> Result<T, ApiError> {
        serde_json::from_value(value)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("{key}: {e}")))
    }
    let mut update = RoomUpdate::default();
    for (key, value) in fields {
        match key.as_str() {
            "name" => update.name = Some(field(&key, value)?),
            "pin" => update.pin = Some(field(&key, value)?),
            "moderator_pin" => update.moderator_pin = Some(field(&key, value)?),
            "max_participants" => update.max_participants = Some(field(&key, value)?),
            "dids" => update.dids = Some(field(&key, value)?),
            "layout" => update.layout = Some(field(&key, value)?),
            _ => return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("unknown field `{key}`"))),
        }
    }
    Ok(update)
}

async fn delete_room(
    State(shared): State<Arc<Shared>>,
    Path(number): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    authorize(&shared, &headers, Access::Admin)?;
    if shared.storage.remove_room(&number).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, format!("room `{number}` not found")))
    }
}

async fn conferences(shared: &Shared) -> Result<Vec<ConferenceView>, ApiError> {
    let (reply, answer) = oneshot::channel();
    let unavailable = || ApiError::from(ControlError::Unavailable);
    shared.control.send(Control::Conferences(reply)).await.map_err(|_| unavailable())?;
    answer.await.map_err(|_| unavailable())
}

async fn list_conferences(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Json<Vec<ConferenceView>>, ApiError> {
    authorize(&shared, &headers, Access::Read)?;
    Ok(Json(conferences(&shared).await?))
}

async fn show_conference(
    State(shared): State<Arc<Shared>>,
    Path(room): Path<String>,
    headers: HeaderMap,
) -> Result<Json<ConferenceView>, ApiError> {
    authorize(&shared, &headers, Access::Read)?;
    conferences(&shared)
        .await?
        .into_iter()
        .find(|c| c.room == room)
        .map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no conference in room `{room}`")))
}

/// What a conference's PATCH may change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConferenceUpdate {
    layout: crate::config::VideoLayout,
    /// With the `presenter` layout: the participant shown large.
    presenter: Option<u64>,
}

/// Changes a live conference: the layout of its picture (`speaker`, `grid`, `speaker-strip`,
/// or `presenter` with the participant shown large).
async fn update_conference(
    State(shared): State<Arc<Shared>>,
    Path(room): Path<String>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Json<ConferenceView>, ApiError> {
    authorize(&shared, &headers, Access::Admin)?;
    let update: ConferenceUpdate = body(&bytes)?;
    let presenter = match (update.layout, update.presenter) {
        (crate::config::VideoLayout::Presenter, Some(id)) => Some(ParticipantId(id)),
        (crate::config::VideoLayout::Presenter, None) => {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "the presenter layout needs `presenter`"));
        }
        (_, Some(_)) => {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "`presenter` goes with the presenter layout"));
        }
        (_, None) => None,
    };
    let (reply, answer) = oneshot::channel();
    let unavailable = || ApiError::from(ControlError::Unavailable);
    let request = Control::Layout { room: room.into(), layout: update.layout, presenter, reply };
    shared.control.send(request).await.map_err(|_| unavailable())?;
    Ok(Json(answer.await.map_err(|_| unavailable())??))
}

/// Calls out of a room: the answer is the new participant, `calling`; how the call goes shows
/// in the conference (`ringing`, then `joined`) and, when it fails, in its call record.
async fn dial(
    State(shared): State<Arc<Shared>>,
    Path(number): Path<String>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    authorize(&shared, &headers, Access::Admin)?;
    let request: DialRequest = body(&bytes)?;
    let Some(room) = shared.storage.room(&number).await? else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("room `{number}` not found")));
    };
    // A URI dialled directly by name is resolved here, so call control never waits on DNS.
    let named = match &request.trunk {
        None => rsip::Uri::try_from(request.to.trim()).ok().filter(|uri| dns::literal(uri).is_none()),
        Some(_) => None,
    };
    let next_hop = match named {
        Some(uri) => dns::resolve(&dns::host_port(&uri)).await,
        None => None,
    };
    let (reply, answer) = oneshot::channel();
    let unavailable = || ApiError::from(ControlError::Unavailable);
    let dial = Control::Dial { room, request, next_hop, reply };
    shared.control.send(dial).await.map_err(|_| unavailable())?;
    let id = answer.await.map_err(|_| unavailable())??;
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id, "room": number, "state": "calling" }))))
}

async fn control_participant(
    shared: &Shared,
    room: String,
    id: u64,
    action: ParticipantAction,
) -> Result<Option<crate::control::ParticipantView>, ApiError> {
    let (reply, answer) = oneshot::channel();
    let unavailable = || ApiError::from(ControlError::Unavailable);
    let request = Control::Participant { room: room.into(), id: ParticipantId(id), action, reply };
    shared.control.send(request).await.map_err(|_| unavailable())?;
    Ok(answer.await.map_err(|_| unavailable())??)
}

async fn participant_action(
    State(shared): State<Arc<Shared>>,
    Path((room, id, action)): Path<(String, u64, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&shared, &headers, Access::Admin)?;
    let action = match action.as_str() {
        "mute" => ParticipantAction::Mute(true),
        "unmute" => ParticipantAction::Mute(false),
        "deaf" => ParticipantAction::Deaf(true),
        "undeaf" => ParticipantAction::Deaf(false),
        "video-mute" => ParticipantAction::VideoMute(true),
        "video-unmute" => ParticipantAction::VideoMute(false),
        "kick" => ParticipantAction::Kick,
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "unknown action `{other}`: mute, unmute, deaf, undeaf, video-mute, video-unmute or kick"
                ),
            ))
        }
    };
    Ok(match control_participant(&shared, room, id, action).await? {
        Some(view) => Json(view).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

async fn kick(
    State(shared): State<Arc<Shared>>,
    Path((room, id)): Path<(String, u64)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    authorize(&shared, &headers, Access::Admin)?;
    control_participant(&shared, room, id, ParticipantAction::Kick).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct RecordQuery {
    room: Option<String>,
    limit: Option<u32>,
}

async fn call_records(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<RecordQuery>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&shared, &headers, Access::Read)?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(shared.storage.call_records(query.room.as_deref(), limit).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_shown_to_the_admin_token_only() {
        let room = Room {
            number: "1000".into(),
            name: String::new(),
            pin: Some("4321".into()),
            moderator_pin: None,
            max_participants: None,
            dids: Vec::new(),
            layout: None,
        };
        let read = room_view(&room, Access::Read);
        assert_eq!(read.get("pin"), None);
        assert_eq!(read.get("moderator_pin"), None);
        assert_eq!(read["has_pin"], true);
        assert_eq!(read["has_moderator_pin"], false);
        assert_eq!(room_view(&room, Access::Admin)["pin"], "4321");
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abd", "abc"));
        assert!(!same_secret("ab", "abc"));
    }

    #[test]
    fn patch_tells_absent_from_null() {
        let fields: Map<String, Value> = serde_json::from_str(r#"{"pin": null, "name": "Board"}"#).unwrap();
        let update = room_update(fields).unwrap();
        assert_eq!(update.pin, Some(None));
        assert_eq!(update.name.as_deref(), Some("Board"));
        assert_eq!(update.moderator_pin, None);
        let bad: Map<String, Value> = serde_json::from_str(r#"{"pni": "1"}"#).unwrap();
        assert_eq!(room_update(bad).unwrap_err().message, "unknown field `pni`");
        let wrong: Map<String, Value> = serde_json::from_str(r#"{"max_participants": "ten"}"#).unwrap();
        assert!(room_update(wrong).unwrap_err().message.starts_with("max_participants:"));
    }
}
