//! A raw lapin RPC pair, for benchmarks only: what the tutorial's pattern
//! costs with no library at all, tuned as measured in RABBITMQ-NOTES (direct
//! reply-to, replies on their own channel, never one publish-and-ack at a
//! time, current-thread runtime). No validation, no timeouts, no errors
//! handled: it is the ceiling, not a product.
//!
//! ```text
//! raw-lapin serve QUEUE [PREFETCH]
//! raw-lapin bench QUEUE CALLS INFLIGHT BODY
//! ```
//! `bench` prints one JSON line with the same keys as `rabbit-rpc bench --json`
//! and fails unless every reply's body is the answer to its request.
//! `serve` declares QUEUE durable, of the type in env `QUEUE_TYPE` (`classic`,
//! the default, or `quorum`), as `rabbit-rpc serve --queue-type` does. With
//! env `RAW_BATCH_ACKS` set it acknowledges in batches (`multiple`, up to the
//! highest delivery tag below which every request is answered), to measure
//! what batching would give (`bench/batch_acks.py`).
//!
//! With env `RAW_EXTRAS` (a comma-separated list of `mandatory`,
//! `expiration`, `user_id`, `message_id`, `content_type`) `bench` adds what
//! rabbit-rpc's requests carry beyond the tutorial's: the mandatory flag, a
//! 30 s expiration, the user id (`guest`, or env `RAW_USER`), the
//! correlation id again as message id, `text/plain`; `serve` always repeats a
//! request's content type in its reply, as rabbit-rpc's server does. To
//! measure what each costs the broker (`bench/broker_extras.py`). With env
//! `RAW_ID_PREFIX` every correlation id (and message id) starts with it, to
//! send ids as long as rabbit-rpc's (`8208dd30-` and a hexadecimal counter).

use std::{collections::HashMap, time::Instant};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use lapin::{
    BasicProperties, Connection, ConnectionProperties,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["serve", queue] => runtime.block_on(serve(&url, queue, 256)),
        ["serve", queue, prefetch] => runtime.block_on(serve(&url, queue, prefetch.parse()?)),
        ["bench", queue, calls, inflight, body] => {
            runtime.block_on(bench(&url, queue, calls.parse()?, inflight.parse()?, body))
        }
        _ => Err(
            "usage: raw-lapin serve QUEUE [PREFETCH] | raw-lapin bench QUEUE CALLS INFLIGHT BODY"
                .into(),
        ),
    }
}

/// fib(n) for small n; anything else is echoed back.
fn answer(body: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(body)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
    {
        Some(n) if n <= 93 => {
            let (mut a, mut b) = (0u64, 1u64);
            for _ in 0..n {
                (a, b) = (b, a.wrapping_add(b));
            }
            a.to_string().into_bytes()
        }
        _ => body.to_vec(),
    }
}

async fn serve(url: &str, queue: &str, prefetch: u16) -> Result<()> {
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let requests = connection.create_channel().await?;
    let replies = connection.create_channel().await?;
    let queue_type = std::env::var("QUEUE_TYPE").unwrap_or_else(|_| "classic".to_owned());
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(queue_type.as_str().into()),
    );
    requests
        .queue_declare(queue.into(), QueueDeclareOptions::durable(), arguments)
        .await?;
    requests
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = requests
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    eprintln!("raw-lapin serving {queue}");
    // Answered delivery tags, acknowledged in batches by one task.
    let batch = std::env::var_os("RAW_BATCH_ACKS").is_some();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    if batch {
        let channel = requests.clone();
        tokio::spawn(async move {
            let mut next = 1u64;
            let mut finished = std::collections::BTreeSet::new();
            while let Some(tag) = done_rx.recv().await {
                finished.insert(tag);
                while let Ok(tag) = done_rx.try_recv() {
                    finished.insert(tag);
                }
                let mut last = None;
                while finished.remove(&next) {
                    last = Some(next);
                    next += 1;
                }
                if let Some(last) = last {
                    let _ = channel
                        .basic_ack(last, BasicAckOptions { multiple: true })
                        .await;
                }
            }
        });
    }
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        let replies = replies.clone();
        let done = done_tx.clone();
        tokio::spawn(async move {
            let (Some(reply_to), Some(id)) = (
                delivery.properties.reply_to().clone(),
                delivery.properties.correlation_id().clone(),
            ) else {
                if batch {
                    let _ = done.send(delivery.delivery_tag);
                } else {
                    let _ = delivery.ack(BasicAckOptions::default()).await;
                }
                return;
            };
            let body = answer(&delivery.data);
            let mut properties = BasicProperties::default().with_correlation_id(id);
            if let Some(content_type) = delivery.properties.content_type().clone() {
                properties = properties.with_content_type(content_type);
            }
            let _ = replies
                .basic_publish(
                    "".into(),
                    reply_to,
                    BasicPublishOptions::default(),
                    &body,
                    properties,
                )
                .await;
            if batch {
                let _ = done.send(delivery.delivery_tag);
            } else {
                let _ = delivery.ack(BasicAckOptions::default()).await;
            }
        });
    }
    Ok(())
}

