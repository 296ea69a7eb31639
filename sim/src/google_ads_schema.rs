//! The request messages of the Google Ads API calls the simulator serves,
//! as googleapis defines them (`google/ads/googleads/v25/`:
//! `services/offline_user_data_job_service.proto`,
//! `resources/offline_user_data_job.proto`, `common/offline_user_data.proto`,
//! `common/consent.proto`, `enums/*.proto`, `services/google_ads_service.proto`),
//! and the proto3 JSON reading Google's REST front end applies to a body:
//! field names in lowerCamelCase or their proto snake_case, an unknown name
//! or an enum name outside its enum refuses the whole request (400
//! INVALID_ARGUMENT, a `google.rpc.BadRequest` naming the field), as does a
//! value of the wrong JSON type or two members of one `oneof`.
//!
//! Fields the HTTP rule binds to the path (`customer_id`, `resource_name`)
//! are not body fields: the rules map the body to `*`, every field the path
//! does not bind.
//!
//! Messages the simulator does not model field by field (store sales,
//! Customer Match attributes, search settings) are known by name and taken
//! as any object.

use serde_json::Value;

#[derive(Clone, Copy)]
pub enum Ty {
    String,
    Bool,
    /// int32 / int64: a JSON number, or a string of digits.
    Int,
    Enum(&'static EnumDef),
    Message(&'static Message),
    /// A message not modelled here: any object.
    AnyObject,
}

pub struct Field {
    /// The proto (snake_case) name.
    pub name: &'static str,
    pub ty: Ty,
    pub repeated: bool,
}

pub struct Message {
    pub name: &'static str,
    pub fields: &'static [Field],
    /// Groups of fields of which at most one may be set.
    pub oneofs: &'static [&'static [&'static str]],
}

pub struct EnumDef {
    pub name: &'static str,
    pub values: &'static [(&'static str, i64)],
}

const fn f(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        repeated: false,
    }
}

const fn rep(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        repeated: true,
    }
}

pub static CONSENT_STATUS: EnumDef = EnumDef {
    name: "google.ads.googleads.v25.enums.ConsentStatusEnum.ConsentStatus",
    values: &[
        ("UNSPECIFIED", 0),
        ("UNKNOWN", 1),
        ("GRANTED", 2),
        ("DENIED", 3),
    ],
};

pub static JOB_TYPE: EnumDef = EnumDef {
    name: "google.ads.googleads.v25.enums.OfflineUserDataJobTypeEnum.OfflineUserDataJobType",
    values: &[
        ("UNSPECIFIED", 0),
        ("UNKNOWN", 1),
        ("STORE_SALES_UPLOAD_FIRST_PARTY", 2),
        ("STORE_SALES_UPLOAD_THIRD_PARTY", 3),
        ("CUSTOMER_MATCH_USER_LIST", 4),
        ("CUSTOMER_MATCH_WITH_ATTRIBUTES", 5),
    ],
};

static JOB_STATUS: EnumDef = EnumDef {
    name: "google.ads.googleads.v25.enums.OfflineUserDataJobStatusEnum.OfflineUserDataJobStatus",
    values: &[
        ("UNSPECIFIED", 0),
        ("UNKNOWN", 1),
        ("PENDING", 2),
        ("RUNNING", 3),
        ("SUCCESS", 4),
        ("FAILED", 5),
    ],
};

static JOB_FAILURE_REASON: EnumDef = EnumDef {
    name: "google.ads.googleads.v25.enums.OfflineUserDataJobFailureReasonEnum.OfflineUserDataJobFailureReason",
    values: &[
        ("UNSPECIFIED", 0),
        ("UNKNOWN", 1),
        ("INSUFFICIENT_MATCHED_TRANSACTIONS", 2),
        ("INSUFFICIENT_TRANSACTIONS", 3),
        ("HIGH_AVERAGE_TRANSACTION_VALUE", 4),
        ("LOW_AVERAGE_TRANSACTION_VALUE", 5),
        ("NEWLY_OBSERVED_CURRENCY_CODE", 6),
    ],
};

static USER_IDENTIFIER_SOURCE: EnumDef = EnumDef {
    name: "google.ads.googleads.v25.enums.UserIdentifierSourceEnum.UserIdentifierSource",
    values: &[
        ("UNSPECIFIED", 0),
        ("UNKNOWN", 1),
        ("FIRST_PARTY", 2),
        ("THIRD_PARTY", 3),
    ],
};

static CONSENT: Message = Message {
    name: "Consent",
    fields: &[
        f("ad_user_data", Ty::Enum(&CONSENT_STATUS)),
        f("ad_personalization", Ty::Enum(&CONSENT_STATUS)),
    ],
    oneofs: &[],
};

static CUSTOMER_MATCH_USER_LIST_METADATA: Message = Message {
    name: "CustomerMatchUserListMetadata",
    fields: &[
        f("user_list", Ty::String),
        f("consent", Ty::Message(&CONSENT)),
    ],
    oneofs: &[],
};

