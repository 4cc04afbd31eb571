//! The in-memory broker's state and rules: queues, consumers, routing,
//! prefetch, acknowledgements, expiry, and what a closed connection leaves
//! behind. Everything happens under one lock; deliveries go out on
//! unbounded channels, so nothing here waits.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Arc, Mutex, Weak},
};

use tokio::{sync::mpsc, time::Instant};

use super::{Acker, Stored};
use crate::{
    Error,
    transport::{
        Declaration, Delivery, Properties, QueueArgument, QueueState, ReplyAddress, Returned,
    },
};

// The direct reply-to pseudo-queue, and the prefix of the addresses the
// broker rewrites it to.
use crate::transport::DIRECT_REPLY_TO;

pub(super) type Deliveries = mpsc::UnboundedSender<Result<Delivery, Error>>;

#[derive(Debug)]
pub(super) struct State {
    /// This state, for the ackers of its deliveries.
    me: Weak<Mutex<State>>,
    queues: HashMap<String, Queue>,
    connections: HashMap<u64, ConnectionState>,
    channels: HashMap<u64, ChannelState>,
    consumers: HashMap<u64, ConsumerState>,
    /// Direct reply-to tokens and the consumer each belongs to.
    direct: HashMap<String, u64>,
    next_id: u64,
}

#[derive(Debug)]
struct ConnectionState {
    name: String,
}

#[derive(Debug)]
struct ChannelState {
    connection: u64,
    prefetch: u16,
    /// The token of this channel's direct reply-to consumer.
    direct: Option<String>,
    returned: Vec<Returned>,
}

#[derive(Debug)]
struct Queue {
    declaration: Declaration,
    /// The connection an exclusive queue belongs to.
    owner: Option<u64>,
    ready: VecDeque<Ready>,
    /// Active consumers, in the order they are served.
    consumers: Vec<u64>,
    next: usize,
}

/// A message waiting in a queue, or delivered and not yet acknowledged.
#[derive(Debug, Clone)]
struct Ready {
    message: Arc<Stored>,
    redelivered: bool,
    expires: Option<Instant>,
}

#[derive(Debug)]
struct ConsumerState {
    channel: u64,
    connection: u64,
    /// `None` for a direct reply-to consumer.
    queue: Option<String>,
    tag: String,
    no_ack: bool,
    prefetch: u16,
    unacked: BTreeMap<u64, Ready>,
    next_tag: u64,
    /// `None` once cancelled: it gets nothing more, but what it was given
    /// can still be settled.
    deliveries: Option<Deliveries>,
}

impl ConsumerState {
    fn has_room(&self) -> bool {
        self.deliveries.is_some()
            && (self.no_ack
                || self.prefetch == 0
                || self.unacked.len() < usize::from(self.prefetch))
    }
}

/// How a delivery is settled.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Settle {
    Ack,
    Nack { requeue: bool },
}

fn lost(reason: &str) -> Error {
    Error::lost(reason)
}