async fn bench(url: &str, queue: &str, calls: u64, inflight: u64, body: &str) -> Result<()> {
    let expected = answer(body.as_bytes());
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    let mut replies = channel
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let mut sent_at: HashMap<String, Instant> = HashMap::new();
    let mut next_id = 0u64;
    let extras = std::env::var("RAW_EXTRAS").unwrap_or_default();
    let extra = |name: &str| extras.split(',').any(|e| e.trim() == name);
    let mandatory = extra("mandatory");
    let expiration = extra("expiration");
    let user =
        extra("user_id").then(|| std::env::var("RAW_USER").unwrap_or_else(|_| "guest".to_owned()));
    let message_id = extra("message_id");
    let content_type = extra("content_type");
    let prefix = std::env::var("RAW_ID_PREFIX").unwrap_or_default();
    let id_of = |n: u64| format!("{prefix}{n}");
    let publish = |id: String| {
        let channel = channel.clone();
        let body = body.as_bytes().to_vec();
        let queue = queue.to_owned();
        let user = user.clone();
        tokio::spawn(async move {
            let mut properties = BasicProperties::default()
                .with_reply_to("amq.rabbitmq.reply-to".into())
                .with_correlation_id(id.as_str().into());
            if message_id {
                properties = properties.with_message_id(id.into());
            }
            if expiration {
                properties = properties.with_expiration("30000".into());
            }
            if let Some(user) = user {
                properties = properties.with_user_id(user.into());
            }
            if content_type {
                properties = properties.with_content_type("text/plain".into());
            }
            let _ = channel
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions {
                        mandatory,
                        ..BasicPublishOptions::default()
                    },
                    &body,
                    properties,
                )
                .await;
        });
    };
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let started = Instant::now();
    while next_id < inflight.min(calls) {
        sent_at.insert(id_of(next_id), Instant::now());
        publish(id_of(next_id));
        next_id += 1;
    }
    let mut done = 0u64;
    let mut wrong = 0u64;
    while done < calls {
        let Some(reply) = replies.next().await else {
            break;
        };
        let reply = reply?;
        let Some(id) = reply.properties.correlation_id() else {
            continue;
        };
        if let Some(at) = sent_at.remove(id.as_str()) {
            latencies.saturating_record(u64::try_from(at.elapsed().as_micros())?.max(1));
            if reply.data != expected {
                wrong += 1;
            }
            done += 1;
            if next_id < calls {
                sent_at.insert(id_of(next_id), Instant::now());
                publish(id_of(next_id));
                next_id += 1;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let ms = |q: f64| latencies.value_at_quantile(q) as f64 / 1000.0;
    let summary = serde_json::json!({
        "queue": queue, "calls": done, "ok": done - wrong, "errors": calls - done + wrong,
        "inflight": inflight, "body_bytes": body.len(), "duration_s": seconds,
        "rps": done as f64 / seconds, "p50_ms": ms(0.5), "p90_ms": ms(0.9),
        "p99_ms": ms(0.99), "p999_ms": ms(0.999), "max_ms": latencies.max() as f64 / 1000.0,
    });
    println!("{summary}");
    let _ = connection.close(200, "done".into()).await;
    if wrong > 0 {
        return Err(format!("{wrong} replies with a wrong body").into());
    }
    Ok(())
}
