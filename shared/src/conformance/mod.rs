//! Conformance suites: one per port, run unchanged against every adapter.
//!
//! They live in the library (not behind `cfg(test)`) so the AWS adapters'
//! integration tests, against a moto server, run the very same cases as the
//! embedded adapters' unit tests. Each case takes a fresh adapter and panics
//! with `"<suite>: <case>: <what went wrong>"`; every case is public so a
//! failing one can be run alone.

pub mod budget;
pub mod queue;
pub mod state;

use std::fmt::Display;

/// Fail a case with the suite's message layout.
#[track_caller]
pub(crate) fn fail(suite: &str, case: &str, what: impl Display) -> ! {
    panic!("{suite}: {case}: {what}")
}

/// Fail a case when a port call errs.
pub(crate) trait OrFail<T> {
    fn or_fail(self, suite: &str, case: &str, call: &str) -> T;
}

impl<T, E: Display> OrFail<T> for Result<T, E> {
    #[track_caller]
    fn or_fail(self, suite: &str, case: &str, call: &str) -> T {
        match self {
            Ok(v) => v,
            Err(e) => fail(suite, case, format!("{call} failed: {e}")),
        }
    }
}
