//! Proof that the faults fired: each kind counted where it took effect
//! (a proxy answered it, the store or queue wrapper threw it, the worker
//! task ended cancelled, Meta answered 80003, Google minted a new token,
//! SQS moved dead letters back), with a floor when faults are on and zero
//! when they are off. A run whose faults did not fire proves nothing.

use super::*;

/// Every fault count, as observed at its point of effect.
#[derive(Debug, Default)]
pub(super) struct Observed {
    /// Per proxy: (destination, counts).
    pub(super) proxies: Vec<(&'static str, dataout_sim::faults::FaultCounts)>,
    /// DynamoDB's and S3's load shedding, answered below the adapters
    /// (moto only).
    pub(super) aws: Option<dataout_sim::aws_faults::AwsFaultCounts>,
    pub(super) store: wrappers::StoreFaultCounts,
    pub(super) queue: wrappers::QueueFaultCounts,
    /// Worker tasks whose join said they were cancelled.
    pub(super) workers_killed: u64,
    /// Meta answers with error code 80003.
    pub(super) meta_80003: u64,
    /// Tokens Google's authority minted, and the Google destinations built
    /// (each starts with no token: more tokens than builds means refreshes).
    pub(super) google_tokens: u64,
    pub(super) google_clients: u64,
    pub(super) clevertap_unprocessed: u64,
    /// Google requests that ended PARTIAL_SUCCESS or FAILED.
    pub(super) google_failed_requests: u64,
    /// Requests the webhook receiver answered with an injected 503.
    pub(super) hook_outage: u64,
    /// Dead-lettered jobs SQS moved back.
    pub(super) redriven: u64,
}

/// Floors with faults on (sized for the smallest run the test makes:
/// ~250 requests per proxy, ~15,000 DynamoDB requests); zeros with faults
/// off.
pub(super) fn check(faults: bool, o: &Observed, out: &mut Outcome) {
    let mut fail = |what: String| out.mismatches.push(format!("fault proof: {what}"));
    let sum = |f: fn(&dataout_sim::faults::FaultCounts) -> u64| -> u64 {
        o.proxies.iter().map(|(_, c)| f(c)).sum()
    };
    // Traffic went through every proxy, faults or not: a spec that routes
    // around a proxy shows here.
    for (name, c) in &o.proxies {
        if c.total < 20 {
            fail(format!("{name}'s proxy saw {} requests", c.total));
        }
    }
    let aws = o.aws.unwrap_or_default();
    let mut kinds: Vec<(&str, u64, u64)> = vec![
        ("proxied 503", sum(|c| c.server_errors), 5),
        (
            "proxied 500 after applying",
            sum(|c| c.server_errors_after_apply),
            5,
        ),
        ("proxied 429", sum(|c| c.rate_limited), 3),
        ("proxied timeouts", sum(|c| c.timeouts), 1),
        ("store answers lost", o.store.answers_lost, 20),
        ("queue acks lost", o.queue.acks_lost, 3),
        ("queue sends refused", o.queue.sends_refused, 2),
        ("queue send answers lost", o.queue.send_answers_lost, 2),
        ("workers killed", o.workers_killed, 10),
        ("Meta 80003 answers", o.meta_80003, 3),
        ("CleverTap records unprocessed", o.clevertap_unprocessed, 3),
        (
            "Google requests PARTIAL_SUCCESS or FAILED",
            o.google_failed_requests,
            1,
        ),
        ("webhook outage answers", o.hook_outage, 10),
        ("dead letters redriven", o.redriven, 1),
    ];
    if o.aws.is_some() {
        kinds.extend([
            ("DynamoDB throttles", aws.dynamodb_throttled, 20),
            (
                "DynamoDB transactions cancelled",
                aws.transactions_cancelled,
                3,
            ),
            ("S3 SlowDown answers", aws.s3_slow_downs, 1),
            (
                "S3 InternalError after a write",
                aws.s3_errors_after_apply,
                1,
            ),
        ]);
    } else {
        kinds.push(("embedded store throttles", o.store.throttled, 20));
    }
    if o.aws.is_some() && o.store.throttled > 0 {
        fail(format!(
            "the state wrapper throttled {} calls above the DynamoDB adapter",
            o.store.throttled
        ));
    }
    for (what, n, floor) in kinds {
        if faults && n < floor {
            fail(format!("{what}: {n} observed, at least {floor} expected"));
        }
        if !faults && n > 0 {
            fail(format!("{what}: {n} observed with faults off"));
        }
    }
    if faults {
        for (name, c) in &o.proxies {
            let injected =
                c.server_errors + c.server_errors_after_apply + c.rate_limited + c.timeouts;
            if injected < 3 {
                fail(format!("{name}'s proxy injected {injected} faults"));
            }
        }
        // Tokens live 5 s: a Google client that sends for longer mints
        // again. (Counted at Google's token endpoint; a client killed young
        // never needs to, so this is a floor over all, not per client.)
        if o.google_tokens < 5 {
            fail(format!(
                "Google minted {} tokens for {} clients",
                o.google_tokens, o.google_clients
            ));
        }
    }
}