impl State {
    pub(super) fn new(me: Weak<Mutex<State>>) -> State {
        State {
            me,
            queues: HashMap::new(),
            connections: HashMap::new(),
            channels: HashMap::new(),
            consumers: HashMap::new(),
            direct: HashMap::new(),
            next_id: 0,
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(super) fn connect(&mut self, name: &str) -> u64 {
        let id = self.id();
        self.connections.insert(
            id,
            ConnectionState {
                name: name.to_owned(),
            },
        );
        id
    }

    fn open(&self, connection: u64) -> Result<(), Error> {
        match self.connections.contains_key(&connection) {
            true => Ok(()),
            false => Err(lost("the in-memory broker closed this connection")),
        }
    }

    fn channel_open(&self, channel: u64) -> Result<&ChannelState, Error> {
        let state = self
            .channels
            .get(&channel)
            .ok_or_else(|| lost("the in-memory broker closed this channel"))?;
        self.open(state.connection)?;
        Ok(state)
    }

    pub(super) fn channel(&mut self, connection: u64) -> Result<u64, Error> {
        self.open(connection)?;
        let id = self.id();
        self.channels.insert(
            id,
            ChannelState {
                connection,
                prefetch: 0,
                direct: None,
                returned: Vec::new(),
            },
        );
        Ok(id)
    }

    pub(super) fn probe(&mut self, connection: u64, queue: &str) -> Result<QueueState, Error> {
        self.open(connection)?;
        let now = Instant::now();
        Ok(match self.queues.get_mut(queue) {
            None => QueueState::Missing,
            Some(queue) => {
                queue.expire(now);
                QueueState::Exists {
                    messages: u32::try_from(queue.ready.len()).unwrap_or(u32::MAX),
                    consumers: u32::try_from(queue.consumers.len()).unwrap_or(u32::MAX),
                }
            }
        })
    }

    /// Whether the direct reply-to `address` still has its consumer.
    pub(super) fn reply_address(
        &mut self,
        connection: u64,
        address: &str,
    ) -> Result<ReplyAddress, Error> {
        self.open(connection)?;
        let token = address
            .strip_prefix(&format!("{DIRECT_REPLY_TO}."))
            .unwrap_or_default();
        Ok(match self.direct.contains_key(token) {
            true => ReplyAddress::Live,
            false => ReplyAddress::Gone,
        })
    }

    pub(super) fn declare(
        &mut self,
        channel: u64,
        name: &str,
        declaration: &Declaration,
    ) -> Result<(), Error> {
        let connection = self.channel_open(channel)?.connection;
        if let Some(queue) = self.queues.get(name) {
            if queue.owner.is_some_and(|owner| owner != connection) {
                return Err(locked(name));
            }
            return equivalent(name, &queue.declaration, declaration);
        }
        self.queues.insert(
            name.to_owned(),
            Queue {
                declaration: declaration.clone(),
                owner: declaration.exclusive.then_some(connection),
                ready: VecDeque::new(),
                consumers: Vec::new(),
                next: 0,
            },
        );
        Ok(())
    }

    pub(super) fn prefetch(&mut self, channel: u64, count: u16) -> Result<(), Error> {
        self.channel_open(channel)?;
        if let Some(state) = self.channels.get_mut(&channel) {
            state.prefetch = count;
        }
        Ok(())
    }

    pub(super) fn consume(
        &mut self,
        channel: u64,
        queue: &str,
        no_ack: bool,
        deliveries: Deliveries,
    ) -> Result<(u64, String), Error> {
        let (connection, prefetch) = {
            let state = self.channel_open(channel)?;
            (state.connection, state.prefetch)
        };
        let id = self.id();
        let tag = format!("amq.ctag-memory-{id}");
        if queue == DIRECT_REPLY_TO {
            if !no_ack {
                return Err(Error::Declare {
                    queue: queue.to_owned(),
                    reason: "direct reply-to must be consumed without acknowledgements".to_owned(),
                    source: None,
                });
            }
            let token = uuid::Uuid::new_v4().simple().to_string();
            self.direct.insert(token.clone(), id);
            if let Some(state) = self.channels.get_mut(&channel) {
                state.direct = Some(token);
            }
        } else {
            let Some(state) = self.queues.get_mut(queue) else {
                return Err(Error::Declare {
                    queue: queue.to_owned(),
                    reason: "it does not exist (deleted just now?)".to_owned(),
                    source: None,
                });
            };
            if state.owner.is_some_and(|owner| owner != connection) {
                return Err(locked(queue));
            }
            state.consumers.push(id);
        }
        self.consumers.insert(
            id,
            ConsumerState {
                channel,
                connection,
                queue: (queue != DIRECT_REPLY_TO).then(|| queue.to_owned()),
                tag: tag.clone(),
                no_ack,
                prefetch,
                unacked: BTreeMap::new(),
                next_tag: 0,
                deliveries: Some(deliveries),
            },
        );
        if queue != DIRECT_REPLY_TO {
            self.dispatch(queue);
        }
        Ok((id, tag))
    }

    pub(super) fn cancel(&mut self, channel: u64, tag: &str) {
        let found = self
            .consumers
            .iter()
            .find(|(_, consumer)| consumer.channel == channel && consumer.tag == tag)
            .map(|(id, _)| *id);
        if let Some(id) = found {
            self.stop(id);
        }
    }

    /// Stops deliveries to consumer `id`; what it holds stays unacknowledged.
    pub(super) fn stop(&mut self, id: u64) {
        let Some(consumer) = self.consumers.get_mut(&id) else {
            return;
        };
        consumer.deliveries = None;
        match consumer.queue.clone() {
            Some(queue) => {
                if let Some(queue) = self.queues.get_mut(&queue) {
                    queue.consumers.retain(|c| *c != id);
                }
            }
            None => self.direct.retain(|_, consumer| *consumer != id),
        }
    }

    pub(super) fn publish(
        &mut self,
        channel: u64,
        routing_key: &str,
        mandatory: bool,
        message: Stored,
        expiration_ms: Option<u64>,
    ) -> Result<bool, Error> {
        let direct = self.channel_open(channel)?.direct.clone();
        self.route(
            Some(channel),
            direct,
            routing_key,
            mandatory,
            message,
            expiration_ms,
        )
    }

    /// Routes a message published on `channel` (whose direct reply-to token
    /// is `direct`), or by the test itself (no channel).
    pub(super) fn route(
        &mut self,
        channel: Option<u64>,
        direct: Option<String>,
        routing_key: &str,
        mandatory: bool,
        mut message: Stored,
        expiration_ms: Option<u64>,
    ) -> Result<bool, Error> {
        if message.reply_to.as_deref() == Some(DIRECT_REPLY_TO) {
            // The broker rewrites the pseudo-queue to this channel's address,
            // and refuses it on a channel that does not consume it.
            let Some(token) = direct else {
                return Err(Error::Declare {
                    queue: DIRECT_REPLY_TO.to_owned(),
                    reason: "fast reply consumer does not exist on this channel".to_owned(),
                    source: None,
                });
            };
            message.reply_to = Some(format!("{DIRECT_REPLY_TO}.{token}"));
        }
        let message = Arc::new(message);
        if let Some(token) = routing_key.strip_prefix(&format!("{DIRECT_REPLY_TO}.")) {
            // At most once: a reply to a consumer that is gone is dropped.
            if let Some(consumer) = self.direct.get(token).copied() {
                self.deliver(
                    consumer,
                    Ready {
                        message,
                        redelivered: false,
                        expires: None,
                    },
                );
            }
            return Ok(true);
        }
        let Some(queue) = self.queues.get_mut(routing_key) else {
            if mandatory
                && let Some(channel) = channel
                && let Some(state) = self.channels.get_mut(&channel)
            {
                state.returned.push(Returned {
                    correlation_id: message.correlation_id.clone(),
                    routing_key: routing_key.to_owned(),
                });
            }
            return Ok(false);
        };
        let now = Instant::now();
        queue.ready.push_back(Ready {
            message,
            redelivered: false,
            expires: expiration_ms.map(|ms| now + std::time::Duration::from_millis(ms)),
        });
        self.dispatch(routing_key);
        Ok(true)
    }

    /// Takes the message at the head of `queue`, as `basic.get` with
    /// automatic acknowledgement does.
    pub(super) fn get(&mut self, queue: &str) -> Option<(Arc<Stored>, bool)> {
        let queue = self.queues.get_mut(queue)?;
        queue.expire(Instant::now());
        queue
            .ready
            .pop_front()
            .map(|ready| (ready.message, ready.redelivered))
    }

    pub(super) fn returned(&mut self, channel: u64) -> Result<Vec<Returned>, Error> {
        self.channel_open(channel)?;
        Ok(self
            .channels
            .get_mut(&channel)
            .map(|state| std::mem::take(&mut state.returned))
            .unwrap_or_default())
    }

    pub(super) fn settle(&mut self, consumer: u64, tag: u64, how: Settle) -> Result<(), Error> {
        let Some(state) = self.consumers.get_mut(&consumer) else {
            return Err(lost("the channel of this delivery is closed"));
        };
        let (connection, queue) = (state.connection, state.queue.clone());
        let Some(ready) = state.unacked.remove(&tag) else {
            return Err(Error::Declare {
                queue: queue.unwrap_or_default(),
                reason: format!("unknown delivery tag {tag}"),
                source: None,
            });
        };
        self.open(connection)?;
        if let (Settle::Nack { requeue: true }, Some(queue)) = (how, &queue)
            && let Some(queue) = self.queues.get_mut(queue)
        {
            queue.ready.push_front(Ready {
                redelivered: true,
                ..ready
            });
        }
        if let Some(queue) = queue {
            self.dispatch(&queue);
        }
        Ok(())
    }

    /// Closes connection `id`: its consumers end with `reason`, what they
    /// held goes back to its queues marked redelivered, its exclusive
    /// queues go.
    pub(super) fn close_connection(&mut self, id: u64, reason: &str) {
        if self.connections.remove(&id).is_none() {
            return;
        }
        let consumers: Vec<u64> = self
            .consumers
            .iter()
            .filter(|(_, consumer)| consumer.connection == id)
            .map(|(consumer, _)| *consumer)
            .collect();
        for consumer in consumers {
            self.drop_consumer(consumer, Some(reason));
        }
        self.channels.retain(|_, channel| channel.connection != id);
        self.queues.retain(|_, queue| queue.owner != Some(id));
        let names: Vec<String> = self.queues.keys().cloned().collect();
        for name in names {
            self.dispatch(&name);
        }
    }

    /// Removes consumer `id`, handing back what it held; its stream ends
    /// with `reason` as an error, or quietly.
    fn drop_consumer(&mut self, id: u64, reason: Option<&str>) {
        self.stop(id);
        let Some(consumer) = self.consumers.remove(&id) else {
            return;
        };
        if let Some(queue) = consumer.queue.and_then(|queue| self.queues.get_mut(&queue)) {
            for (_, ready) in consumer.unacked.into_iter().rev() {
                queue.ready.push_front(Ready {
                    redelivered: true,
                    ..ready
                });
            }
        }
        if let (Some(reason), Some(deliveries)) = (reason, consumer.deliveries) {
            let _ = deliveries.send(Err(lost(reason)));
        }
    }

    /// The names of the open connections named `name`.
    pub(super) fn connections_named(&self, name: &str) -> Vec<u64> {
        self.connections
            .iter()
            .filter(|(_, connection)| connection.name == name)
            .map(|(id, _)| *id)
            .collect()
    }

    pub(super) fn queue_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.queues.keys().cloned().collect();
        names.sort();
        names
    }

    pub(super) fn connection_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .connections
            .values()
            .map(|connection| connection.name.clone())
            .collect();
        names.sort();
        names
    }

