//! Adapters: the AWS and embedded implementations of each port.

mod aws_errors;
pub mod dynamodb;
pub mod embedded;
pub mod local_fs;
pub mod overlay;
pub mod s3;
pub mod sqs;
