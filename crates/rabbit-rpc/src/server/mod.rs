//! The serving side: consume each procedure's queue, run its handler for
//! each request, publish the reply, then acknowledge; reconnect when the
//! broker goes away; drain on shutdown.
//!
//! - [`builder`]: the procedures and settings;
//! - [`serve`]: the [`Server`], its serve loop, reconnecting and draining;
//! - [`shared`]: what the whole server shares (draining, reply policy,
//!   refusal logs, a session's failure);
//! - [`session`]: one connection's worth of serving;
//! - [`dispatch`]: deliveries to procedures;
//! - [`request`]: one request's life, orchestrated: [`admission`] (taken
//!   or refused), the handler, [`reply`] (published, then settled);
//! - [`running`]: a procedure as the server runs it;
//! - [`handler`], [`context`], [`procedure`]: what users write;
//! - [`queue`], [`reply_to`], [`stats`]: which queue, where replies may go,
//!   what was done;
//! - [`caller_policy`]: who may call, by the broker-validated `user_id`;
//! - [`callers`]: whether a caller is still there, after a lost connection;
//! - [`refusals`]: refused requests in the log, without flooding it;
//! - [`control`], [`about`]: the requests a server answers itself (ping,
//!   describe), and what they say;
//! - [`health`]: whether it takes requests now, for probes.

mod about;
mod admission;
mod builder;
mod caller_policy;
mod callers;
mod context;
mod control;
mod deadline;
mod dispatch;
#[cfg(fuzzing)]
pub(crate) mod fuzz;
mod handler;
mod health;
mod procedure;
mod queue;
mod refusals;
mod reply;
mod reply_to;
mod request;
mod running;
mod serve;
mod session;
mod shared;
mod stats;

pub use builder::ServerBuilder;
pub use context::Context;
pub use handler::{
    BlockingFn, Handler, HandlerFn, Request, Response, TypedFn, blocking_fn, handler_fn, typed_fn,
};
pub use health::{Health, ServerState};
pub use procedure::Procedure;
pub use queue::{QueueOrigin, QueueType};
pub use serve::Server;
pub use stats::ServerStats;
