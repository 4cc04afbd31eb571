//! Where the broker is: URL parsing, password redaction, and the list of
//! brokers a client or server may use, tried in turn.

use std::{
    fmt,
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use lapin::uri::{AMQPScheme, AMQPUri, SASLMechanism};

use super::tls::{Tls, TlsOptions};
use crate::Error;

/// The heartbeat interval asked for when the URL does not set one, so a dead
/// peer is noticed in tens of seconds rather than the broker's default 60.
const HEARTBEAT_SECS: u16 = 10;

/// A parsed AMQP URL (`amqp://user:password@host:port/vhost?options`).
///
/// Its [`Display`](fmt::Display) never shows the password, nor the query,
/// so it is safe to put in logs and error messages. A URL without a
/// virtual host, or ending in a bare `/`, means vhost `/` (as Go's and
/// Python's clients read it); without `heartbeat=N` it asks for 10 s, so a
/// dead peer is noticed in tens of seconds rather than the broker's default
/// 60.
///
/// `amqps://` URLs take TLS options in the query, as RabbitMQ's URI query
/// parameters spell them: `cacertfile`, `certfile`, `keyfile`,
/// `server_name_indication`, `verify` and `auth_mechanism=external` (see
/// [`TlsOptions`]), e.g.
/// `amqps://broker.example/%2f?cacertfile=/etc/ca.pem&certfile=/etc/client.pem&keyfile=/etc/client.key&auth_mechanism=external`.
#[derive(Clone)]
pub struct BrokerUrl {
    uri: AMQPUri,
    /// Whether the URL names a user (`user@host`); without one, lapin logs
    /// in as `guest`, or as the client certificate says with EXTERNAL.
    user_given: bool,
    tls: Option<Tls>,
}

impl BrokerUrl {
    /// The URL used when none is given: a local RabbitMQ with the default
    /// `guest` account and virtual host `/`.
    pub const DEFAULT: &'static str = "amqp://guest:guest@127.0.0.1:5672/%2f";

    /// Parses an AMQP URL. Files named by TLS options are not read here,
    /// but when a client connects or a server binds.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] when the text is not an `amqp://` or `amqps://`
    /// URL; [`Error::Tls`] when its TLS options cannot work (a value not
    /// understood, options on an `amqp://` URL, a certificate without its
    /// key).
    pub fn parse(url: &str) -> Result<BrokerUrl, Error> {
        BrokerUrl::parse_with(url, None)
    }

    /// Parses an AMQP URL whose TLS options not given in its query are
    /// `tls`'s.
    pub(crate) fn parse_with(url: &str, tls: Option<&TlsOptions>) -> Result<BrokerUrl, Error> {
        let mut uri = AMQPUri::from_str(url).map_err(|reason| Error::InvalidUrl {
            // The raw text may hold a password: name only its scheme-less shape.
            reason: redact_message(&reason, url),
        })?;
        let own = TlsOptions::from_query(query(url))?;
        let tls = Tls::resolve(
            uri.scheme == AMQPScheme::AMQPS,
            &uri.authority.host,
            &own,
            tls,
        )?;
        // The URL's own auth_mechanism is in `own`, over the builder's.
        if tls.as_ref().is_some_and(Tls::external) {
            uri.query.auth_mechanism = Some(SASLMechanism::External);
        }
        // `amqp://host/` names the empty virtual host by the letter of the URI
        // spec, which no broker has; Go's and Python's clients take it as
        // `/`, and so do we.
        if uri.vhost.is_empty() {
            uri.vhost = "/".to_owned();
        }
        if uri.query.heartbeat.is_none() {
            uri.query.heartbeat = Some(HEARTBEAT_SECS);
        }
        let authority = url
            .split_once("://")
            .map_or(url, |(_, rest)| rest)
            .split(['/', '?'])
            .next()
            .unwrap_or_default();
        Ok(BrokerUrl {
            uri,
            tls,
            user_given: authority.contains('@'),
        })
    }

    /// `host:port`, the part people need to see when a connection fails.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.uri.authority.host, self.uri.authority.port)
    }

    /// The user the connection logs in as, when known: the URL's user
    /// (`guest` when it names none), but with the EXTERNAL mechanism only a
    /// user the URL names, since the broker maps a client certificate to a
    /// user by its own setting.
    pub(crate) fn user(&self) -> Option<&str> {
        let external = matches!(
            self.uri.query.auth_mechanism,
            Some(lapin::uri::SASLMechanism::External)
        );
        let user = self.uri.authority.userinfo.username.as_str();
        (!user.is_empty() && (self.user_given || !external)).then_some(user)
    }

    /// The parsed URI, for connecting.
    pub(crate) fn uri(&self) -> &AMQPUri {
        &self.uri
    }

    /// Its TLS, for an `amqps://` URL.
    pub(crate) fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// Whether the login is EXTERNAL: the client certificate names the
    /// user.
    fn external(&self) -> bool {
        self.uri.query.auth_mechanism == Some(SASLMechanism::External)
    }

    /// The error for a failed connect: a refusal (the login, the virtual
    /// host) when the broker answered and said no, else [`Error::Connect`]
    /// with one short phrase and what to check, without lapin's internal
    /// wording.
    pub(crate) fn connect_error(&self, error: &lapin::Error) -> Error {
        use lapin::ErrorKind;
        let user = &self.uri.authority.userinfo.username;
        let vhost = &self.uri.vhost;
        let endpoint = self.endpoint();
        let reason = match error.kind() {
            ErrorKind::IOError(io) => {
                if let Some(failure) = self
                    .tls
                    .as_ref()
                    .and_then(|tls| tls.io_failure(io, &endpoint, self.external()))
                {
                    return failure;
                }
                match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => {
                        "connection refused; is RabbitMQ running there?".to_owned()
                    }
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
                        format!(
                            "the connection closed before the AMQP handshake ({io}); if that \
                             port speaks TLS, use an amqps:// URL"
                        )
                    }
                    _ => io.to_string(),
                }
            }
            ErrorKind::ProtocolError(amqp) if self.external() && amqp.get_id() == 403 => {
                return Tls::external_refused(self.tls.as_ref(), &endpoint);
            }
            ErrorKind::ProtocolError(amqp) => match amqp.get_id() {
                403 => {
                    return Error::Refused {
                        refusal: crate::Refusal::Login,
                        reason: format!(
                            "the broker at {endpoint} refused the login of user '{user}'; check \
                             the user name and password"
                        ),
                    };
                }
                530 => {
                    return Error::Refused {
                        refusal: crate::Refusal::VirtualHost,
                        reason: format!(
                            "user '{user}' may not use virtual host '{vhost}' at {endpoint}; \
                             check that it exists and the user's permissions on it \
                             (rabbitmqctl list_user_permissions {user})"
                        ),
                    };
                }
                _ => format!("the broker refused the connection: {}", amqp.get_message()),
            },
            ErrorKind::ParsingError(_) | ErrorKind::InvalidProtocolVersion(_) => {
                if self.tls.is_some() {
                    "the peer does not speak AMQP 0-9-1; is that a RabbitMQ port?".to_owned()
                } else {
                    "the peer does not speak AMQP 0-9-1; is that a RabbitMQ port (one that \
                     speaks TLS needs an amqps:// URL)?"
                        .to_owned()
                }
            }
            _ => error.to_string(),
        };
        Error::Connect {
            endpoint,
            reason,
            source: Some(crate::BrokerError::new(error.clone(), false)),
        }
    }
}

