//! Logging setup and redaction.
