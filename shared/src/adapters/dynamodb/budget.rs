//! DynamoDB adapter of the App API [`RequestBudget`]: one item per
//! workspace in the state table, so every Lambda instance (and every retry
//! of an invocation) of every export draws from the same budget.
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | budget | `BUDGET#<workspace>` | `BUDGET` | `next_us` (N, µs since epoch), `expires_at` (N, s, TTL) |
//!
//! A reservation is at most two atomic UpdateItems and never a read-modify-
//! write loop:
//! 1. `SET next_us = :now + :interval` if the item is absent or
//!    `next_us <= :now` (the budget is idle): the slot is now;
//! 2. otherwise `ADD next_us :interval`, returning the new value: the slot
//!    is the value before the add. ADD is atomic, so concurrent callers get
//!    distinct slots one interval apart.
//!
//! A retried ADD after a timeout may reserve a slot nobody uses: the budget
//! then runs a little under the rate, never over it. The item expires a day
//! after its last use.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_dynamodb::Client;

use super::{PK, SK, TTL_ATTRIBUTE};
use crate::adapters::aws_errors::{retry_counted, SdkFailure};
use crate::customerio::budget::{BudgetError, RequestBudget};

const NEXT: &str = "next_us";
const IDLE_EXPIRY_SECS: i64 = 24 * 3600;

fn classify<E>(what: &str, err: SdkError<E>) -> BudgetError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let f = SdkFailure::of(what, err);
    if f.retryable {
        BudgetError::Retryable(f.message)
    } else {
        BudgetError::Permanent(f.message)
    }
}

fn is_condition_failure<E: ProvideErrorMetadata>(err: &SdkError<E>) -> bool {
    err.code() == Some("ConditionalCheckFailedException")
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The shared budget on the state table.
#[derive(Clone, Debug)]
pub struct DynamoBudget {
    client: Client,
    table: String,
    requests: Arc<AtomicU64>,
}

impl DynamoBudget {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            requests: Arc::new(AtomicU64::new(0)),
        }
    }

    /// On the table `table`, with a client of this SDK configuration.
    pub fn from_sdk(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(Client::new(sdk), table)
    }

    /// DynamoDB requests sent so far (retries included).
    pub fn request_count(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn pk(workspace: &str) -> AttributeValue {
        AttributeValue::S(format!("BUDGET#{workspace}"))
    }

    /// Set `next_us` to `value` if the item is absent or holds less than
    /// `unless_at_least`. `Ok(false)` when the condition refused.
    async fn set_if_below(
        &self,
        what: &'static str,
        workspace: &str,
        value: i64,
        below: i64,
        strictly: bool,
    ) -> Result<bool, BudgetError> {
        let ttl = value / 1_000_000 + IDLE_EXPIRY_SECS;
        let condition = if strictly {
            "attribute_not_exists(#n) OR #n < :below"
        } else {
            "attribute_not_exists(#n) OR #n <= :below"
        };
        retry_counted(
            &self.requests,
            "App API budget",
            what,
            BudgetError::is_retryable,
            || async {
                let res = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .key(PK, Self::pk(workspace))
                    .key(SK, AttributeValue::S("BUDGET".into()))
                    .update_expression("SET #n = :value, #ttl = :ttl")
                    .condition_expression(condition)
                    .expression_attribute_names("#n", NEXT)
                    .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
                    .expression_attribute_values(":value", n(value))
                    .expression_attribute_values(":below", n(below))
                    .expression_attribute_values(":ttl", n(ttl))
                    .send()
                    .await;
                match res {
                    Ok(_) => Ok(true),
                    Err(e) if is_condition_failure(&e) => Ok(false),
                    Err(e) => Err(classify(what, e)),
                }
            },
        )
        .await
    }
}

#[async_trait]
impl RequestBudget for DynamoBudget {
    async fn reserve(
        &self,
        workspace: &str,
        interval_us: i64,
        now_us: i64,
    ) -> Result<i64, BudgetError> {
        let interval = interval_us.max(1);
        let what = "reserve an App API slot";
        if self
            .set_if_below(what, workspace, now_us + interval, now_us, false)
            .await?
        {
            return Ok(now_us);
        }
        let ttl = now_us / 1_000_000 + IDLE_EXPIRY_SECS;
        let out = retry_counted(
            &self.requests,
            "App API budget",
            what,
            BudgetError::is_retryable,
            || async {
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .key(PK, Self::pk(workspace))
                    .key(SK, AttributeValue::S("BUDGET".into()))
                    .update_expression("ADD #n :interval SET #ttl = :ttl")
                    .expression_attribute_names("#n", NEXT)
                    .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
                    .expression_attribute_values(":interval", n(interval))
                    .expression_attribute_values(":ttl", n(ttl))
                    .return_values(ReturnValue::UpdatedNew)
                    .send()
                    .await
                    .map_err(|e| classify(what, e))
            },
        )
        .await?;
        let next = match out.attributes().and_then(|a| a.get(NEXT)) {
            Some(AttributeValue::N(v)) => v.parse::<i64>().map_err(|_| {
                BudgetError::Permanent(format!("{what}: `{NEXT}` is not an integer"))
            })?,
            _ => {
                return Err(BudgetError::Permanent(format!(
                    "{what}: the update returned no `{NEXT}`"
                )))
            }
        };
        Ok(next - interval)
    }

    async fn hold_until(&self, workspace: &str, until_us: i64) -> Result<(), BudgetError> {
        self.set_if_below(
            "hold the App API budget",
            workspace,
            until_us,
            until_us,
            true,
        )
        .await
        .map(|_| ())
    }
}
