//! Reading a profile back (`GET /1/profile.json?identity=…`) to check that
//! a delivered op landed: the membership property and the attributes sent.
//!
//! CleverTap's answer is not an echo of the upload (docs/clevertap.md,
//! "Read-back"): the profile sits under `record`, with standard fields such
//! as `email` and `name` on the record itself and custom properties under
//! `record.profileData`, whose keys come back lower-cased without spaces
//! (`Cart Value` → `cartvalue`) and whose flags may come back as text
//! (`"true"`). So keys are compared in that folded form, on the record and in
//! `profileData`, and a flag is true or `"true"`.
//!
//! An HTTP error is an error, never "no profile": 401 is permanent (region,
//! account or passcode), 429 (past the 3 concurrent profile reads) and 5xx
//! are worth asking again.

use std::time::Duration;

use serde_json::{Map, Value};

use super::{attribute_properties, golden_identity, ClevertapDestination};
use crate::destinations::{status_is_retryable, DestinationError, ReadBack};
use crate::domain::model::{DeliveryOp, OpKind};
use crate::domain::spec::{ExportMode, ExportSpec};

/// Record fields that are not profile properties.
const NOT_PROPERTIES: [&str; 3] = ["profileData", "events", "platformInfo"];

/// A key as CleverTap hands it back: lower-cased, whitespace removed.
pub fn folded_key(key: &str) -> String {
    key.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Loose equality: CleverTap may hand numbers and flags back as text.
fn same(a: &Value, b: &Value) -> bool {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    a == b || text(a) == text(b)
}

/// A flag as CleverTap may answer it: a JSON boolean or its text.
fn flag(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// The property `key` of an answered record: in `profileData`, else on the
/// record (standard fields), keys compared folded.
fn property<'a>(record: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    let want = folded_key(key);
    let data = record.get("profileData").and_then(Value::as_object);
    data.into_iter()
        .flatten()
        .chain(
            record
                .iter()
                .filter(|(k, _)| !NOT_PROPERTIES.contains(&k.as_str())),
        )
        .find(|(k, _)| folded_key(k) == want)
        .map(|(_, v)| v)
}

/// What the lookup said: a record, or no profile.
enum Lookup {
    Found(Map<String, Value>),
    NoProfile,
}

impl ClevertapDestination {
    /// `GET /1/profile.json?identity=…`, its HTTP status honoured.
    async fn lookup(&self, identity: &str) -> Result<Lookup, DestinationError> {
        let resp = self
            .http
            .get(format!("{}/1/profile.json", self.base_url))
            .query(&[("identity", identity)])
            .header("X-CleverTap-Account-Id", self.account_id.expose())
            .header("X-CleverTap-Passcode", self.passcode.expose())
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(e))?;
        let body: Option<Value> = serde_json::from_slice(&bytes).ok();
        let said = |body: &Option<Value>| {
            body.as_ref()
                .and_then(|b| b.get("error"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect())
        };
        if !(200..300).contains(&status) {
            return Err(self.lookup_error(status, &said(&body), retry_after));
        }
        let Some(body) = body else {
            return Err(self.retryable(format!(
                "profile lookup answered {status} with a body that is not JSON"
            )));
        };
        if let Some(record) = body.get("record").and_then(Value::as_object) {
            return Ok(Lookup::Found(record.clone()));
        }
        // A `fail` inside a 200: not found is an answer; anything else is not.
        let code = body.get("code").and_then(Value::as_u64).unwrap_or(0);
        let error = said(&Some(body.clone()));
        if code == 404 || error.to_ascii_lowercase().contains("not found") {
            return Ok(Lookup::NoProfile);
        }
        let code = u16::try_from(code).unwrap_or(500);
        Err(self.lookup_error(code, &error, retry_after))
    }

    fn lookup_error(
        &self,
        status: u16,
        said: &str,
        retry_after: Option<Duration>,
    ) -> DestinationError {
        let message = format!("profile lookup answered {status}: {said}");
        if status_is_retryable(status) {
            DestinationError::Retryable {
                destination: self.name.clone(),
                message,
                retry_after,
            }
        } else if status == 401 {
            self.permanent(format!("{message} (check region, account id and passcode)"))
        } else {
            self.permanent(message)
        }
    }

    pub(super) async fn read_profile(
        &self,
        export: &ExportSpec,
        op: &DeliveryOp,
    ) -> Result<ReadBack, DestinationError> {
        if op.op == OpKind::Event {
            return Ok(ReadBack::NotReadable(
                "events are not read back per person".into(),
            ));
        }
        let Some((_, identity)) = golden_identity(&export.identity, &op.ids) else {
            return Ok(ReadBack::NotReadable(
                "the person has no identity CleverTap keys on".into(),
            ));
        };
        let record = match self.lookup(&identity).await? {
            Lookup::Found(record) => record,
            Lookup::NoProfile => {
                return Ok(match op.op {
                    OpKind::Remove => ReadBack::Agrees("no profile, so no membership".into()),
                    _ => ReadBack::Disagrees("CleverTap has no profile for the person".into()),
                })
            }
        };
        if export.mode == ExportMode::Membership {
            let found = property(&record, &op.audience);
            let value = found.and_then(flag);
            let want = op.op != OpKind::Remove;
            if value.unwrap_or(false) != want {
                return Ok(ReadBack::Disagrees(format!(
                    "profile property `{}` is {}, expected {want}",
                    op.audience,
                    match (found, value) {
                        (_, Some(b)) => b.to_string(),
                        (Some(_), None) => "not a flag".to_string(),
                        (None, None) => "unset".to_string(),
                    }
                )));
            }
        }
        if op.op != OpKind::Remove {
            for (key, expected) in attribute_properties(export, op) {
                match property(&record, &key) {
                    Some(found) if same(found, &expected) => {}
                    Some(_) => {
                        return Ok(ReadBack::Disagrees(format!(
                            "profile property `{key}` holds another value than the one sent"
                        )))
                    }
                    None => {
                        return Ok(ReadBack::Disagrees(format!(
                            "profile property `{key}` is missing"
                        )))
                    }
                }
            }
        }
        Ok(ReadBack::Agrees(if op.op == OpKind::Remove {
            format!("profile `{}` = false", op.audience)
        } else {
            format!("profile `{}` = true, with the attributes sent", op.audience)
        }))
    }
}
