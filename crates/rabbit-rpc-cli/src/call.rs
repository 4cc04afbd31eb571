//! `rabbit-rpc call`.

use rabbit_rpc::{CallOptions, Client, Error, Reply, ReplyQueue};

use crate::cli::CallArgs;

/// Sends one request, as the tutorial's client does (`text/plain` body), and
/// returns the reply.
///
/// # Errors
/// Every way a call can fail; see [`rabbit_rpc::Error`].
pub async fn call(urls: &[String], args: &CallArgs) -> Result<Reply, Error> {
    let client = Client::builder()
        .urls(urls)
        .timeout(args.timeout)
        .reply_queue(reply_queue(args.resilient))
        .connection_name("rabbit-rpc call")
        .connect()
        .await?;
    let options = CallOptions::new().content_type("text/plain");
    let reply = client.call_with(&args.queue, &args.body, &options).await;
    let _ = client.close().await;
    reply
}

/// The reply mode for `--resilient`.
pub fn reply_queue(resilient: bool) -> ReplyQueue {
    if resilient {
        ReplyQueue::Resilient
    } else {
        ReplyQueue::DirectReplyTo
    }
}