static OFFLINE_USER_DATA_JOB: Message = Message {
    name: "OfflineUserDataJob",
    fields: &[
        f("resource_name", Ty::String),
        f("id", Ty::Int),
        f("external_id", Ty::Int),
        f("type", Ty::Enum(&JOB_TYPE)),
        f("status", Ty::Enum(&JOB_STATUS)),
        f("failure_reason", Ty::Enum(&JOB_FAILURE_REASON)),
        f("operation_metadata", Ty::AnyObject),
        f(
            "customer_match_user_list_metadata",
            Ty::Message(&CUSTOMER_MATCH_USER_LIST_METADATA),
        ),
        f("store_sales_metadata", Ty::AnyObject),
    ],
    oneofs: &[&["customer_match_user_list_metadata", "store_sales_metadata"]],
};

pub static CREATE_JOB_REQUEST: Message = Message {
    name: "CreateOfflineUserDataJobRequest",
    fields: &[
        f("job", Ty::Message(&OFFLINE_USER_DATA_JOB)),
        f("validate_only", Ty::Bool),
        f("enable_match_rate_range_preview", Ty::Bool),
    ],
    oneofs: &[],
};

static OFFLINE_USER_ADDRESS_INFO: Message = Message {
    name: "OfflineUserAddressInfo",
    fields: &[
        f("hashed_first_name", Ty::String),
        f("hashed_last_name", Ty::String),
        f("city", Ty::String),
        f("state", Ty::String),
        f("country_code", Ty::String),
        f("postal_code", Ty::String),
        f("hashed_street_address", Ty::String),
    ],
    oneofs: &[],
};

static USER_IDENTIFIER: Message = Message {
    name: "UserIdentifier",
    fields: &[
        f("user_identifier_source", Ty::Enum(&USER_IDENTIFIER_SOURCE)),
        f("hashed_email", Ty::String),
        f("hashed_phone_number", Ty::String),
        f("mobile_id", Ty::String),
        f("third_party_user_id", Ty::String),
        f("address_info", Ty::Message(&OFFLINE_USER_ADDRESS_INFO)),
    ],
    oneofs: &[&[
        "hashed_email",
        "hashed_phone_number",
        "mobile_id",
        "third_party_user_id",
        "address_info",
    ]],
};

static USER_DATA: Message = Message {
    name: "UserData",
    fields: &[
        rep("user_identifiers", Ty::Message(&USER_IDENTIFIER)),
        f("transaction_attribute", Ty::AnyObject),
        f("user_attribute", Ty::AnyObject),
        f("consent", Ty::Message(&CONSENT)),
    ],
    oneofs: &[],
};

static OPERATION: Message = Message {
    name: "OfflineUserDataJobOperation",
    fields: &[
        f("create", Ty::Message(&USER_DATA)),
        f("remove", Ty::Message(&USER_DATA)),
        f("remove_all", Ty::Bool),
    ],
    oneofs: &[&["create", "remove", "remove_all"]],
};

pub static ADD_OPERATIONS_REQUEST: Message = Message {
    name: "AddOfflineUserDataJobOperationsRequest",
    fields: &[
        f("enable_partial_failure", Ty::Bool),
        f("enable_warnings", Ty::Bool),
        rep("operations", Ty::Message(&OPERATION)),
        f("validate_only", Ty::Bool),
    ],
    oneofs: &[],
};

pub static RUN_JOB_REQUEST: Message = Message {
    name: "RunOfflineUserDataJobRequest",
    fields: &[f("validate_only", Ty::Bool)],
    oneofs: &[],
};

pub static SEARCH_REQUEST: Message = Message {
    name: "SearchGoogleAdsRequest",
    fields: &[
        f("query", Ty::String),
        f("page_token", Ty::String),
        f("page_size", Ty::Int),
        f("validate_only", Ty::Bool),
        f("search_settings", Ty::AnyObject),
    ],
    oneofs: &[],
};

/// Why a body does not read as the request message: the field (proto path,
/// e.g. `job.customer_match_user_list_metadata`) and Google's kind of text.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaError {
    pub field: String,
    pub description: String,
}

/// lowerCamelCase of a proto field name (its JSON name).
pub fn json_name(proto: &str) -> String {
    let mut out = String::with_capacity(proto.len());
    let mut upper = false;
    for c in proto.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn type_name(ty: Ty) -> &'static str {
    match ty {
        Ty::String => "TYPE_STRING",
        Ty::Bool => "TYPE_BOOL",
        Ty::Int => "TYPE_INT64",
        Ty::Enum(e) => e.name,
        Ty::Message(m) => m.name,
        Ty::AnyObject => "TYPE_MESSAGE",
    }
}

fn invalid_value(path: &str, ty: Ty, value: &Value) -> SchemaError {
    SchemaError {
        field: path.to_string(),
        description: format!(
            "Invalid value at '{path}' ({}), {value}",
            match ty {
                Ty::Enum(e) => format!("type.googleapis.com/{}", e.name),
                other => type_name(other).to_string(),
            }
        ),
    }
}