    pub(super) fn delete_queue(&mut self, name: &str) -> bool {
        let Some(queue) = self.queues.remove(name) else {
            return false;
        };
        // The broker cancels its consumers: their streams end quietly.
        for consumer in queue.consumers {
            if let Some(consumer) = self.consumers.get_mut(&consumer) {
                consumer.deliveries = None;
            }
        }
        true
    }

    pub(super) fn queue(&mut self, name: &str) -> Option<super::QueueInfo> {
        let unacked = self
            .consumers
            .values()
            .filter(|consumer| consumer.queue.as_deref() == Some(name))
            .map(|consumer| consumer.unacked.len())
            .sum::<usize>();
        let queue = self.queues.get_mut(name)?;
        queue.expire(Instant::now());
        Some(super::QueueInfo {
            durable: queue.declaration.durable,
            arguments: queue
                .declaration
                .arguments
                .iter()
                .map(|(key, value)| (key.clone(), value.to_string()))
                .collect(),
            ready: queue.ready.len(),
            unacked,
            consumers: queue.consumers.len(),
        })
    }

    /// Hands the queue's ready messages to its consumers, in turn, as far
    /// as their prefetch allows. Expired messages at the head are dropped.
    fn dispatch(&mut self, name: &str) {
        let now = Instant::now();
        loop {
            let Some(queue) = self.queues.get_mut(name) else {
                return;
            };
            queue.expire(now);
            if queue.ready.is_empty() || queue.consumers.is_empty() {
                return;
            }
            let count = queue.consumers.len();
            let consumers = &self.consumers;
            let Some(turn) = (0..count).map(|i| (queue.next + i) % count).find(|&i| {
                consumers
                    .get(&queue.consumers[i])
                    .is_some_and(ConsumerState::has_room)
            }) else {
                return;
            };
            queue.next = (turn + 1) % count;
            let consumer = queue.consumers[turn];
            let ready = queue.ready.pop_front().expect("not empty");
            self.deliver(consumer, ready);
        }
    }

