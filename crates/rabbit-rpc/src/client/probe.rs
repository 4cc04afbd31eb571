//! "Is anybody there?": asking the broker whether a queue exists and how
//! many consumers it has, for calls that are slow to be answered.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use lapin::{Connection, options::QueueDeclareOptions, types::FieldTable};

/// How long a consumer-count answer is reused.
const PROBE_TTL: Duration = Duration::from_secs(1);

/// What the broker said about a queue.
#[derive(Debug, Clone, Copy)]
pub(super) enum Probe {
    NoQueue,
    Queue { consumers: u32, messages: u32 },
    Unknown,
}

/// Recent answers, so a burst of slow calls asks the broker once.
#[derive(Debug, Default)]
pub(super) struct Probes(tokio::sync::Mutex<HashMap<String, (Instant, Probe)>>);

impl Probes {
    /// Whether `queue` exists and how many consumers it has, reusing an
    /// answer younger than [`PROBE_TTL`].
    pub(super) async fn check(&self, connection: &Connection, queue: &str) -> Probe {
        let mut probes = self.0.lock().await;
        if let Some((at, probe)) = probes.get(queue)
            && at.elapsed() < PROBE_TTL
        {
            return *probe;
        }
        let probe = consumer_count(connection, queue).await;
        probes.insert(queue.to_owned(), (Instant::now(), probe));
        probe
    }
}

/// A passive declare on a throwaway channel (a missing queue closes the
/// channel it is asked on).
async fn consumer_count(connection: &Connection, queue: &str) -> Probe {
    let Ok(channel) = connection.create_channel().await else {
        return Probe::Unknown;
    };
    let result = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    match result {
        Ok(declared) => {
            let _ = channel.close(200, "probe done".into()).await;
            Probe::Queue {
                consumers: declared.consumer_count(),
                messages: declared.message_count(),
            }
        }
        Err(error) => match error.kind() {
            lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 404 => Probe::NoQueue,
            _ => Probe::Unknown,
        },
    }
}
