//! The recording queue: jobs sent to it kept in memory, in order, for a
//! dry run or a test to read back.

use super::*;

#[derive(Default)]
struct Queues {
    /// Every job ever sent, with its queue, in order.
    sent: Vec<(String, DeliveryJob)>,
    ready: HashMap<String, VecDeque<(u32, DeliveryJob)>>,
    in_flight: HashMap<String, BTreeMap<String, (u32, DeliveryJob)>>,
    next_receipt: u64,
}

/// A job queue in memory that records every job sent to it.
#[derive(Default)]
pub struct RecordingQueue {
    inner: Mutex<Queues>,
}

impl std::fmt::Debug for RecordingQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingQueue").finish_non_exhaustive()
    }
}

impl RecordingQueue {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Queues>, QueueError> {
        self.inner
            .lock()
            .map_err(|_| QueueError::permanent("recording queue: lock poisoned"))
    }

    /// Every job sent, with the queue it was sent to, in sending order.
    pub fn sent(&self) -> Result<Vec<(String, DeliveryJob)>, QueueError> {
        Ok(self.lock()?.sent.clone())
    }
}

#[async_trait]
impl JobQueue for RecordingQueue {
    async fn send(&self, queue: &str, jobs: &[DeliveryJob]) -> Result<(), QueueError> {
        let mut g = self.lock()?;
        for job in jobs {
            g.sent.push((queue.to_string(), job.clone()));
            g.ready
                .entry(queue.to_string())
                .or_default()
                .push_back((0, job.clone()));
        }
        Ok(())
    }

    async fn receive(&self, queue: &str, max: usize) -> Result<Vec<ReceivedJob>, QueueError> {
        let mut g = self.lock()?;
        let mut out = Vec::new();
        while out.len() < max {
            let Some((count, job)) = g.ready.get_mut(queue).and_then(VecDeque::pop_front) else {
                break;
            };
            g.next_receipt += 1;
            let receipt = format!("r{}", g.next_receipt);
            out.push(ReceivedJob {
                message_id: job.job_id.clone(),
                receipt: receipt.clone(),
                receive_count: count + 1,
                job: job.clone(),
            });
            g.in_flight
                .entry(queue.to_string())
                .or_default()
                .insert(receipt, (count + 1, job));
        }
        Ok(out)
    }

    async fn ack(&self, queue: &str, receipt: &str) -> Result<(), QueueError> {
        if let Some(f) = self.lock()?.in_flight.get_mut(queue) {
            f.remove(receipt);
        }
        Ok(())
    }

    async fn retry_later(
        &self,
        queue: &str,
        receipt: &str,
        _delay: Duration,
    ) -> Result<(), QueueError> {
        let mut g = self.lock()?;
        let back = g.in_flight.get_mut(queue).and_then(|f| f.remove(receipt));
        if let Some(job) = back {
            g.ready.entry(queue.to_string()).or_default().push_back(job);
        }
        Ok(())
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth, QueueError> {
        let g = self.lock()?;
        Ok(QueueDepth {
            visible: g.ready.get(queue).map_or(0, |q| q.len() as u64),
            in_flight: g.in_flight.get(queue).map_or(0, |q| q.len() as u64),
            dead: 0,
        })
    }

    async fn dead_letters(
        &self,
        _queue: &str,
        _max: usize,
    ) -> Result<Vec<DeliveryJob>, QueueError> {
        Ok(Vec::new())
    }

    async fn redrive(&self, _queue: &str) -> Result<u64, QueueError> {
        Ok(0)
    }
}
