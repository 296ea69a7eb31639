//! `GET /1/profile.json`: one stored profile, answered in CleverTap's
//! shape, past 3 reads in flight refused with 429.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::{fail, ClevertapState, Slot, StoredProfile, THROTTLED};

/// `GET /1/profile.json?identity=…` (or `email=`, `objectId=`): one stored
/// profile, answered as CleverTap answers it ([`answered_record`]).
pub(super) async fn lookup(
    State(state): State<Arc<ClevertapState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let in_flight = state.reads_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _slot = Slot(&state.reads_in_flight);
    if in_flight > state.config.max_concurrent_reads {
        state.lock().counters.lookups_throttled += 1;
        return fail(StatusCode::TOO_MANY_REQUESTS, THROTTLED);
    }
    if let Some(delay) = state.config.response_delay {
        tokio::time::sleep(delay).await;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if header("X-CleverTap-Account-Id") != Some(state.config.account_id.as_str())
        || header("X-CleverTap-Passcode") != Some(state.config.passcode.as_str())
    {
        return fail(StatusCode::UNAUTHORIZED, "invalid credentials or URL");
    }
    let pairs: Vec<(String, String)> = query
        .as_deref()
        .and_then(serde_urlencoded_pairs)
        .unwrap_or_default();
    let find = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let mut inner = state.lock();
    inner.counters.lookups += 1;
    let found = if let Some(id) = find("identity") {
        inner.profiles.get(&("identity".to_string(), id)).cloned()
    } else if let Some(id) = find("objectId") {
        inner.profiles.get(&("objectId".to_string(), id)).cloned()
    } else if let Some(email) = find("email") {
        inner
            .profiles
            .values()
            .find(|p| p.data.get("Email").and_then(Value::as_str) == Some(email.as_str()))
            .cloned()
    } else {
        drop(inner);
        return fail(
            StatusCode::BAD_REQUEST,
            "one of identity, email or objectId is required",
        );
    };
    drop(inner);
    match found {
        Some(p) => {
            Json(json!({"status": "success", "record": answered_record(&p)})).into_response()
        }
        None => Json(json!({"status": "fail", "error": "Profile not found", "code": 404}))
            .into_response(),
    }
}

/// Standard profile fields CleverTap answers on the record, not in
/// `profileData` (its recorded example: `record.email`).
const RECORD_FIELDS: [(&str, &str); 2] = [("Email", "email"), ("Name", "name")];

/// A stored profile as CleverTap's lookup answers it: `email` and `name` on
/// the record, custom keys lower-cased without spaces, flags as text, and
/// the record's `events` and `platformInfo` (none here: no SDK traffic).
pub fn answered_record(p: &StoredProfile) -> Value {
    let mut record = Map::new();
    record.insert(p.key_kind.clone(), Value::String(p.key.clone()));
    let mut data = Map::new();
    for (key, value) in &p.data {
        if let Some((_, field)) = RECORD_FIELDS.iter().find(|(k, _)| k == key) {
            record.insert((*field).to_string(), value.clone());
            continue;
        }
        let folded: String = key
            .chars()
            .filter(|c| !c.is_whitespace())
            .flat_map(char::to_lowercase)
            .collect();
        let value = match value {
            Value::Bool(b) => Value::String(b.to_string()),
            other => other.clone(),
        };
        data.insert(folded, value);
    }
    record.insert("profileData".into(), Value::Object(data));
    record.insert("events".into(), json!({}));
    record.insert("platformInfo".into(), json!([]));
    Value::Object(record)
}

/// Query pairs, percent-decoded.
fn serde_urlencoded_pairs(query: &str) -> Option<Vec<(String, String)>> {
    let uri: axum::http::Uri = format!("/?{query}").parse().ok()?;
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .ok()
        .map(|q| q.0)
}
