//! Opening the store, its error and codec helpers, the bridge to redb's
//! blocking transactions, and paging.

use super::*;

pub(super) fn db_err(what: &str, e: impl Into<redb::Error>) -> StateError {
    let DbFailure {
        message,
        retryable,
        source,
    } = classify_db_error(what, e);
    if retryable {
        StateError::Retryable { message, source }
    } else {
        StateError::Permanent { message, source }
    }
}

pub(super) fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StateError> {
    serde_json::from_slice(bytes).map_err(|e| StateError::Permanent {
        message: format!("corrupt {what} in the state file: {e}"),
        source: Some(Box::new(e)),
    })
}

pub(super) fn encode<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(value).map_err(|e| StateError::Permanent {
        message: format!("cannot encode {what}: {e}"),
        source: Some(Box::new(e)),
    })
}

pub(super) fn commit(txn: WriteTransaction, what: &str) -> Result<(), StateError> {
    txn.commit().map_err(|e| db_err(what, e))
}

impl EmbeddedStateStore {
    /// Open (or create) the store at `path`, creating its directory.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let db = super::super::open_database(path)
            .map_err(|e| db_err(&format!("cannot open state file {}", path.display()), e))?;
        // Create every table up front, so read transactions always find them.
        let txn = db.begin_write().map_err(|e| db_err("open", e))?;
        {
            let create = |r: Result<(), redb::TableError>| r.map_err(|e| db_err("create table", e));
            create(txn.open_table(MEMBERSHIP).map(drop))?;
            create(txn.open_table(MEMBER_COUNT).map(drop))?;
            create(txn.open_table(STAGED).map(drop))?;
            create(txn.open_table(RUN).map(drop))?;
            create(txn.open_table(RUN_BY_EXPORT).map(drop))?;
            create(txn.open_table(IDEMPOTENCY).map(drop))?;
            create(txn.open_table(COUNTER).map(drop))?;
            create(txn.open_table(REPORT).map(drop))?;
            create(txn.open_table(REPORT_BY_TIME).map(drop))?;
            create(txn.open_table(QUARANTINE).map(drop))?;
            create(txn.open_table(QUARANTINE_BY_TIME).map(drop))?;
            create(txn.open_table(DEST_RECORD).map(drop))?;
        }
        commit(txn, "open")?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Run `f` on the blocking pool (redb calls block on the disk).
    /// Drop every in-progress idempotency claim. Only one process can hold
    /// the file, so at start-up such claims belong to a process that died
    /// mid-request: keeping them would make its retries wait them out.
    /// Returns how many were dropped.
    pub async fn release_in_progress_claims(&self) -> Result<u64, StateError> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(|e| db_err("release claims", e))?;
            let mut released = 0u64;
            {
                let mut t = txn
                    .open_table(IDEMPOTENCY)
                    .map_err(|e| db_err("release claims", e))?;
                let mut held = Vec::new();
                for entry in t.iter().map_err(|e| db_err("release claims", e))? {
                    let (key, value) = entry.map_err(|e| db_err("release claims", e))?;
                    let record: IdempotencyRecord = decode("idempotency record", value.value())?;
                    if record.status == IdempotencyStatus::InProgress {
                        held.push(key.value().to_string());
                    }
                }
                for key in held {
                    t.remove(key.as_str())
                        .map_err(|e| db_err("release claims", e))?;
                    released += 1;
                }
            }
            commit(txn, "release claims")?;
            Ok(released)
        })
        .await
    }

    pub(super) async fn blocking<T, F>(&self, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StateError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StateError::Permanent {
                message: format!("state store task failed: {e}"),
                source: Some(Box::new(e)),
            })?
    }
}

/// Read a keyed page: entries of `prefix` after `cursor`, at most `limit`.
pub(super) fn page_of<T, F>(
    db: &Database,
    table: TableDefinition<(&str, &str), &[u8]>,
    prefix: &str,
    cursor: Option<&str>,
    limit: usize,
    mut map: F,
) -> Result<Page<T>, StateError>
where
    F: FnMut(&str, &[u8]) -> Result<T, StateError>,
{
    let limit = limit.max(1);
    let txn = db.begin_read().map_err(|e| db_err("read", e))?;
    let t = txn.open_table(table).map_err(|e| db_err("read", e))?;
    let lower = match cursor {
        Some(c) => Bound::Excluded((prefix, c)),
        None => Bound::Included((prefix, "")),
    };
    let range = t
        .range::<(&str, &str)>((lower, Bound::Unbounded))
        .map_err(|e| db_err("read", e))?;
    let mut items = Vec::new();
    let mut last_key: Option<String> = None;
    let mut more = false;
    for entry in range {
        let (k, v) = entry.map_err(|e| db_err("read", e))?;
        let (p, key) = k.value();
        if p != prefix {
            break;
        }
        if items.len() == limit {
            more = true;
            break;
        }
        items.push(map(key, v.value())?);
        last_key = Some(key.to_string());
    }
    Ok(Page {
        items,
        next: if more { last_key } else { None },
    })
}
