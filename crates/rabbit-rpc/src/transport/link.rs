//! One connection lifecycle, shared by client and server: connect (one
//! broker of several, each within a timeout), set the connection up
//! (declare, consume), and after a loss do it again with backoff until it
//! works or the owner stops; close within a bound.
//!
//! What "set up" means is the owner's: a client consumes its reply address,
//! a server declares and consumes its queues. A setup that fails drops the
//! connection it was given, which closes it, and counts as a failed attempt.

use std::{future::Future, pin::pin, time::Duration};

use tracing::warn;

use super::{
    Connection,
    tls::TlsOptions,
    url::{BrokerUrl, Endpoints},
};
use crate::Error;

/// Where a builder's connections go and under what name: the settings
/// the client's and the server's builders share. Its `Debug` shows the URLs
/// without their passwords.
#[derive(Clone)]
pub(crate) struct LinkSettings {
    pub(crate) urls: Vec<String>,
    #[cfg(feature = "test-util")]
    pub(crate) memory: Option<super::memory::MemoryBroker>,
    pub(crate) name: String,
    pub(crate) connect_timeout: Duration,
    /// TLS options for the URLs that do not give their own.
    pub(crate) tls: Option<TlsOptions>,
}

impl std::fmt::Debug for LinkSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|url| redacted(url)).collect();
        f.debug_struct("LinkSettings")
            .field("urls", &urls)
            .field("name", &self.name)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

/// `url` as it may be shown: parsed, without its password; a URL that does
/// not parse, not at all (it may hold one).
fn redacted(url: &str) -> String {
    BrokerUrl::parse(url).map_or_else(|_| "<an invalid URL>".to_owned(), |url| url.to_string())
}

impl LinkSettings {
    /// The defaults: the local broker, a 5 s connect timeout, and `name`.
    pub(crate) fn new(name: &str) -> LinkSettings {
        LinkSettings {
            urls: vec![BrokerUrl::DEFAULT.to_owned()],
            #[cfg(feature = "test-util")]
            memory: None,
            name: name.to_owned(),
            connect_timeout: Duration::from_secs(5),
            tls: None,
        }
    }

    /// The link these settings describe, its TLS files read and checked.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] for no URL or a bad one, [`Error::Tls`] for
    /// TLS options that cannot work.
    pub(crate) fn link(&self) -> Result<Link, Error> {
        #[cfg(feature = "test-util")]
        if let Some(broker) = &self.memory {
            return Ok(Link::new(
                Target::Memory(broker.clone()),
                self.name.clone(),
                self.connect_timeout,
            ));
        }
        let endpoints = Endpoints::parse(&self.urls, self.tls.as_ref())?;
        endpoints.check_tls()?;
        Ok(Link::new(
            Target::Amqp(endpoints),
            self.name.clone(),
            self.connect_timeout,
        ))
    }
}

/// Where connections go.
#[derive(Debug, Clone)]
enum Target {
    /// RabbitMQ, at one of these URLs.
    Amqp(Endpoints),
    /// The in-memory broker.
    #[cfg(feature = "test-util")]
    Memory(super::memory::MemoryBroker),
}

/// How to reach the broker, and under what name.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    target: Target,
    name: String,
    connect_timeout: Duration,
}

impl Link {
    fn new(target: Target, name: String, connect_timeout: Duration) -> Link {
        Link {
            target,
            name,
            connect_timeout,
        }
    }

    /// The same link, with `suffix` added to the connections' name.
    pub(crate) fn renamed(&self, suffix: &str) -> Link {
        Link::new(
            self.target.clone(),
            format!("{}{suffix}", self.name),
            self.connect_timeout,
        )
    }

    /// Connects once: to the first broker that answers, starting with the
    /// one that worked last.
    ///
    /// # Errors
    /// [`Error::Connect`] naming every broker tried.
    pub(crate) async fn connect(&self) -> Result<Connection, Error> {
        match &self.target {
            Target::Amqp(endpoints) => {
                super::amqp::connect(endpoints, &self.name, self.connect_timeout)
                    .await
                    .map(Connection::Amqp)
            }
            #[cfg(feature = "test-util")]
            Target::Memory(broker) => broker.connect(&self.name).map(Connection::Memory),
        }
    }

