//! The `rabbit-rpc` command's building blocks: the fibonacci service and the
//! command implementations, in a library so tests can use them directly.

pub mod bench;
pub mod call;
pub mod cli;
pub mod control;
pub mod exit;
pub mod fib;
pub mod serve;
pub mod telemetry;