impl FromStr for BrokerUrl {
    type Err = Error;

    fn from_str(url: &str) -> Result<BrokerUrl, Error> {
        BrokerUrl::parse(url)
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.uri.scheme {
            AMQPScheme::AMQP => "amqp",
            AMQPScheme::AMQPS => "amqps",
        };
        let vhost = self.uri.vhost.replace('/', "%2f");
        if self.external() {
            // The certificate names the user; the URL's is not sent.
            return write!(
                f,
                "{scheme}://{}/{vhost}?auth_mechanism=external",
                self.endpoint()
            );
        }
        write!(
            f,
            "{scheme}://{}@{}/{vhost}",
            self.uri.authority.userinfo.username,
            self.endpoint()
        )
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerUrl({self})")
    }
}

/// The brokers a client or server may use, tried in turn: one URL, or one
/// per node of a cluster. A (re)connection starts with the broker that
/// worked last.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    urls: Arc<[BrokerUrl]>,
    preferred: Arc<AtomicUsize>,
}

impl Endpoints {
    /// Parses every URL, with `tls`'s options where a URL does not give
    /// its own.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] for an empty list or a bad URL, [`Error::Tls`]
    /// for TLS options that cannot work.
    pub(crate) fn parse(urls: &[String], tls: Option<&TlsOptions>) -> Result<Endpoints, Error> {
        if urls.is_empty() {
            return Err(Error::InvalidUrl {
                reason: "no broker URL given".to_owned(),
            });
        }
        let urls = urls
            .iter()
            .map(|url| BrokerUrl::parse_with(url, tls))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Endpoints {
            urls: urls.into(),
            preferred: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The URLs in the order to try them: the one that worked last first.
    pub(crate) fn in_turn(&self) -> impl Iterator<Item = (usize, &BrokerUrl)> {
        let first = self.preferred.load(Ordering::Relaxed);
        (0..self.urls.len()).map(move |offset| {
            let index = (first + offset) % self.urls.len();
            (index, &self.urls[index])
        })
    }

    /// Remembers that the URL at `index` worked, to try it first next time.
    pub(crate) fn worked(&self, index: usize) {
        self.preferred.store(index, Ordering::Relaxed);
    }

    /// Every URL, for an error that names them all.
    pub(crate) fn all(&self) -> &[BrokerUrl] {
        &self.urls
    }

    /// Reads and checks the files every URL's TLS options name, so a
    /// client or server with a bad one fails before connecting.
    ///
    /// # Errors
    /// [`Error::Tls`] naming the file and what is wrong with it.
    pub(crate) fn check_tls(&self) -> Result<(), Error> {
        for tls in self.urls.iter().filter_map(BrokerUrl::tls) {
            tls.connector()?;
        }
        Ok(())
    }
}

impl fmt::Display for Endpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, url) in self.urls.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{url}")?;
        }
        Ok(())
    }
}