    /// Sends `ready` to `consumer`, which has room for it.
    fn deliver(&mut self, consumer: u64, ready: Ready) {
        let Some(state) = self.consumers.get_mut(&consumer) else {
            return;
        };
        let Some(deliveries) = state.deliveries.clone() else {
            return;
        };
        state.next_tag += 1;
        let tag = state.next_tag;
        let delivery = Delivery {
            properties: Properties::Memory(Arc::clone(&ready.message)),
            body: ready.message.body.clone(),
            redelivered: ready.redelivered,
            acker: crate::transport::Acker::Memory(Acker::new(
                self.me.clone(),
                consumer,
                tag,
                state.no_ack,
            )),
        };
        if !state.no_ack {
            state.unacked.insert(tag, ready.clone());
        }
        if deliveries.send(Ok(delivery)).is_err() {
            // The consumer's stream is gone (dropped): as lapin does, it is
            // cancelled, and what was just sent goes back.
            state.unacked.remove(&tag);
            if let Some(queue) = state.queue.clone()
                && let Some(queue) = self.queues.get_mut(&queue)
            {
                queue.ready.push_front(ready);
            }
            self.stop(consumer);
        }
    }
}

impl Queue {
    /// Drops expired messages at the head, as RabbitMQ does.
    fn expire(&mut self, now: Instant) {
        while self
            .ready
            .front()
            .is_some_and(|ready| ready.expires.is_some_and(|at| now > at))
        {
            self.ready.pop_front();
        }
    }
}

