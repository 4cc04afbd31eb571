//! `rabbit-rpc call`.

use rabbit_rpc::{CallOptions, Client, Error, Reply, ReplyQueue};

use crate::cli::CallArgs;

/// Sends one request, as the tutorial's client does (`text/plain` body), or
/// the `--json` body as `application/json`, and returns the reply.
///
/// # Errors
/// Every way a call can fail; see [`rabbit_rpc::Error`]. `--json` that is
/// not valid JSON is [`Error::InvalidRequest`], found before connecting.
pub async fn call(urls: &[String], args: &CallArgs) -> Result<Reply, Error> {
    let (body, content_type) = match &args.json {
        Some(json) => {
            if let Err(error) = serde_json::from_str::<serde::de::IgnoredAny>(json) {
                return Err(Error::InvalidRequest {
                    reason: format!("--json is not valid JSON: {error}"),
                });
            }
            (json, "application/json")
        }
        None => (&args.body, "text/plain"),
    };
    let client = Client::builder()
        .urls(urls)
        .timeout(args.timeout)
        .reply_queue(reply_queue(args.resilient))
        .connection_name("rabbit-rpc call")
        .connect()
        .await?;
    let options = CallOptions::new().content_type(content_type);
    let reply = client.call_with(&args.queue, body, &options).await;
    let _ = client.close().await;
    reply
}

/// What `call` prints of `reply`: the body as it is; with `--json`, JSON
/// pretty-printed (a reply that is not JSON as it is).
pub fn printed(args: &CallArgs, reply: &Reply) -> Vec<u8> {
    match (&args.json, std::str::from_utf8(reply.body())) {
        (Some(_), Ok(text)) => crate::control::pretty(text).into_bytes(),
        _ => reply.body().to_vec(),
    }
}

/// The reply mode for `--resilient`.
pub fn reply_queue(resilient: bool) -> ReplyQueue {
    if resilient {
        ReplyQueue::Resilient
    } else {
        ReplyQueue::DirectReplyTo
    }
}
