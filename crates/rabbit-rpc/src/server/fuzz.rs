//! The server's side of the fuzz targets (see `crate::fuzzing`): what
//! `request.rs` does with a request's properties and body, without a broker.

use std::sync::Arc;

use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{
    admission,
    caller_policy::CallerPolicy,
    context::Context,
    handler::{Handler, Request, typed_fn},
    reply::Answer,
    reply_to::ReplyToPolicy,
};
use crate::{
    Status, protocol, trace,
    transport::{Properties, amqp},
};

/// Arguments of every JSON shape: numbers, text, lists, nesting, options.
#[derive(Deserialize, Serialize)]
struct Args {
    n: u64,
    x: f64,
    name: String,
    tags: Vec<String>,
    next: Option<Box<Args>>,
}

pub(crate) fn fuzz_request(properties: &Properties, body: Vec<u8>) {
    let queue: Arc<str> = Arc::from("fuzz");
    let _span = trace::server_span(&queue, protocol::request_id(properties), properties);
    #[cfg(feature = "opentelemetry")]
    let _ = trace::has_parent(properties);
    if let Some(reply_to) = properties.reply_to() {
        let _ = ReplyToPolicy::default().allows(reply_to);
    }
    let _ = protocol::control(properties);
    let deadline = crate::deadline::Deadline::of_request(properties, Instant::now())
        .map(crate::deadline::Deadline::instant);
    let mut callers = CallerPolicy::default();
    callers.allow(["alice".to_owned()]);
    let _ = callers.check(&queue, properties.user_id());
    let admitted = admission::check_id(properties);
    let context = Context::of_request(&queue, properties, false, deadline);
    let handler = typed_fn(|_context: Context, args: Args| async move { Ok::<_, Status>(args) });
    let result = admitted.and_then(|()| {
        handler
            .call(Request::new(body).with_context(context))
            .now_or_never()
            .expect("a typed handler whose function is ready completes at once")
    });
    let answer = Answer::new(result, 1 << 20);
    amqp::properties(&answer.message(properties))
        .expect("a reply to a request that arrived can be sent");
}