fn locked(queue: &str) -> Error {
    Error::Refused {
        refusal: crate::Refusal::Locked,
        reason: format!(
            "queue '{queue}' is exclusive to another connection; choose another queue name"
        ),
    }
}

/// Whether declaring `asked` over `existing` is allowed, as RabbitMQ
/// judges it: the same durability and the same `x-…` arguments, a missing
/// `x-queue-type` being `classic`.
fn equivalent(queue: &str, existing: &Declaration, asked: &Declaration) -> Result<(), Error> {
    let mismatch = |setting: &str, existing: String, asked: String| {
        Err(Error::QueueMismatch {
            queue: queue.to_owned(),
            setting: setting.to_owned(),
            existing,
            asked,
        })
    };
    if existing.durable != asked.durable {
        return mismatch(
            "durable",
            existing.durable.to_string(),
            asked.durable.to_string(),
        );
    }
    if existing.auto_delete != asked.auto_delete {
        return mismatch(
            "auto_delete",
            existing.auto_delete.to_string(),
            asked.auto_delete.to_string(),
        );
    }
    let arguments = |declaration: &Declaration| {
        let mut map: BTreeMap<String, QueueArgument> =
            declaration.arguments.iter().cloned().collect();
        map.entry("x-queue-type".to_owned())
            .or_insert_with(|| QueueArgument::Text("classic".to_owned()));
        map
    };
    let (existing, asked) = (arguments(existing), arguments(asked));
    let shown =
        |value: Option<&QueueArgument>| value.map_or("not set".to_owned(), ToString::to_string);
    for key in existing.keys().chain(asked.keys()) {
        if existing.get(key) != asked.get(key) {
            return mismatch(key, shown(existing.get(key)), shown(asked.get(key)));
        }
    }
    Ok(())
}
