//! Item codec and error mapping of the DynamoDB store.

use super::*;

pub(super) fn build_err(what: &str, err: aws_sdk_dynamodb::error::BuildError) -> StateError {
    StateError::Permanent {
        message: format!("{what}: could not build the request: {err}"),
        source: Some(Box::new(err)),
    }
}

pub(super) fn classify<E>(what: &str, err: SdkError<E>) -> StateError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let f = SdkFailure::of(what, err);
    if f.retryable {
        StateError::Retryable {
            message: f.message,
            source: Some(f.source),
        }
    } else {
        StateError::Permanent {
            message: f.message,
            source: Some(f.source),
        }
    }
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_string(), s(pk)), (SK.to_string(), s(sk))])
}

pub(super) fn get_s<'a>(item: &'a Item, name: &str, what: &str) -> Result<&'a str, StateError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(StateError::permanent(format!(
            "{what}: stored item has no string attribute `{name}`"
        ))),
    }
}

pub(super) fn get_n(item: &Item, name: &str, what: &str) -> Result<i64, StateError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().map_err(|_| {
            StateError::permanent(format!("{what}: attribute `{name}` is not an integer"))
        }),
        _ => Err(StateError::permanent(format!(
            "{what}: stored item has no number attribute `{name}`"
        ))),
    }
}

pub(super) fn to_json<T: Serialize>(what: &str, value: &T) -> Result<String, StateError> {
    serde_json::to_string(value).map_err(|e| StateError::Permanent {
        message: format!("{what}: cannot encode: {e}"),
        source: Some(Box::new(e)),
    })
}

pub(super) fn from_blob<T: DeserializeOwned>(
    item: &Item,
    attr: &str,
    what: &str,
) -> Result<T, StateError> {
    let json = get_s(item, attr, what)?;
    // Only the position: serde's message may quote stored values.
    serde_json::from_str(json).map_err(|e| {
        StateError::permanent(format!(
            "{what}: attribute `{attr}` is not valid JSON of the expected shape (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

/// Order-preserving text form of a time, for sort keys.
pub(super) fn time_key(ms: Millis, id: &str) -> String {
    format!("{:020}#{id}", (ms as u64) ^ (1 << 63))
}

/// Epoch seconds, rounded up, for the TTL attribute (never expire early).
pub(super) fn ttl_seconds(ms: Millis) -> i64 {
    ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) > 0)
}

pub(super) fn encode_cursor(sk: &str) -> String {
    URL_SAFE_NO_PAD.encode(sk.as_bytes())
}

pub(super) fn decode_cursor(cursor: &str) -> Result<String, StateError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| StateError::permanent("page cursor is not one this store issued"))
}

pub(super) fn limit_i32(limit: usize) -> i32 {
    i32::try_from(limit).unwrap_or(i32::MAX)
}

/// Backoff of BatchWriteItem's unprocessed items.
pub(super) fn unprocessed_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(25))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(8)
        .with_jitter()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_keys_sort_like_times() {
        let times = [
            i64::MIN,
            -5_000,
            -1,
            0,
            1,
            999,
            1_000,
            1_700_000_000_000,
            i64::MAX,
        ];
        let keys: Vec<String> = times.iter().map(|t| time_key(*t, "x")).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert!(keys.iter().all(|k| k.len() == 22));
    }

    #[test]
    fn ttl_seconds_never_round_down() {
        assert_eq!(ttl_seconds(1_000), 1);
        assert_eq!(ttl_seconds(1_001), 2);
        assert_eq!(ttl_seconds(0), 0);
        assert_eq!(ttl_seconds(-1), 0);
    }

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = encode_cursor("id:42#x");
        assert_eq!(decode_cursor(&c).unwrap(), "id:42#x");
        assert!(decode_cursor("%%%").is_err());
    }
}
