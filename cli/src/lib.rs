//! The `dataout` operator tool as a library: the demo environment (the
//! simulators and the example spec pointed at them) and the terminal
//! reports, shared by the binary and the end-to-end tests.

pub mod check;
pub mod demo;
pub mod dry_run;
pub mod html_report;
pub mod ops;
pub mod preview;
pub mod qa;
pub mod report;
pub mod stack;
pub mod template;