/// Check a request body against its message.
pub fn validate(message: &'static Message, body: &Value) -> Result<(), SchemaError> {
    validate_message(message, body, "")
}

fn validate_message(message: &Message, value: &Value, path: &str) -> Result<(), SchemaError> {
    let Some(obj) = value.as_object() else {
        return Err(SchemaError {
            field: path.to_string(),
            description: format!(
                "Invalid JSON payload received. Expected an object for '{}' ({}).",
                if path.is_empty() { "<root>" } else { path },
                message.name
            ),
        });
    };
    let mut set: Vec<&str> = Vec::new();
    for (key, v) in obj {
        let Some(field) = message
            .fields
            .iter()
            .find(|fl| fl.name == key || json_name(fl.name) == *key)
        else {
            return Err(SchemaError {
                field: path.to_string(),
                description: format!(
                    "Invalid JSON payload received. Unknown name \"{key}\" at '{}': Cannot find field.",
                    path
                ),
            });
        };
        if v.is_null() {
            continue;
        }
        let here = join(path, field.name);
        set.push(field.name);
        if field.repeated {
            let items = v
                .as_array()
                .ok_or_else(|| invalid_value(&here, field.ty, v))?;
            for (i, item) in items.iter().enumerate() {
                validate_value(field.ty, item, &format!("{here}[{i}]"))?;
            }
        } else {
            validate_value(field.ty, v, &here)?;
        }
    }
    for group in message.oneofs {
        let members: Vec<&&str> = group.iter().filter(|m| set.contains(*m)).collect();
        if let [first, second, ..] = members.as_slice() {
            return Err(SchemaError {
                field: path.to_string(),
                description: format!(
                    "Invalid JSON payload received. Oneof field at '{path}' is already set by '{first}'; cannot also set '{second}'."
                ),
            });
        }
    }
    Ok(())
}

fn validate_value(ty: Ty, value: &Value, path: &str) -> Result<(), SchemaError> {
    let ok = match ty {
        Ty::String => value.is_string(),
        Ty::Bool => value.is_boolean(),
        Ty::Int => match value {
            Value::Number(n) => n.is_i64() || n.is_u64(),
            Value::String(s) => {
                let digits = s.strip_prefix('-').unwrap_or(s);
                !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
            }
            _ => false,
        },
        Ty::Enum(e) => enum_name(e, value).is_some(),
        Ty::Message(m) => return validate_message(m, value, path),
        Ty::AnyObject => value.is_object(),
    };
    if ok {
        Ok(())
    } else {
        Err(invalid_value(path, ty, value))
    }
}

/// The enum name a JSON value stands for (a name, or a number), if any.
pub fn enum_name(e: &EnumDef, value: &Value) -> Option<&'static str> {
    match value {
        Value::String(s) => e.values.iter().find(|(n, _)| n == s).map(|(n, _)| *n),
        Value::Number(n) => {
            let n = n.as_i64()?;
            e.values.iter().find(|(_, v)| *v == n).map(|(n, _)| *n)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn camel_and_snake_names_both_read() {
        let body = json!({"job": {"type": "CUSTOMER_MATCH_USER_LIST",
            "customer_match_user_list_metadata": {"userList": "customers/1/userLists/2",
                "consent": {"adUserData": "GRANTED", "ad_personalization": 2}}}});
        assert_eq!(validate(&CREATE_JOB_REQUEST, &body), Ok(()));
    }

    #[test]
    fn an_unknown_field_is_refused_with_its_place() {
        let body =
            json!({"job": {"customerMatchUserListMetadata": {"userList": "x", "colour": 1}}});
        let err = validate(&CREATE_JOB_REQUEST, &body).err();
        assert_eq!(
            err.map(|e| (e.field, e.description.contains("Unknown name \"colour\""))),
            Some(("job.customer_match_user_list_metadata".into(), true))
        );
    }

    #[test]
    fn an_enum_name_outside_the_enum_is_refused() {
        let body = json!({"job": {"customerMatchUserListMetadata": {
            "consent": {"adUserData": "CONSENT_GRANTED"}}}});
        let err = validate(&CREATE_JOB_REQUEST, &body).err();
        assert_eq!(
            err.map(|e| e.field),
            Some("job.customer_match_user_list_metadata.consent.ad_user_data".into())
        );
    }

    #[test]
    fn two_members_of_a_oneof_are_refused() {
        let body = json!({"operations": [{"create": {"userIdentifiers": [
            {"hashedEmail": "a", "hashedPhoneNumber": "b"}]}}]});
        assert!(validate(&ADD_OPERATIONS_REQUEST, &body).is_err());
        let body = json!({"operations": [{"create": {}, "remove": {}}]});
        assert!(validate(&ADD_OPERATIONS_REQUEST, &body).is_err());
    }
}
