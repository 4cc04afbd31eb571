//! What a failed TLS connection means, in words: the broker's certificate
//! refused here (untrusted, for another name) is [`Error::Connect`]; this
//! client refused by the broker (no certificate where one is required, one
//! it does not trust, an EXTERNAL login naming no user) a refused login.

use lapin::tcp::RustlsConnector;

use super::Tls;
use crate::Error;

impl Tls {
    /// What a TLS failure while connecting to `endpoint` means: the
    /// broker's certificate refused here (untrusted, for another name,
    /// expired) is [`Error::Connect`]; this client refused by the broker
    /// (no certificate where one is required, one it does not trust) is a
    /// refused login. `None` if `error` says neither.
    pub(crate) fn failure(&self, error: &rustls::Error, endpoint: &str) -> Option<Error> {
        use rustls::{AlertDescription, CertificateError};
        let connect = |reason: String| {
            Some(Error::Connect {
                endpoint: endpoint.to_owned(),
                reason: format!("TLS: {reason}"),
                source: Some(crate::BrokerError::new(error.clone(), false)),
            })
        };
        let refused = |reason: String| {
            Some(Error::Refused {
                refusal: crate::Refusal::Login,
                reason: format!("TLS: {reason}"),
            })
        };
        match error {
            rustls::Error::InvalidCertificate(problem) => match problem {
                CertificateError::UnknownIssuer => connect(format!(
                    "the broker's certificate is not signed by a trusted CA ({})",
                    self.trusted()
                )),
                CertificateError::NotValidForNameContext { presented, .. } => connect(format!(
                    "the broker's certificate is for {}, not {} ({})",
                    if presented.is_empty() {
                        "no name".to_owned()
                    } else {
                        presented
                            .iter()
                            .map(|name| bare_name(name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                    self.server_name,
                    self.name_source()
                )),
                CertificateError::NotValidForName => connect(format!(
                    "the broker's certificate is not for {} ({})",
                    self.server_name,
                    self.name_source()
                )),
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    connect("the broker's certificate has expired".to_owned())
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    connect(
                        "the broker's certificate is not valid yet (is this machine's clock \
                         right?)"
                            .to_owned(),
                    )
                }
                _ => connect(format!("the broker's certificate is refused ({error})")),
            },
            rustls::Error::AlertReceived(alert) => match (alert, self.cert_file()) {
                (AlertDescription::CertificateRequired, _)
                | (AlertDescription::HandshakeFailure, None) => refused(
                    "the broker requires a client certificate, and none was given; give one \
                         (certfile and keyfile)"
                        .to_owned(),
                ),
                (
                    AlertDescription::UnknownCA
                    | AlertDescription::BadCertificate
                    | AlertDescription::CertificateUnknown
                    | AlertDescription::UnsupportedCertificate
                    | AlertDescription::CertificateExpired
                    | AlertDescription::CertificateRevoked
                    | AlertDescription::AccessDenied
                    | AlertDescription::HandshakeFailure,
                    Some(cert),
                ) => refused(format!(
                    "the broker does not accept the client certificate in '{}' (it says: {})",
                    cert.display(),
                    alert_name(*alert)
                )),
                _ => connect(format!(
                    "the broker ended the TLS handshake: {}",
                    alert_name(*alert)
                )),
            },
            rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
                connect(
                    "the broker does not answer in TLS; is that an amqps port (plain AMQP is \
                     amqp://)?"
                        .to_owned(),
                )
            }
            _ => None,
        }
    }

    /// What an I/O failure while connecting to `endpoint` over TLS means:
    /// a TLS error inside it (see [`Tls::failure`]), or the connection
    /// closed in or just after the handshake without a word. `None` for
    /// anything else.
    pub(crate) fn io_failure(
        &self,
        io: &std::io::Error,
        endpoint: &str,
        external: bool,
    ) -> Option<Error> {
        if let Some(cause) = tls_cause(io) {
            return self.failure(&cause, endpoint);
        }
        if !closed(io) {
            return None;
        }
        Some(Error::Connect {
            endpoint: endpoint.to_owned(),
            reason: format!(
                "the connection closed during the TLS handshake ({io}); is that an amqps port, \
                 and does the broker accept this client?{}",
                if external {
                    " With auth_mechanism=external: does the broker offer EXTERNAL (plugin \
                     rabbitmq_auth_mechanism_ssl, EXTERNAL among its auth_mechanisms)?"
                } else {
                    ""
                }
            ),
            // Quoted in the reason (an I/O error cannot be shared).
            source: None,
        })
    }

    /// The broker refused an EXTERNAL login (`ACCESS_REFUSED`): the user
    /// the certificate names is unknown or may not log in.
    pub(crate) fn external_refused(tls: Option<&Tls>, endpoint: &str) -> Error {
        let cert = tls
            .and_then(Tls::cert_file)
            .map_or_else(String::new, |path| format!(" in '{}'", path.display()));
        Error::Refused {
            refusal: crate::Refusal::Login,
            reason: format!(
                "the broker at {endpoint} refused the EXTERNAL login with the client \
                 certificate{cert}: it knows no user of the name it takes from the certificate \
                 (its CN, or its whole subject, as its ssl_cert_login_from says), or that user \
                 may not log in (the broker's log names the user it looked for)"
            ),
        }
    }

    /// Why the broker at `host:port` ends a TLS connection, asked again
    /// on a connection of its own: a broker that refuses this client's
    /// certificate (or its absence) says so in an alert, but in TLS 1.3
    /// only after the handshake, by when the AMQP client has written its
    /// first bytes, and a reset can then overtake the alert. This
    /// connection writes nothing after the handshake and reads what the
    /// broker says, within a few seconds. `None` if the broker says
    /// nothing that explains a failure.
    pub(crate) async fn ask_why(
        &self,
        host: &str,
        port: u16,
        connector: RustlsConnector,
    ) -> Option<rustls::Error> {
        let (host, name) = (host.to_owned(), self.server_name.clone());
        tokio::task::spawn_blocking(move || ask_why(&host, port, &name, &connector))
            .await
            .ok()
            .flatten()
    }

    /// Which CAs were trusted, for a message.
    fn trusted(&self) -> String {
        match &self.options.ca_file {
            Some(path) => format!("cacertfile={}", path.display()),
            None => "the system's trusted CAs; name the broker's CA with cacertfile".to_owned(),
        }
    }

    /// Where the expected name came from, for a message.
    fn name_source(&self) -> &'static str {
        if self.options.server_name.is_some() {
            "server_name_indication"
        } else {
            "the URL's host; if the broker's certificate names it otherwise, say that name with \
             server_name_indication"
        }
    }
}