/// The query of `url`: after the first `?`, before any `#`.
fn query(url: &str) -> &str {
    let query = url.split_once('?').map_or("", |(_, query)| query);
    query.split_once('#').map_or(query, |(query, _)| query)
}

/// Removes the raw URL (which may hold a password) from a parser message.
fn redact_message(reason: &str, url: &str) -> String {
    if url.is_empty() {
        return reason.to_owned();
    }
    reason.replace(url, "<url>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_hides_the_password() {
        let url = BrokerUrl::parse("amqp://alice:s3cret@broker.example:5673/prod").unwrap();
        let shown = url.to_string();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(shown, "amqp://alice@broker.example:5673/prod");
        assert!(!format!("{url:?}").contains("s3cret"));
    }

    #[test]
    fn default_url_is_local_guest() {
        let url = BrokerUrl::parse(BrokerUrl::DEFAULT).unwrap();
        assert_eq!(url.endpoint(), "127.0.0.1:5672");
        assert_eq!(url.to_string(), "amqp://guest@127.0.0.1:5672/%2f");
    }

    #[test]
    fn a_trailing_slash_means_the_default_vhost() {
        for url in [
            "amqp://127.0.0.1:5672/",
            "amqp://127.0.0.1:5672",
            "amqp://h/%2f",
        ] {
            assert_eq!(BrokerUrl::parse(url).unwrap().uri.vhost, "/", "{url}");
        }
        assert_eq!(BrokerUrl::parse("amqp://h/prod").unwrap().uri.vhost, "prod");
    }

    #[test]
    fn heartbeat_defaults_but_respects_the_url() {
        let url = BrokerUrl::parse("amqp://127.0.0.1").unwrap();
        assert_eq!(url.uri.query.heartbeat, Some(HEARTBEAT_SECS));
        let url = BrokerUrl::parse("amqp://127.0.0.1?heartbeat=3").unwrap();
        assert_eq!(url.uri.query.heartbeat, Some(3));
    }

    #[test]
    fn several_urls_are_shown_without_passwords() {
        let endpoints = Endpoints::parse(
            &[
                "amqp://u:p1@a:5672/%2f".to_owned(),
                "amqp://u:p2@b:5673/%2f".to_owned(),
            ],
            None,
        )
        .unwrap();
        assert_eq!(
            endpoints.to_string(),
            "amqp://u@a:5672/%2f, amqp://u@b:5673/%2f"
        );
        assert!(Endpoints::parse(&[], None).is_err());
    }

    #[test]
    fn tls_urls_keep_passwords_and_queries_out_of_sight() {
        let url = BrokerUrl::parse(
            "amqps://alice:s3cret@broker.example:5671/prod?cacertfile=/etc/ca.pem\
             &server_name_indication=other.example&heartbeat=5#s3cret",
        )
        .unwrap();
        for shown in [url.to_string(), format!("{url:?}")] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(
                shown.contains("amqps://alice@broker.example:5671/prod"),
                "{shown}"
            );
        }
        assert_eq!(url.tls().unwrap().server_name(), "other.example");
        assert_eq!(url.uri.query.heartbeat, Some(5));
        let external = BrokerUrl::parse(
            "amqps://alice:s3cret@h/%2f?certfile=/c.pem&keyfile=/c.key&auth_mechanism=external",
        )
        .unwrap();
        assert_eq!(
            external.to_string(),
            "amqps://h:5671/%2f?auth_mechanism=external"
        );
    }

    #[test]
    fn tls_options_come_from_the_builder_unless_the_url_says() {
        let given = TlsOptions::new()
            .client_cert("/c.pem", "/c.key")
            .external_auth();
        let url = BrokerUrl::parse_with("amqps://h/%2f", Some(&given)).unwrap();
        assert!(url.external());
        let url =
            BrokerUrl::parse_with("amqps://h/%2f?auth_mechanism=plain", Some(&given)).unwrap();
        assert!(!url.external());
        let error = BrokerUrl::parse_with("amqp://h/%2f", Some(&given)).unwrap_err();
        assert!(error.to_string().contains("use an amqps:// URL"), "{error}");
        assert!(BrokerUrl::parse("amqp://h/%2f").unwrap().tls().is_none());
        assert!(BrokerUrl::parse("amqps://h/%2f").unwrap().tls().is_some());
    }

    #[test]
    fn external_needs_a_certificate_over_tls() {
        for (url, says) in [
            (
                "amqps://h/%2f?auth_mechanism=external",
                "(certfile, keyfile)",
            ),
            (
                "amqp://h/%2f?auth_mechanism=EXTERNAL",
                "use an amqps:// URL",
            ),
        ] {
            let error = BrokerUrl::parse(url).unwrap_err();
            assert!(
                matches!(&error, Error::Tls { reason, .. } if reason.contains(says)),
                "{url}: {error}"
            );
        }
        // Another mechanism is no TLS option.
        assert!(BrokerUrl::parse("amqp://h/%2f?auth_mechanism=plain").is_ok());
        let given = TlsOptions::new().external_auth();
        assert!(BrokerUrl::parse_with("amqps://h/%2f?auth_mechanism=plain", Some(&given)).is_ok());
    }

    #[test]
    fn bad_tls_values_never_echo_the_password() {
        let error = BrokerUrl::parse("amqps://u:topsecret@h/%2f?verify=sometimes").unwrap_err();
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("topsecret"), "{shown}");
        assert!(shown.contains("verify=sometimes"), "{shown}");
        let error = BrokerUrl::parse("amqps://u:p@h/%2f?password=topsecret").unwrap_err();
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("topsecret"), "{shown}");
    }

    #[test]
    fn bad_urls_are_rejected_without_echoing_secrets() {
        let err = BrokerUrl::parse("http://u:topsecret@host").unwrap_err();
        assert!(!err.to_string().contains("topsecret"), "{err}");
        assert!(BrokerUrl::parse("not a url").is_err());
    }
}
