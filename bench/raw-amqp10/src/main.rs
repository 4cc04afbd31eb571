//! raw-lapin's RPC pair (`bench/raw-lapin`) over AMQP 1.0 with fe2o3-amqp,
//! for benchmarks only (issue 19's transport gate): RabbitMQ 4.x speaks AMQP
//! 1.0 natively on its AMQP port. The same two commands, the same answer, the
//! same current-thread runtime, mirrored as closely as the protocols allow:
//!
//! | raw-lapin (AMQP 0.9.1)                    | raw-amqp10 (AMQP 1.0)                                  |
//! |-------------------------------------------|--------------------------------------------------------|
//! | publish requests without confirms         | requests sent pre-settled (sender settle mode settled) |
//! | correlation-id = the call's number        | message-id = the call's number (a string)              |
//! | reply-to `amq.rabbitmq.reply-to`          | reply-to = the address of a receiving link with a dynamic source and capability `rabbitmq:volatile-queue` (direct reply-to over AMQP 1.0, RabbitMQ 4.2+) |
//! | consume replies with no-ack               | the reply link settled (snd-settle-mode settled)       |
//! | server: prefetch 256, manual acks         | server: link credit 256 (refilled as half is used), deliveries unsettled, accepted after the reply is sent |
//! | server: replies on a second channel       | server: replies on a second session, by one sending link to the anonymous terminus (`to` = the request's reply-to), pre-settled, correlation-id = the request's message-id |
//!
//! ```text
//! raw-amqp10 serve QUEUE [PREFETCH]
//! raw-amqp10 bench QUEUE CALLS INFLIGHT BODY
//! ```
//! `bench` prints one JSON line with the same keys as `rabbit-rpc bench --json`
//! and fails unless every reply's body is the answer to its request.
//! `serve` declares QUEUE durable, of the type in env `QUEUE_TYPE` (`classic`,
//! the default, or `quorum`), with one AMQP 0.9.1 `queue.declare` (amqprs)
//! before it attaches to `/queues/QUEUE`: AMQP 1.0 declares queues through
//! RabbitMQ's HTTP-over-AMQP management API, which is setup, not the path
//! under test. The broker: env `AMQP_URL` (`amqp://USER:PASS@HOST:PORT/%2f`;
//! both protocols on the one port).

use std::{collections::HashMap, time::Instant};

use fe2o3_amqp::{
    Connection, Receiver, Sender, Session,
    link::receiver::CreditMode,
    sasl_profile::SaslProfile,
    types::{
        definitions::{ReceiverSettleMode, SenderSettleMode},
        messaging::{Data, Message, MessageId, Properties, Source, Target, TerminusExpiryPolicy},
        primitives::{Binary, Symbol},
    },
};
use hdrhistogram::Histogram;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5680/%2f".to_owned());
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
            "usage: raw-amqp10 serve QUEUE [PREFETCH] | raw-amqp10 bench QUEUE CALLS INFLIGHT BODY"
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

/// The parts of `amqp://USER:PASS@HOST:PORT/VHOST`: (user, password, host,
/// port, vhost with `%2f` decoded).
fn url_parts(url: &str) -> Result<(&str, &str, &str, u16, String)> {
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
    Ok((user, password, host, port.parse()?, vhost))
}

/// An AMQP 1.0 connection to the broker at `url` (its default virtual host).
async fn connect(url: &str, name: &str) -> Result<fe2o3_amqp::connection::ConnectionHandle<()>> {
    let (user, password, host, port, vhost) = url_parts(url)?;
    if vhost != "/" {
        return Err(format!("raw-amqp10 speaks to the virtual host / only, not {vhost}").into());
    }
    // fe2o3-amqp's own `Connection::open(url)` leaves Nagle's algorithm on;
    // lapin and amqprs turn it off (TCP_NODELAY), and so does this pair.
    let stream = tokio::net::TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    Ok(Connection::builder()
        .container_id(format!("{name}-{}", std::process::id()))
        .hostname(host)
        .sasl_profile(SaslProfile::Plain {
            username: user.to_owned(),
            password: password.to_owned(),
        })
        .open_with_stream(stream)
        .await?)
}

/// QUEUE declared durable, of type `queue_type`, with AMQP 0.9.1 (amqprs).
async fn declare(url: &str, queue: &str, queue_type: &str) -> Result<()> {
    use amqprs::{
        FieldTable, FieldValue,
        channel::QueueDeclareArguments,
        connection::{Connection, OpenConnectionArguments},
    };
    let (user, password, host, port, vhost) = url_parts(url)?;
    let arguments = OpenConnectionArguments::new(host, port, user, password)
        .virtual_host(&vhost)
        .finish();
    let connection = Connection::open(&arguments).await?;
    let channel = connection.open_channel(None).await?;
    let mut table = FieldTable::new();
    table.insert(
        "x-queue-type".try_into()?,
        FieldValue::S(queue_type.try_into()?),
    );
    channel
        .queue_declare(
            QueueDeclareArguments::durable_client_named(queue)
                .arguments(table)
                .finish(),
        )
        .await?;
    channel.close().await?;
    connection.close().await?;
    Ok(())
}

