//! The DynamoDB store's multi-item writes: batches with their unprocessed
//! items retried, an id-keyed record with its time-ordered copy in one
//! transaction, and conditional puts.

use super::*;

impl DynamoStateStore {
    /// BatchWriteItem in chunks of 25, re-sending unprocessed items with
    /// backoff until none are left.
    pub(super) async fn batch_write(
        &self,
        what: &'static str,
        requests: Vec<WriteRequest>,
    ) -> Result<(), StateError> {
        for chunk in requests.chunks(BATCH_WRITE_MAX) {
            let mut pending = chunk.to_vec();
            let mut delays = unprocessed_backoff().build();
            loop {
                let unprocessed = self
                    .retrying(what, || async {
                        self.client
                            .batch_write_item()
                            .request_items(&self.table, pending.clone())
                            .send()
                            .await
                            .map(|out| out.unprocessed_items)
                            .map_err(|e| classify(what, e))
                    })
                    .await?
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
                if unprocessed.is_empty() {
                    break;
                }
                let Some(delay) = delays.next() else {
                    return Err(StateError::retryable(format!(
                        "{what}: {} items still unprocessed after retries",
                        unprocessed.len()
                    )));
                };
                tracing::debug!(
                    operation = what,
                    left = unprocessed.len(),
                    "re-sending unprocessed items"
                );
                pending = unprocessed;
                tokio::time::sleep(delay).await;
            }
        }
        Ok(())
    }

    /// Put an id-keyed record and its time-ordered copy in one transaction,
    /// moving the copy when its sort key changed.
    pub(super) async fn put_indexed(&self, at: Indexed, record: String) -> Result<(), StateError> {
        let what = at.what;
        let build = |e| build_err(what, e);
        for _ in 0..CONTENDED_ATTEMPTS {
            let old = self.get_item(what, &at.id_pk, at.id_sk).await?;
            let old_index = match &old {
                Some(item) => Some((
                    get_s(item, "index_pk", what)?.to_string(),
                    get_s(item, "index_sk", what)?.to_string(),
                )),
                None => None,
            };
            let mut id_item = key(at.id_pk.clone(), at.id_sk);
            id_item.insert("record".into(), s(record.clone()));
            id_item.insert("index_pk".into(), s(at.index_pk.clone()));
            id_item.insert("index_sk".into(), s(at.index_sk.clone()));
            let id_put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(id_item));
            let id_put = match &old_index {
                None => id_put
                    .condition_expression("attribute_not_exists(#pk)")
                    .expression_attribute_names("#pk", PK),
                Some((opk, osk)) => id_put
                    .condition_expression("index_pk = :opk AND index_sk = :osk")
                    .expression_attribute_values(":opk", s(opk.clone()))
                    .expression_attribute_values(":osk", s(osk.clone())),
            };
            let mut index_item = key(at.index_pk.clone(), at.index_sk.clone());
            index_item.insert("record".into(), s(record.clone()));
            let mut actions = vec![
                TransactWriteItem::builder()
                    .put(id_put.build().map_err(build)?)
                    .build(),
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.table)
                            .set_item(Some(index_item))
                            .build()
                            .map_err(build)?,
                    )
                    .build(),
            ];
            if let Some((opk, osk)) =
                old_index.filter(|(p, k)| *p != at.index_pk || *k != at.index_sk)
            {
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(opk, osk)))
                    .build()
                    .map_err(build)?;
                actions.push(TransactWriteItem::builder().delete(delete).build());
            }
            let written = self
                .retrying(what, || async {
                    match self
                        .client
                        .transact_write_items()
                        .set_transact_items(Some(actions.clone()))
                        .send()
                        .await
                    {
                        Ok(_) => Ok(true),
                        Err(e) => {
                            let lost_race = e
                                .as_service_error()
                                .and_then(|se| match se {
                                    aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(tc) => Some(tc),
                                    _ => None,
                                })
                                .is_some_and(|tc| {
                                    tc.cancellation_reasons().is_empty()
                                        || tc
                                            .cancellation_reasons()
                                            .iter()
                                            .any(|r| r.code() == Some("ConditionalCheckFailed"))
                                });
                            if lost_race {
                                Ok(false)
                            } else if e.code() == Some("TransactionCanceledException") {
                                // Cancelled for throttling or a conflict.
                                Err(StateError::Retryable {
                                    message: format!("{what}: {}", describe_sdk_error(&e)),
                                    source: Some(Box::new(e)),
                                })
                            } else {
                                Err(classify(what, e))
                            }
                        }
                    }
                })
                .await?;
            if written {
                return Ok(());
            }
        }
        Err(StateError::retryable(format!(
            "{what}: concurrent writers kept changing the record"
        )))
    }

    pub(super) async fn put_conditional(
        &self,
        what: &'static str,
        item: Item,
        condition: &str,
        names: &[(&str, &str)],
        values: &[(&str, AttributeValue)],
    ) -> Result<bool, StateError> {
        self.retrying(what, || async {
            let mut req = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item.clone()))
                .condition_expression(condition);
            for (k, v) in names {
                req = req.expression_attribute_names(*k, *v);
            }
            for (k, v) in values {
                req = req.expression_attribute_values(*k, v.clone());
            }
            match req.send().await {
                Ok(_) => Ok(true),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
                {
                    Ok(false)
                }
                Err(e) => Err(classify(what, e)),
            }
        })
        .await
    }
}
