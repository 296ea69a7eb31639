//! Reading a profile back (`GET /1/profile.json?identity=…`) to check that
//! a delivered op landed: the membership property and the attributes sent.

use serde_json::Value;

use super::{attribute_properties, golden_identity, ClevertapDestination};
use crate::destinations::{DestinationError, ReadBack};
use crate::domain::model::{DeliveryOp, OpKind};
use crate::domain::spec::{ExportMode, ExportSpec};

/// Loose equality: CleverTap may hand numbers back as text and the reverse.
fn same(a: &Value, b: &Value) -> bool {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    a == b || text(a) == text(b)
}

impl ClevertapDestination {
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
        let resp = self
            .http
            .get(format!("{}/1/profile.json", self.base_url))
            .query(&[("identity", identity.as_str())])
            .header("X-CleverTap-Account-Id", self.account_id.expose())
            .header("X-CleverTap-Passcode", self.passcode.expose())
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = resp.status().as_u16();
        let body: Value = resp
            .json()
            .await
            .map_err(|e| self.permanent(format!("profile lookup answered {status}: {e}")))?;
        let data = body
            .pointer("/record/profileData")
            .and_then(Value::as_object);
        let Some(data) = data else {
            return Ok(match op.op {
                OpKind::Remove => ReadBack::Agrees("no profile, so no membership".into()),
                _ => ReadBack::Disagrees(format!(
                    "no profile for the person (lookup answered {status})"
                )),
            });
        };
        if export.mode == ExportMode::Membership {
            let flag = data.get(&op.audience).and_then(Value::as_bool);
            let want = op.op != OpKind::Remove;
            if flag.unwrap_or(false) != want {
                return Ok(ReadBack::Disagrees(format!(
                    "profile property `{}` is {}, expected {want}",
                    op.audience,
                    flag.map_or("unset".to_string(), |b| b.to_string())
                )));
            }
        }
        if op.op != OpKind::Remove {
            for (key, expected) in attribute_properties(export, op) {
                match data.get(&key) {
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