async fn serve(url: &str, queue: &str, prefetch: u32) -> Result<()> {
    let queue_type = std::env::var("QUEUE_TYPE").unwrap_or_else(|_| "classic".to_owned());
    declare(url, queue, &queue_type).await?;
    let mut connection = connect(url, "raw-amqp10-serve").await?;
    let mut requests_session = Session::begin(&mut connection).await?;
    let mut replies_session = Session::begin(&mut connection).await?;
    let mut requests = Receiver::builder()
        .name(format!("requests-{queue}"))
        .source(format!("/queues/{queue}"))
        .receiver_settle_mode(ReceiverSettleMode::First)
        .credit_mode(CreditMode::Auto(prefetch))
        .attach(&mut requests_session)
        .await?;
    // The anonymous terminus: each reply names its destination in `to`.
    let mut replies = Sender::builder()
        .name("replies")
        .target(Target::builder().build())
        .sender_settle_mode(SenderSettleMode::Settled)
        .attach(&mut replies_session)
        .await?;
    eprintln!("raw-amqp10 serving {queue}");
    loop {
        let delivery = requests.recv::<Data>().await?;
        let request = delivery.message();
        let to_and_id = request
            .properties
            .as_ref()
            .and_then(|p| Some((p.reply_to.clone()?, p.message_id.clone()?)));
        if let Some((reply_to, id)) = to_and_id {
            let reply = Message::builder()
                .properties(
                    Properties::builder()
                        .to(reply_to)
                        .correlation_id(id)
                        .build(),
                )
                .data(Binary::from(answer(&delivery.body().0)))
                .build();
            replies.send(reply).await?;
        }
        requests.accept(&delivery).await?;
    }
}

async fn bench(url: &str, queue: &str, calls: u64, inflight: u64, body: &str) -> Result<()> {
    let expected = answer(body.as_bytes());
    let mut connection = connect(url, "raw-amqp10-bench").await?;
    let mut session = Session::begin(&mut connection).await?;
    // Direct reply-to over AMQP 1.0: RabbitMQ names the address of the
    // replies' pseudo-queue in its attach. Credit: twice what can be in
    // flight, refilled as half is used (replies beyond the credit are dropped).
    let reply_source = Source::builder()
        .dynamic(true)
        .expiry_policy(TerminusExpiryPolicy::LinkDetach)
        .capabilities(vec![Symbol::from("rabbitmq:volatile-queue")])
        .build();
    let credit = u32::try_from(inflight.min(calls).max(1) * 2).unwrap_or(u32::MAX);
    let mut replies = Receiver::builder()
        .name("replies")
        .source(reply_source)
        .sender_settle_mode(SenderSettleMode::Settled)
        .receiver_settle_mode(ReceiverSettleMode::First)
        .credit_mode(CreditMode::Auto(credit))
        .attach(&mut session)
        .await?;
    let reply_to = replies
        .source()
        .as_ref()
        .and_then(|s| s.address.clone())
        .ok_or("the broker named no address for the direct reply-to link")?;
    let mut requests = Sender::builder()
        .name("requests")
        .target(format!("/queues/{queue}"))
        .sender_settle_mode(SenderSettleMode::Settled)
        .attach(&mut session)
        .await?;
    // Requests go out from a task of their own, as raw-lapin publishes from
    // tasks of their own, so that sending never holds up the replies.
    let (publish, mut to_publish) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let body_bytes = body.as_bytes().to_vec();
    let publisher = tokio::spawn(async move {
        while let Some(id) = to_publish.recv().await {
            let request = Message::builder()
                .properties(
                    Properties::builder()
                        .message_id(MessageId::String(id.to_string()))
                        .reply_to(reply_to.clone())
                        .build(),
                )
                .data(Binary::from(body_bytes.clone()))
                .build();
            if requests.send(request).await.is_err() {
                break;
            }
        }
        let _ = requests.close().await;
    });
    let mut sent_at: HashMap<String, Instant> = HashMap::new();
    let mut next_id = 0u64;
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let started = Instant::now();
    while next_id < inflight.min(calls) {
        sent_at.insert(next_id.to_string(), Instant::now());
        publish.send(next_id)?;
        next_id += 1;
    }
    let mut done = 0u64;
    let mut wrong = 0u64;
    while done < calls {
        let reply = replies.recv::<Data>().await?;
        // Settled already: this only counts it, to refill the link's credit.
        replies.accept(&reply).await?;
        let id = match reply
            .message()
            .properties
            .as_ref()
            .and_then(|p| p.correlation_id.as_ref())
        {
            Some(MessageId::String(id)) => id.clone(),
            _ => continue,
        };
        if let Some(at) = sent_at.remove(&id) {
            latencies.saturating_record(u64::try_from(at.elapsed().as_micros())?.max(1));
            if reply.body().0.as_slice() != expected.as_slice() {
                wrong += 1;
            }
            done += 1;
            if next_id < calls {
                sent_at.insert(next_id.to_string(), Instant::now());
                publish.send(next_id)?;
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
    drop(publish);
    let _ = publisher.await;
    let _ = replies.close().await;
    let _ = session.end().await;
    let _ = connection.close().await;
    if wrong > 0 {
        return Err(format!("{wrong} replies with a wrong body").into());
    }
    Ok(())
}
