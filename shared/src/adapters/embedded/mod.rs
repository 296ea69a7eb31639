//! Embedded adapters: real product code for the local run (one machine, no
//! cloud account), persistent across restarts.
//!
//! Both keep their data in redb files opened through [`open_database`]:
//! every commit is written through to the operating system before it
//! returns, so a killed process loses nothing it acknowledged, but the file
//! is not fsynced. Measured on the project's VMs, an fsync per commit made a
//! webhook's five store calls cost 1.5-8 ms at p50 and over 20 ms at p99;
//! written through they cost ~0.3 ms and a few ms. The price: a power cut or
//! kernel crash may lose recent writes or damage the file. That is the
//! right trade for a local run; on AWS the state lives in DynamoDB.

use std::fs::{File, OpenOptions};
use std::ops::Bound;
use std::path::Path;

use redb::backends::FileBackend;
use redb::{BackendError, Database, StorageBackend};

pub mod queue;
pub mod state;

/// Open (or create) a redb file, creating its directory.
pub(crate) fn open_database(path: &Path) -> Result<Database, redb::Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let backend = WriteThrough::new(file)?;
    Ok(Database::builder().create_with_backend(backend)?)
}

/// A failed redb call, classified once for both stores; each wraps it in
/// its own port error.
pub(crate) struct DbFailure {
    pub message: String,
    pub retryable: bool,
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// Passing IO trouble may clear; corruption, a foreign file or a bug will not.
pub(crate) fn classify_db_error(what: &str, e: impl Into<redb::Error>) -> DbFailure {
    let e: redb::Error = e.into();
    let message = format!("{what}: {e}");
    let retryable = match &e {
        redb::Error::Io(io) => {
            use std::io::ErrorKind::*;
            matches!(
                io.kind(),
                Interrupted | TimedOut | WouldBlock | StorageFull | ResourceBusy
            )
        }
        redb::Error::WouldBlock => true,
        _ => false,
    };
    DbFailure {
        message,
        retryable,
        source: Some(Box::new(e)),
    }
}

/// redb's file backend minus the fsync: writes still reach the OS at once.
#[derive(Debug)]
struct WriteThrough(FileBackend);

impl WriteThrough {
    fn new(file: File) -> Result<Self, redb::Error> {
        Ok(Self(FileBackend::new(file)?))
    }
}

impl StorageBackend for WriteThrough {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        // Every write already went to the OS; see the module doc.
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.0.write(offset, data)
    }
    fn close(&self) -> Result<(), std::io::Error> {
        self.0.close()
    }
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.0.try_lock_shared_range(start, end)
    }
    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.lock_range(start, end)
    }
    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.lock_shared_range(start, end)
    }
    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.unlock_range(start, end)
    }
    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::process::Command;
    use std::sync::Arc;

    use super::queue::{EmbeddedQueue, QueueSettings};
    use super::state::EmbeddedStateStore;
    use crate::domain::model::DeliveryJob;
    use crate::ports::{JobQueue, StateStore, SystemClock};

    const CHILD_DIR: &str = "DATAOUT_TEST_KILLED_CHILD_DIR";

    fn job() -> DeliveryJob {
        DeliveryJob {
            replace: false,
            replace_from: None,
            repair: false,
            job_id: "job-1".into(),
            export: "vip".into(),
            destination: "warehouse".into(),
            run_id: None,
            created_at: 0,
            config_hash: "h".into(),
            attempt: 0,
            ops: vec![],
        }
    }

    fn open(dir: &std::path::Path) -> (EmbeddedStateStore, EmbeddedQueue) {
        let state = EmbeddedStateStore::open(&dir.join("state.redb")).expect("open state");
        let queue = EmbeddedQueue::open(
            &dir.join("queue.redb"),
            QueueSettings::default(),
            Arc::new(SystemClock),
        )
        .expect("open queue");
        (state, queue)
    }

    /// Re-runs this test binary as a child that writes, then aborts (no
    /// destructor, no clean close), and checks what the parent reads back.
    #[test]
    fn acknowledged_writes_survive_a_killed_process() {
        if let Some(dir) = std::env::var_os(CHILD_DIR) {
            let dir = PathBuf::from(dir);
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(async {
                let (state, queue) = open(&dir);
                state
                    .add_counters("intake", &[("webhooks_accepted", 7)])
                    .await
                    .expect("add");
                queue.send("warehouse", &[job()]).await.expect("send");
            });
            std::process::abort();
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = std::env::current_exe().expect("test binary");
        let status = Command::new(exe)
            .args([
                "--exact",
                "adapters::embedded::tests::acknowledged_writes_survive_a_killed_process",
                "--test-threads=1",
                "--quiet",
            ])
            .env(CHILD_DIR, dir.path())
            .status()
            .expect("run child");
        assert!(!status.success(), "the child must die by abort");
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let (state, queue) = open(dir.path());
            let counters = state.get_counters("intake").await.expect("counters");
            assert_eq!(counters.get("webhooks_accepted"), Some(&7));
            let got = queue.receive("warehouse", 10).await.expect("receive");
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].job, job());
        });
    }
}
