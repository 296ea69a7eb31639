//! Table creation, and the requests every record kind shares: retried
//! calls, single-item reads, queries and pages.

use super::*;

impl DynamoStateStore {
    /// Create the table with the layout the module documents (tests and
    /// local setups; the SAM template does it on AWS). An existing table is
    /// left as it is.
    pub async fn create_table(client: &Client, table: &str) -> Result<(), StateError> {
        let what = "create table";
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| build_err(what, e))
        };
        let schema = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|e| build_err(what, e))
        };
        let created = client
            .create_table()
            .table_name(table)
            .attribute_definitions(attr(PK)?)
            .attribute_definitions(attr(SK)?)
            .key_schema(schema(PK, KeyType::Hash)?)
            .key_schema(schema(SK, KeyType::Range)?)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) => {}
            Err(e) => return Err(classify(what, e)),
        }
        let ttl = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(TTL_ATTRIBUTE)
            .build()
            .map_err(|e| build_err(what, e))?;
        match client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(ttl)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Already enabled on an existing table.
            Err(e) if e.code() == Some("ValidationException") => Ok(()),
            Err(e) => Err(classify("enable TTL", e)),
        }
    }

    /// Run one request with in-adapter retries of transient failures,
    /// counting every attempt.
    pub(super) async fn retrying<T, F, Fut>(
        &self,
        what: &'static str,
        f: F,
    ) -> Result<T, StateError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StateError>>,
    {
        retry_counted(
            &self.requests,
            "state store",
            what,
            StateError::is_retryable,
            f,
        )
        .await
    }

    pub(super) async fn get_item(
        &self,
        what: &'static str,
        pk: &str,
        sk: &str,
    ) -> Result<Option<Item>, StateError> {
        self.retrying(what, || async {
            self.client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(key(pk, sk)))
                .consistent_read(true)
                .send()
                .await
                .map(|out| out.item)
                .map_err(|e| classify(what, e))
        })
        .await
    }

    /// One Query page of a partition, ascending or descending from `start`.
    pub(super) async fn query(
        &self,
        what: &'static str,
        pk: &str,
        start: Option<Item>,
        limit: Option<usize>,
        forward: bool,
    ) -> Result<(Vec<Item>, Option<Item>), StateError> {
        self.retrying(what, || async {
            self.client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true)
                .scan_index_forward(forward)
                .set_limit(limit.map(limit_i32))
                .set_exclusive_start_key(start.clone())
                .send()
                .await
                .map(|out| (out.items.unwrap_or_default(), out.last_evaluated_key))
                .map_err(|e| classify(what, e))
        })
        .await
    }

    /// A page of `limit` items of a partition in key order. Asks for one
    /// more than needed so the last page says it is the last.
    pub(super) async fn page(
        &self,
        what: &'static str,
        pk: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<Item>, Option<String>), StateError> {
        let limit = limit.max(1);
        let mut start = match cursor {
            Some(c) => Some(key(pk, decode_cursor(&c)?)),
            None => None,
        };
        let mut items = Vec::new();
        loop {
            let want = limit + 1 - items.len();
            let (got, last) = self.query(what, pk, start.take(), Some(want), true).await?;
            items.extend(got);
            match last {
                Some(last) if items.len() <= limit => start = Some(last),
                _ => break,
            }
        }
        let next = if items.len() > limit {
            items.truncate(limit);
            match items.last() {
                Some(last) => Some(encode_cursor(get_s(last, SK, what)?)),
                None => None,
            }
        } else {
            None
        };
        Ok((items, next))
    }

    /// The newest `limit` items of a time-ordered partition.
    pub(super) async fn newest(
        &self,
        what: &'static str,
        pk: &str,
        limit: usize,
    ) -> Result<Vec<Item>, StateError> {
        let mut items = Vec::new();
        let mut start = None;
        while items.len() < limit {
            let (got, last) = self
                .query(what, pk, start.take(), Some(limit - items.len()), false)
                .await?;
            items.extend(got);
            match last {
                Some(last) => start = Some(last),
                None => break,
            }
        }
        items.truncate(limit);
        Ok(items)
    }
}