// How long [`Tls::ask_why`] waits for each step.
const ASK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// [`Tls::ask_why`], blocking.
fn ask_why(
    host: &str,
    port: u16,
    name: &str,
    connector: &RustlsConnector,
) -> Option<rustls::Error> {
    use std::{io::Read, net::ToSocketAddrs};
    let address = (host, port).to_socket_addrs().ok()?.next()?;
    let tcp = std::net::TcpStream::connect_timeout(&address, ASK_TIMEOUT).ok()?;
    tcp.set_read_timeout(Some(ASK_TIMEOUT)).ok()?;
    tcp.set_write_timeout(Some(ASK_TIMEOUT)).ok()?;
    let mut stream = match connector
        .connect(name, tcp)
        .map_err(lapin::tcp::HandshakeError::from)
    {
        Ok(stream) => stream,
        Err(lapin::tcp::HandshakeError::Failure(error)) => return tls_cause(&error),
        Err(_) => return None,
    };
    // The broker speaks first only to refuse: an AMQP broker waits for
    // the client's protocol header.
    match stream.read_exact(&mut [0; 1]) {
        Err(error) => tls_cause(&error),
        Ok(()) => None,
    }
}

/// Whether `error` says the peer closed the connection.
pub(crate) fn closed(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::BrokenPipe
    )
}

/// The TLS error inside an I/O error, if that is what it is.
pub(crate) fn tls_cause(error: &std::io::Error) -> Option<rustls::Error> {
    error.get_ref()?.downcast_ref::<rustls::Error>().cloned()
}

/// A name from a certificate as rustls presents it (`DnsName("localhost")`,
/// `IpAddress(127.0.0.1)`), as people write it (`localhost`, `127.0.0.1`).
fn bare_name(presented: &str) -> &str {
    match presented.split_once('(') {
        Some((_, inner)) => inner.strip_suffix(')').unwrap_or(inner).trim_matches('"'),
        None => presented,
    }
}

/// A TLS alert as the standard names it (`unknown_ca`).
fn alert_name(alert: rustls::AlertDescription) -> String {
    // rustls spells them in CamelCase: UnknownCA, CertificateRequired.
    let name = format!("{alert:?}");
    let mut snake = String::new();
    let chars: Vec<char> = name.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
        let prev_lower = i > 0 && chars[i - 1].is_lowercase();
        if c.is_uppercase() && i > 0 && (prev_lower || next_lower) {
            snake.push('_');
        }
        snake.extend(c.to_lowercase());
    }
    snake
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_are_named_as_the_standard_does() {
        use rustls::AlertDescription;
        assert_eq!(alert_name(AlertDescription::UnknownCA), "unknown_ca");
        assert_eq!(
            alert_name(AlertDescription::CertificateRequired),
            "certificate_required"
        );
        assert_eq!(
            alert_name(AlertDescription::HandshakeFailure),
            "handshake_failure"
        );
    }

    #[test]
    fn names_read_as_people_write_them() {
        assert_eq!(bare_name("DnsName(\"localhost\")"), "localhost");
        assert_eq!(bare_name("IpAddress(127.0.0.1)"), "127.0.0.1");
        assert_eq!(bare_name("broker.example"), "broker.example");
    }
}
