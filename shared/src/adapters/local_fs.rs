//! The object store on one machine: a directory. Keys are relative paths
//! under the root; objects are written to a temporary file and renamed into
//! place, so a reader sees the old object or the new one, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::ports::{ObjectStore, ObjectStoreError};

/// Temporary files carry this marker; listings skip them.
const TMP_MARKER: &str = ".tmp-";

#[derive(Clone, Debug)]
pub struct LocalDirStore {
    root: PathBuf,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> ObjectStoreError {
    use std::io::ErrorKind::*;
    let message = format!("{what} {}: {e}", path.display());
    match e.kind() {
        Interrupted | TimedOut | WouldBlock | StorageFull | ResourceBusy => {
            ObjectStoreError::Retryable { message }
        }
        _ => ObjectStoreError::Permanent { message },
    }
}

/// A key as a relative path: plain segments only (no `..`, no root).
fn key_path(key: &str) -> Result<PathBuf, ObjectStoreError> {
    let plain = !key.contains(['\\', '\0'])
        && key
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    if plain {
        Ok(PathBuf::from(key))
    } else {
        Err(ObjectStoreError::Permanent {
            message: format!("object key {key:?} must be a relative path without `..`"),
        })
    }
}

fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.contains(TMP_MARKER)
}

impl LocalDirStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn write_atomically(path: &Path, body: &[u8]) -> Result<(), ObjectStoreError> {
        let dir = path.parent().ok_or_else(|| ObjectStoreError::Permanent {
            message: format!("object path {} has no directory", path.display()),
        })?;
        std::fs::create_dir_all(dir).map_err(|e| io_err("cannot create directory", dir, e))?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("object");
        let tmp = dir.join(format!(
            ".{name}{TMP_MARKER}{}",
            uuid::Uuid::new_v4().simple()
        ));
        let written = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(body)?;
            file.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_err("cannot write", &tmp, e));
        }
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_err("cannot move into place", path, e)
        })
    }

    /// Keys under `dir` (relative to the root), recursively.
    fn walk(&self, dir: &Path, out: &mut Vec<String>) -> Result<(), ObjectStoreError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("cannot list", dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_err("cannot list", dir, e))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| io_err("cannot stat", &path, e))?;
            if kind.is_dir() {
                self.walk(&path, out)?;
                continue;
            }
            let name = entry.file_name();
            if is_temporary(&name.to_string_lossy()) {
                continue;
            }
            if let Ok(rel) = path.strip_prefix(&self.root) {
                let key: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(key.join("/"));
            }
        }
        Ok(())
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ObjectStoreError> + Send + 'static,
) -> Result<T, ObjectStoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ObjectStoreError::Permanent {
            message: format!("object store task failed: {e}"),
        })?
}

#[async_trait]
impl ObjectStore for LocalDirStore {
    async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        _content_type: &str,
    ) -> Result<(), ObjectStoreError> {
        let path = self.root.join(key_path(key)?);
        blocking(move || Self::write_atomically(&path, &body)).await
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ObjectStoreError> {
        let path = self.root.join(key_path(key)?);
        blocking(move || match std::fs::read(&path) {
            Ok(body) => Ok(Some(body)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("cannot read", &path, e)),
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, ObjectStoreError> {
        // Only the directory part of the prefix narrows the walk.
        let dir = match prefix.rfind('/') {
            Some(i) => self.root.join(key_path(&prefix[..i])?),
            None => self.root.clone(),
        };
        let store = self.clone();
        let prefix = prefix.to_string();
        blocking(move || {
            let mut keys = Vec::new();
            store.walk(&dir, &mut keys)?;
            keys.retain(|k| k.starts_with(&prefix));
            keys.sort();
            Ok(keys)
        })
        .await
    }

    fn locate(&self, key: &str) -> String {
        self.root.join(key).display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn put_then_get_round_trips_and_overwrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalDirStore::new(dir.path());
        assert_eq!(store.get("a/b.jsonl").await.expect("get"), None);
        store
            .put("a/b.jsonl", b"one".to_vec(), "application/x-ndjson")
            .await
            .expect("put");
        store
            .put("a/b.jsonl", b"two".to_vec(), "application/x-ndjson")
            .await
            .expect("put");
        assert_eq!(
            store.get("a/b.jsonl").await.expect("get"),
            Some(b"two".to_vec())
        );
        assert!(dir.path().join("a/b.jsonl").is_file());
    }

    #[tokio::test]
    async fn keys_escaping_the_root_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalDirStore::new(dir.path().join("root"));
        for key in [
            "../evil",
            "a/../../evil",
            "/etc/passwd",
            "",
            "a/./b",
            "a\\b",
        ] {
            let err = store.put(key, b"x".to_vec(), "text/plain").await;
            assert!(
                matches!(err, Err(ObjectStoreError::Permanent { .. })),
                "{key:?}"
            );
            assert!(store.get(key).await.is_err(), "{key:?}");
        }
        assert!(!dir.path().join("evil").exists());
    }

    #[tokio::test]
    async fn list_finds_keys_by_prefix_and_skips_temporary_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalDirStore::new(dir.path());
        for key in [
            "export=vip/dt=2024-01-01/part-1.jsonl",
            "export=vip/dt=2024-01-02/part-2.jsonl",
            "export=vipx/dt=2024-01-01/part-3.jsonl",
        ] {
            store
                .put(key, b"{}".to_vec(), "application/x-ndjson")
                .await
                .expect("put");
        }
        std::fs::write(
            dir.path()
                .join("export=vip/dt=2024-01-01/.part-9.jsonl.tmp-abc"),
            b"half",
        )
        .expect("write");
        assert_eq!(
            store.list("export=vip/").await.expect("list"),
            vec![
                "export=vip/dt=2024-01-01/part-1.jsonl",
                "export=vip/dt=2024-01-02/part-2.jsonl"
            ]
        );
        assert_eq!(store.list("export=vip").await.expect("list").len(), 3);
        assert!(store.list("export=none/").await.expect("list").is_empty());
    }

    #[tokio::test]
    async fn a_write_leaves_no_temporary_file_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalDirStore::new(dir.path());
        store
            .put("x/y.jsonl", vec![b'a'; 100_000], "application/x-ndjson")
            .await
            .expect("put");
        let names: Vec<String> = std::fs::read_dir(dir.path().join("x"))
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["y.jsonl"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_never_sees_half_an_object() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(LocalDirStore::new(dir.path()));
        store
            .put("o.bin", vec![b'a'; 1 << 20], "application/octet-stream")
            .await
            .expect("put");
        let writer = {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..20u8 {
                    let byte = if i % 2 == 0 { b'b' } else { b'a' };
                    store
                        .put("o.bin", vec![byte; 1 << 20], "application/octet-stream")
                        .await
                        .expect("put");
                }
            })
        };
        while !writer.is_finished() {
            let body = store.get("o.bin").await.expect("get").expect("object");
            assert_eq!(body.len(), 1 << 20);
            let first = body.first().copied();
            assert!(body.iter().all(|b| Some(*b) == first), "torn read");
        }
        writer.await.expect("writer");
    }

    #[test]
    fn locate_gives_the_path() {
        let store = LocalDirStore::new("/data/out");
        assert_eq!(store.locate("export=vip/"), "/data/out/export=vip/");
    }
}
