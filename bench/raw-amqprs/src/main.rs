//! raw-lapin's RPC pair (`bench/raw-lapin`) written with amqprs instead of
//! lapin, for benchmarks only: the same two commands, the same answer, the
//! same queue declaration, prefetch, direct reply-to, channels and
//! current-thread runtime, so that the two differ in the client library only
//! (issue 19's transport gate; amqprs claims far fewer context switches than
//! lapin). No validation, no timeouts, no errors handled.
//!
//! ```text
//! raw-amqprs serve QUEUE [PREFETCH]
//! raw-amqprs bench QUEUE CALLS INFLIGHT BODY
//! ```
//! `bench` prints one JSON line with the same keys as `rabbit-rpc bench --json`
//! and fails unless every reply's body is the answer to its request.
//! `serve` declares QUEUE durable, of the type in env `QUEUE_TYPE` (`classic`,
//! the default, or `quorum`). The broker: env `AMQP_URL`.

use std::{collections::HashMap, time::Instant};

use amqprs::{
    BasicProperties, FieldTable, FieldValue,
    channel::{
        BasicAckArguments, BasicConsumeArguments, BasicPublishArguments, BasicQosArguments,
        QueueDeclareArguments,
    },
    connection::{Connection, OpenConnectionArguments},
};
use hdrhistogram::Histogram;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

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
            "usage: raw-amqprs serve QUEUE [PREFETCH] | raw-amqprs bench QUEUE CALLS INFLIGHT BODY"
                .into(),
        ),
    }
}

/// fib(n) for small n; anything else is echoed back (raw-lapin's answer).
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

/// `amqp://USER:PASS@HOST:PORT/VHOST` (VHOST percent-encoded, `%2f` for `/`):
/// amqprs's own URI parsing keeps `%2f` as it is.
fn connection_arguments(url: &str) -> Result<OpenConnectionArguments> {
    let rest = url
        .strip_prefix("amqp://")
        .ok_or("AMQP_URL must be amqp://")?;
    let (authority, vhost) = rest.split_once('/').unwrap_or((rest, ""));
    let (credentials, address) = authority
        .rsplit_once('@')
        .unwrap_or(("guest:guest", authority));
    let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
    let (host, port) = address.rsplit_once(':').unwrap_or((address, "5672"));
    let vhost = match vhost {
        "" => "/".to_owned(),
        v => v.replace("%2f", "/").replace("%2F", "/"),
    };
    Ok(
        OpenConnectionArguments::new(host, port.parse()?, user, password)
            .virtual_host(&vhost)
            .finish(),
    )
}

async fn serve(url: &str, queue: &str, prefetch: u16) -> Result<()> {
    let connection = Connection::open(&connection_arguments(url)?).await?;
    let requests = connection.open_channel(None).await?;
    let replies = connection.open_channel(None).await?;
    let queue_type = std::env::var("QUEUE_TYPE").unwrap_or_else(|_| "classic".to_owned());
    let mut arguments = FieldTable::new();
    arguments.insert(
        "x-queue-type".try_into()?,
        FieldValue::S(queue_type.as_str().try_into()?),
    );
    requests
        .queue_declare(
            QueueDeclareArguments::durable_client_named(queue)
                .arguments(arguments)
                .finish(),
        )
        .await?;
    requests
        .basic_qos(BasicQosArguments::new(0, prefetch, false))
        .await?;
    let (_, mut consumer) = requests
        .basic_consume_rx(BasicConsumeArguments::new(queue, "").finish())
        .await?;
    eprintln!("raw-amqprs serving {queue}");
    while let Some(delivery) = consumer.recv().await {
        let requests = requests.clone();
        let replies = replies.clone();
        tokio::spawn(async move {
            let Some(tag) = delivery.deliver.map(|d| d.delivery_tag()) else {
                return;
            };
            let properties = delivery.basic_properties.unwrap_or_default();
            if let (Some(reply_to), Some(id)) = (properties.reply_to(), properties.correlation_id())
            {
                let body = answer(&delivery.content.unwrap_or_default());
                let _ = replies
                    .basic_publish(
                        BasicProperties::default().with_correlation_id(id).finish(),
                        body,
                        BasicPublishArguments::new("", reply_to),
                    )
                    .await;
            }
            let _ = requests.basic_ack(BasicAckArguments::new(tag, false)).await;
        });
    }
    Ok(())
}

async fn bench(url: &str, queue: &str, calls: u64, inflight: u64, body: &str) -> Result<()> {
    let expected = answer(body.as_bytes());
    let connection = Connection::open(&connection_arguments(url)?).await?;
    let channel = connection.open_channel(None).await?;
    let (_, mut replies) = channel
        .basic_consume_rx(
            BasicConsumeArguments::new(DIRECT_REPLY_TO, "")
                .manual_ack(false)
                .finish(),
        )
        .await?;
    let mut sent_at: HashMap<String, Instant> = HashMap::new();
    let mut next_id = 0u64;
    let publish = |id: u64| {
        let channel = channel.clone();
        let body = body.as_bytes().to_vec();
        let queue = queue.to_owned();
        tokio::spawn(async move {
            let properties = BasicProperties::default()
                .with_reply_to(DIRECT_REPLY_TO)
                .with_correlation_id(&id.to_string())
                .finish();
            let _ = channel
                .basic_publish(properties, body, BasicPublishArguments::new("", &queue))
                .await;
        });
    };
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let started = Instant::now();
    while next_id < inflight.min(calls) {
        sent_at.insert(next_id.to_string(), Instant::now());
        publish(next_id);
        next_id += 1;
    }
    let mut done = 0u64;
    let mut wrong = 0u64;
    while done < calls {
        let Some(reply) = replies.recv().await else {
            break;
        };
        let Some(id) = reply
            .basic_properties
            .as_ref()
            .and_then(|p| p.correlation_id())
        else {
            continue;
        };
        if let Some(at) = sent_at.remove(id.as_str()) {
            latencies.saturating_record(u64::try_from(at.elapsed().as_micros())?.max(1));
            if reply.content.as_deref().unwrap_or_default() != expected.as_slice() {
                wrong += 1;
            }
            done += 1;
            if next_id < calls {
                sent_at.insert(next_id.to_string(), Instant::now());
                publish(next_id);
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
    let _ = connection.close().await;
    if wrong > 0 {
        return Err(format!("{wrong} replies with a wrong body").into());
    }
    Ok(())
}
