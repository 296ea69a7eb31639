//! S3 adapter of the object store: the warehouse destination's files under
//! `s3://<bucket>/<prefix>/`. Keys given to the port are relative to the
//! prefix, and `list` gives them back the same way.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use aws_sdk_s3::Client;

use async_trait::async_trait;

use crate::adapters::aws_errors::SdkFailure;
use crate::ports::{ObjectStore, ObjectStoreError};

fn classify<E>(what: &str, key: &str, err: SdkError<E>) -> ObjectStoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let f = SdkFailure::of(&format!("{what} `{key}`"), err);
    if f.retryable {
        ObjectStoreError::Retryable { message: f.message }
    } else {
        ObjectStoreError::Permanent { message: f.message }
    }
}

/// The object store on an S3 bucket, under a key prefix.
#[derive(Clone, Debug)]
pub struct S3ObjectStore {
    client: Client,
    bucket: String,
    /// Without leading or trailing slashes; empty for the bucket root.
    prefix: String,
}

impl S3ObjectStore {
    pub fn new(client: Client, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            prefix: prefix.into().trim_matches('/').to_string(),
        }
    }

    /// Create the bucket (tests and local setups; the SAM template does it on
    /// AWS). A bucket we already own is fine.
    pub async fn create_bucket(client: &Client, bucket: &str) -> Result<(), ObjectStoreError> {
        let mut req = client.create_bucket().bucket(bucket);
        // us-east-1 refuses an explicit location constraint.
        if let Some(region) = client.config().region().map(|r| r.as_ref().to_string()) {
            if region != "us-east-1" {
                req = req.create_bucket_configuration(
                    CreateBucketConfiguration::builder()
                        .location_constraint(BucketLocationConstraint::from(region.as_str()))
                        .build(),
                );
            }
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("BucketAlreadyOwnedByYou") => Ok(()),
            Err(e) => Err(classify("create bucket", bucket, e)),
        }
    }

    fn full_key(&self, key: &str) -> String {
        let key = key.trim_start_matches('/');
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    fn relative<'a>(&self, full: &'a str) -> &'a str {
        if self.prefix.is_empty() {
            return full;
        }
        full.strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or(full)
    }
}

#[async_trait]
impl ObjectStore for S3ObjectStore {
    async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), ObjectStoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("put object", key, e))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ObjectStoreError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => {
                return Ok(None)
            }
            Err(e) => return Err(classify("get object", key, e)),
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| ObjectStoreError::Retryable {
                message: format!("get object `{key}`: body cut short: {e}"),
            })?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, ObjectStoreError> {
        let full_prefix = self.full_key(prefix);
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full_prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| classify("list objects", prefix, e))?;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key())
                    .map(|k| self.relative(k).to_string()),
            );
            match out.next_continuation_token() {
                Some(next) if out.is_truncated().unwrap_or(false) => token = Some(next.to_string()),
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn locate(&self, key: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.full_key(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(prefix: &str) -> S3ObjectStore {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .build();
        S3ObjectStore::new(Client::from_conf(config), "bucket", prefix)
    }

    #[test]
    fn locate_names_bucket_prefix_and_key() {
        assert_eq!(
            store("/exports/").locate("a/b.csv"),
            "s3://bucket/exports/a/b.csv"
        );
        assert_eq!(store("").locate("a.csv"), "s3://bucket/a.csv");
    }

    #[test]
    fn listed_keys_are_relative_to_the_prefix() {
        let s = store("exports");
        assert_eq!(s.relative("exports/a/b.csv"), "a/b.csv");
        assert_eq!(s.full_key("a/b.csv"), "exports/a/b.csv");
    }
}