    /// Connects and sets up, once.
    ///
    /// # Errors
    /// As [`Link::connect`], or `setup`'s error.
    pub(crate) async fn open<S, Fut>(
        &self,
        setup: impl FnOnce(Connection) -> Fut,
    ) -> Result<S, Error>
    where
        Fut: Future<Output = Result<S, Error>>,
    {
        setup(self.connect().await?).await
    }

    /// Connects and sets up again after a loss, waiting `backoff` between
    /// attempts, logging each failure (for `who`, e.g. "the client") and
    /// telling `failed` about it, until it works. `None` when `stop`
    /// completes first.
    pub(crate) async fn reopen<S, Fut>(
        &self,
        backoff: &mut Backoff,
        who: &str,
        mut setup: impl FnMut(Connection) -> Fut,
        mut failed: impl FnMut(&Error),
        stop: impl Future<Output = ()>,
    ) -> Option<S>
    where
        Fut: Future<Output = Result<S, Error>>,
    {
        let mut stop = pin!(stop);
        loop {
            tokio::select! {
                biased;
                () = &mut stop => return None,
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
            let attempt = async {
                let connection = self.connect().await?;
                setup(connection).await
            };
            tokio::select! {
                biased;
                () = &mut stop => return None,
                opened = attempt => match opened {
                    Ok(session) => return Some(session),
                    Err(error) => {
                        warn!(%error, "{who} could not reconnect yet; retrying");
                        failed(&error);
                    }
                },
            }
        }
    }
}

/// The first wait before reconnecting.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest wait between reconnection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How long a connection must have lasted for its loss to restart the
/// backoff from the shortest wait. A connection that dies sooner (say, on a
/// request lapin cannot parse, delivered again on every connection) keeps
/// the waits growing instead of reconnecting in a tight loop.
pub(crate) const STABLE_CONNECTION: Duration = Duration::from_secs(10);

/// Exponential backoff with jitter between reconnection attempts: 100 ms,
/// doubling up to 5 s, each wait drawn between half and all of that, so a
/// fleet of clients cut off together does not reconnect in lockstep.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    attempts: u32,
}

impl Backoff {
    /// Starts again from the shortest wait, if the connection that was lost
    /// had lasted at least [`STABLE_CONNECTION`].
    pub(crate) fn connection_lasted(&mut self, lasted: Duration) {
        if lasted >= STABLE_CONNECTION {
            self.attempts = 0;
        }
    }

    /// How long to wait before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = BACKOFF_MIN
            .saturating_mul(1 << self.attempts.min(16))
            .min(BACKOFF_MAX);
        self.attempts = self.attempts.saturating_add(1);
        // Randomness without a crate for it: a v4 UUID is 122 random bits.
        let random = (uuid::Uuid::new_v4().as_u128() & 0xffff) as f64 / 65536.0;
        ceiling.mul_f64(0.5 + random / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_password() {
        let mut settings = LinkSettings::new("test");
        settings.urls = vec![
            "amqp://alice:s3cret@broker.example:5673/prod".to_owned(),
            "amqp://bob:hunter2@[not a url".to_owned(),
        ];
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert!(
            shown.contains("amqp://alice@broker.example:5673/prod"),
            "{shown}"
        );
    }

    #[test]
    fn backoff_grows_with_jitter_up_to_a_cap() {
        let mut backoff = Backoff::default();
        let first = backoff.next_delay();
        assert!(
            first >= BACKOFF_MIN / 2 && first <= BACKOFF_MIN,
            "{first:?}"
        );
        let later: Vec<_> = (0..20).map(|_| backoff.next_delay()).collect();
        assert!(later.iter().all(|d| *d <= BACKOFF_MAX), "{later:?}");
        assert!(later.last().unwrap() >= &(BACKOFF_MAX / 2));
    }

    #[test]
    fn only_a_connection_that_lasted_resets_the_backoff() {
        let mut backoff = Backoff::default();
        for _ in 0..10 {
            backoff.next_delay();
        }
        backoff.connection_lasted(Duration::from_millis(50));
        assert!(backoff.next_delay() >= BACKOFF_MAX / 2);
        backoff.connection_lasted(STABLE_CONNECTION);
        assert!(backoff.next_delay() <= BACKOFF_MIN);
    }
}
