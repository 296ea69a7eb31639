//! Where the scenario keeps state, queues and the warehouse: moto (with
//! DynamoDB and S3 behind the load-shedding proxy) or the embedded
//! adapters.

use super::*;
use dataout::adapters::embedded::queue::{EmbeddedQueue, QueueSettings};
use dataout::adapters::embedded::state::EmbeddedStateStore;
use dataout::adapters::local_fs::LocalDirStore;

/// Where state, the queues and the warehouse live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// DynamoDB, SQS and S3 on moto, DynamoDB and S3 behind a proxy that
    /// sheds load as they do.
    Moto,
    /// The embedded adapters (redb files, a local directory): the same
    /// ports, far faster than moto, for runs of 100,000 changes. The state
    /// wrapper throttles instead of DynamoDB.
    Embedded,
}

/// The scenario's state store, queues and warehouse.
pub(super) struct Adapters {
    pub(super) state: Arc<dyn StateStore>,
    pub(super) queue: Arc<dyn JobQueue>,
    pub(super) warehouse: Arc<dyn ObjectStore>,
    /// The load-shedding proxy in front of DynamoDB and S3 (moto only).
    pub(super) aws: Option<Arc<dataout_sim::aws_faults::AwsFaultProxyState>>,
    /// What must live as long as the run: the proxy, or the files.
    pub(super) _files: Box<dyn std::any::Any + Send>,
}

pub(super) async fn adapters(scale: &Scale) -> Result<Adapters> {
    if scale.backend == Backend::Embedded {
        // On tmpfs where there is one: redb syncs every commit, and the
        // run is about the pipeline, not the disk.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm)?
        } else {
            tempfile::tempdir()?
        };
        let state = EmbeddedStateStore::open(&dir.path().join("state.redb"))?;
        let queue = EmbeddedQueue::open(
            &dir.path().join("queue.redb"),
            QueueSettings {
                visibility_timeout: VISIBILITY,
                max_receives: MAX_ATTEMPTS,
            },
            Arc::new(SystemClock),
        )?;
        for d in DESTINATIONS {
            queue.set_queue_settings(
                d,
                QueueSettings {
                    visibility_timeout: VISIBILITY,
                    max_receives: attempts_for(d),
                },
            );
        }
        return Ok(Adapters {
            state: Arc::new(state),
            queue: Arc::new(queue),
            warehouse: Arc::new(LocalDirStore::new(dir.path().join("warehouse"))),
            aws: None,
            _files: Box::new(dir),
        });
    }
    let sdk = test_sdk_config().await;
    // DynamoDB and S3 through a proxy that sheds load as they do (below
    // the adapters, so the SDK's and the adapters' retries run); the table
    // and bucket are made directly.
    let (aws_proxy, aws_faults) = dataout_sim::aws_faults::start(
        &crate::endpoint(),
        if scale.faults {
            AwsFaultPlan {
                dynamodb_throttled: 0.01,
                transaction_throttled: 0.02,
                s3_slow_down: 0.05,
                s3_error_after_apply: 0.05,
                seed: scale.seed + 6,
            }
        } else {
            AwsFaultPlan::default()
        },
    )
    .await?;
    if scale.faults {
        // The warehouse makes few PUTs at test size: make sure both S3
        // faults meet it.
        aws_faults.fail_next_s3_puts(1, 1);
    }
    let shedding = sdk_config_at(&aws_proxy.base_url).await;
    let table = unique("dataout-faults");
    DynamoStateStore::create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table).await?;
    let dynamo = aws_sdk_dynamodb::Client::new(&shedding);
    let dynamo_store: Arc<dyn StateStore> = Arc::new(DynamoStateStore::new(dynamo, table));
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let names: Vec<String> = DESTINATIONS.iter().map(|d| unique(d)).collect();
    let mut urls = BTreeMap::new();
    for (d, n) in DESTINATIONS.iter().zip(&names) {
        urls.extend(
            SqsJobQueue::create_queues(&sqs, &[n.as_str()], VISIBILITY, attempts_for(d)).await?,
        );
    }
    let queues: BTreeMap<String, _> = DESTINATIONS
        .iter()
        .zip(&names)
        .map(|(d, n)| (d.to_string(), urls[n].clone()))
        .collect();
    // Short polls: moto's long poll spins its Python thread for the whole
    // wait, starving every other request (SQS itself does not).
    let sqs_queue: Arc<dyn JobQueue> =
        Arc::new(SqsJobQueue::new(sqs, queues).with_receive_wait(Duration::ZERO));
    let s3_at = |config: &aws_config::SdkConfig| {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(config)
                .force_path_style(true)
                .build(),
        )
    };
    let bucket = unique("fault-suite");
    S3ObjectStore::create_bucket(&s3_at(&sdk), &bucket).await?;
    let s3 = s3_at(&shedding);
    let warehouse: Arc<dyn ObjectStore> = Arc::new(S3ObjectStore::new(s3, bucket, "warehouse"));

    Ok(Adapters {
        state: dynamo_store,
        queue: sqs_queue,
        warehouse,
        aws: Some(aws_faults),
        _files: Box::new(aws_proxy),
    })
}
