//! TLS for `amqps://` connections: the options ([`TlsOptions`], from a
//! builder or from the URL's query, spelled as RabbitMQ's URI query
//! parameters), the files they name, and what a failed handshake means in
//! words.
//!
//! The TLS library (rustls, lapin's default) stays in these files: the
//! public API has only paths, names and switches. Here: the options and
//! how they combine; [`files`]: reading them into what makes connections;
//! [`failure`]: what a failed handshake means.

use std::{
    fmt,
    path::{Path, PathBuf},
};

mod failure;
mod files;

pub(crate) use failure::{closed, tls_cause};
use rustls::pki_types::ServerName;

use crate::Error;

/// TLS settings for `amqps://` connections, for
/// [`ClientBuilder::tls`](crate::ClientBuilder::tls) and
/// [`ServerBuilder::tls`](crate::ServerBuilder::tls). The same can be said
/// in a broker URL's query, as RabbitMQ's URI query parameters spell it:
///
/// | here | in the URL |
/// |---|---|
/// | [`ca_file`](Self::ca_file) | `cacertfile=PATH` |
/// | [`client_cert`](Self::client_cert) | `certfile=PATH&keyfile=PATH` |
/// | [`server_name`](Self::server_name) | `server_name_indication=NAME` |
/// | [`external_auth`](Self::external_auth) | `auth_mechanism=external` |
/// | [`insecure_skip_verify`](Self::insecure_skip_verify) | `verify=verify_none` (`verify=verify_peer` is the default) |
///
/// A URL's own parameters win over these, one by one, so a builder can
/// give the CA file for every node of a cluster and one URL another
/// server name. Files are PEM; they are read and checked when the client
/// connects or the server binds (each problem an [`Error::Tls`] naming
/// the file and what is wrong with it), and read again at every
/// reconnection, so renewed certificates are picked up without a restart.
///
/// ```
/// use rabbit_rpc::{Client, TlsOptions};
///
/// let builder = Client::builder()
///     .url("amqps://broker.example:5671/%2f")
///     .tls(
///         TlsOptions::new()
///             .ca_file("/etc/rabbit-rpc/ca.pem")
///             .client_cert("/etc/rabbit-rpc/client.pem", "/etc/rabbit-rpc/client.key")
///             .external_auth(),
///     );
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    server_name: Option<String>,
    /// `Some(false)`: `verify=verify_none`.
    verify: Option<bool>,
    /// `Some(true)`: `auth_mechanism=external`; `Some(false)`: another
    /// mechanism, named in the URL.
    external: Option<bool>,
}

impl TlsOptions {
    /// No options: the broker's certificate is checked against the
    /// system's trusted CAs and the URL's host name, and no client
    /// certificate is presented.
    pub fn new() -> TlsOptions {
        TlsOptions::default()
    }

    /// Trusts the CAs in this PEM file, and only them, to sign the
    /// broker's certificate (`cacertfile`, as RabbitMQ's Erlang client
    /// reads it). Default: the system's trusted CAs.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> TlsOptions {
        self.ca_file = Some(path.into());
        self
    }

    /// Presents this client certificate (PEM, the certificate first, then
    /// any intermediates) with its private key (PEM, unencrypted: PKCS#8,
    /// PKCS#1 or SEC1), for brokers that ask for one (`certfile`,
    /// `keyfile`). Default: none. To log in as the user the certificate
    /// names, add [`external_auth`](Self::external_auth).
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsOptions {
        self.cert_file = Some(cert.into());
        self.key_file = Some(key.into());
        self
    }

    /// The name the broker's certificate must be for, sent as the TLS
    /// server name (`server_name_indication`): for a broker reached by an
    /// address its certificate does not name (an IP address, a load
    /// balancer). Default: the URL's host.
    pub fn server_name(mut self, name: impl Into<String>) -> TlsOptions {
        self.server_name = Some(name.into());
        self
    }

    /// Logs in with the SASL EXTERNAL mechanism (`auth_mechanism=external`):
    /// the broker takes the user name from the client certificate (its CN
    /// or whole subject, as its `ssl_cert_login_from` says; plugin
    /// `rabbitmq_auth_mechanism_ssl`), and the URL's user and password are
    /// not sent. Needs [`client_cert`](Self::client_cert). Default: the
    /// URL's user name and password (PLAIN).
    pub fn external_auth(mut self) -> TlsOptions {
        self.external = Some(true);
        self
    }

    /// **Does not check the broker's certificate at all**
    /// (`verify=verify_none`): anyone between this process and the broker
    /// can then read and change the traffic, passwords included. For tests
    /// against a broker with a throwaway certificate only; every
    /// connection logs a warning saying so. Default: the certificate is
    /// checked.
    pub fn insecure_skip_verify(mut self) -> TlsOptions {
        self.verify = Some(false);
        self
    }

    /// The options of a URL's query (`a=b&c=d`, without the `?`): the TLS
    /// ones of RabbitMQ's URI query parameters, and whether
    /// `auth_mechanism` says EXTERNAL (the AMQP URL parser reads it too,
    /// and checks its value). Others are left to the AMQP URL parser.
    ///
    /// # Errors
    /// [`Error::Tls`] for a value that is not understood, a parameter
    /// given twice, and the parameters of RabbitMQ's Erlang client that
    /// this one does not support (`password`, `depth`). No value of an
    /// unknown parameter is repeated: it may be a secret.
    pub(crate) fn from_query(query: &str) -> Result<TlsOptions, Error> {
        let mut options = TlsOptions::default();
        let mut seen: Vec<String> = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(key).unwrap_or_default();
            let known = matches!(
                key.as_str(),
                "cacertfile"
                    | "certfile"
                    | "keyfile"
                    | "server_name_indication"
                    | "verify"
                    | "auth_mechanism"
            );
            if matches!(key.as_str(), "password" | "depth") {
                return Err(tls_error(unsupported(&key)));
            }
            if !known {
                continue;
            }
            if seen.contains(&key) {
                return Err(tls_error(format!("{key} is given twice in the URL")));
            }
            let value = decode(value)
                .ok_or_else(|| tls_error(format!("{key}: the value is not valid UTF-8")))?;
            if value.is_empty() {
                return Err(tls_error(format!("{key} is empty in the URL")));
            }
            match key.as_str() {
                "cacertfile" => options.ca_file = Some(value.into()),
                "certfile" => options.cert_file = Some(value.into()),
                "keyfile" => options.key_file = Some(value.into()),
                "server_name_indication" if value == "disable" => {
                    return Err(tls_error(
                        "server_name_indication=disable is not supported: the broker's \
                         certificate is always checked against a name; give the name it is for \
                         (server_name_indication=NAME)",
                    ));
                }
                "server_name_indication" => options.server_name = Some(value),
                "auth_mechanism" => {
                    options.external = Some(value.eq_ignore_ascii_case("external"));
                }
                _ => {
                    options.verify = Some(match value.as_str() {
                        "verify_peer" => true,
                        "verify_none" => false,
                        _ => {
                            return Err(tls_error(format!(
                                "verify={value} is not a choice: verify_peer (the default) or \
                                 verify_none"
                            )));
                        }
                    });
                }
            }
            seen.push(key);
        }
        Ok(options)
    }

    /// Whether no option that needs TLS is set.
    fn is_empty(&self) -> bool {
        self.names().is_empty()
    }

    /// These options, with `fallback`'s for those not set here.
    fn or(&self, fallback: &TlsOptions) -> TlsOptions {
        // The certificate and its key go together.
        let (cert_file, key_file) = if self.cert_file.is_some() || self.key_file.is_some() {
            (self.cert_file.clone(), self.key_file.clone())
        } else {
            (fallback.cert_file.clone(), fallback.key_file.clone())
        };
        TlsOptions {
            ca_file: self.ca_file.clone().or_else(|| fallback.ca_file.clone()),
            cert_file,
            key_file,
            server_name: self
                .server_name
                .clone()
                .or_else(|| fallback.server_name.clone()),
            verify: self.verify.or(fallback.verify),
            external: self.external.or(fallback.external),
        }
    }

    /// The option names set, as in a URL, for messages.
    fn names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.ca_file.is_some() {
            names.push("cacertfile");
        }
        if self.cert_file.is_some() {
            names.push("certfile");
        }
        if self.key_file.is_some() {
            names.push("keyfile");
        }
        if self.server_name.is_some() {
            names.push("server_name_indication");
        }
        if self.verify.is_some() {
            names.push("verify");
        }
        if self.external == Some(true) {
            names.push("auth_mechanism=external");
        }
        names
    }
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Paths and names only: nothing here is secret.
        let mut d = f.debug_struct("TlsOptions");
        if let Some(path) = &self.ca_file {
            d.field("ca_file", path);
        }
        if let Some(path) = &self.cert_file {
            d.field("cert_file", path);
        }
        if let Some(path) = &self.key_file {
            d.field("key_file", path);
        }
        if let Some(name) = &self.server_name {
            d.field("server_name", name);
        }
        if self.verify == Some(false) {
            d.field("verify", &"none");
        }
        if self.external == Some(true) {
            d.field("external_auth", &true);
        }
        d.finish()
    }
}

/// The TLS of one broker URL: its options (the URL's over the builder's)
/// and the name its certificate must be for.
#[derive(Debug, Clone)]
pub(crate) struct Tls {
    options: TlsOptions,
    server_name: String,
}

impl Tls {
    /// The TLS of a URL with scheme `amqps` (`tls`) or `amqp`, host `host`,
    /// and its own options `own` over the builder's `given`. `None` for
    /// plain AMQP.
    ///
    /// # Errors
    /// [`Error::Tls`] for options on a plain `amqp://` URL, a certificate
    /// without its key or the other way round, EXTERNAL without a client
    /// certificate, and a server name that cannot be one. No file is read.
    pub(crate) fn resolve(
        tls: bool,
        host: &str,
        own: &TlsOptions,
        given: Option<&TlsOptions>,
    ) -> Result<Option<Tls>, Error> {
        let options = match given {
            Some(given) => own.or(given),
            None => own.clone(),
        };
        if !tls {
            if options.is_empty() {
                return Ok(None);
            }
            return Err(tls_error(format!(
                "{} given for amqp://{host}, which is plain TCP; use an amqps:// URL (port 5671 \
                 by default)",
                options.names().join(", ")
            )));
        }
        match (&options.cert_file, &options.key_file) {
            (Some(_), None) => {
                return Err(tls_error(
                    "certfile needs keyfile, the client certificate's private key",
                ));
            }
            (None, Some(_)) => {
                return Err(tls_error("keyfile needs certfile, the client certificate"));
            }
            (None, None) if options.external == Some(true) => {
                return Err(tls_error(
                    "auth_mechanism=external logs in as the user the client certificate names; \
                     give the certificate and its key (certfile, keyfile)",
                ));
            }
            _ => {}
        }
        let server_name = options
            .server_name
            .clone()
            .unwrap_or_else(|| host.to_owned());
        if ServerName::try_from(server_name.as_str()).is_err() {
            return Err(tls_error(format!(
                "'{server_name}' cannot be a TLS server name (a DNS name or an IP address){}",
                if options.server_name.is_some() {
                    " (server_name_indication)"
                } else {
                    ""
                }
            )));
        }
        Ok(Some(Tls {
            options,
            server_name,
        }))
    }

    /// Whether the login is EXTERNAL (`auth_mechanism=external` in the
    /// URL, or the builder's [`TlsOptions::external_auth`] where the URL
    /// names no mechanism).
    pub(crate) fn external(&self) -> bool {
        self.options.external == Some(true)
    }

    /// The name the broker's certificate must be for.
    pub(crate) fn server_name(&self) -> &str {
        &self.server_name
    }

    /// Whether the broker's certificate goes unchecked.
    pub(crate) fn skips_verification(&self) -> bool {
        self.options.verify == Some(false)
    }

    /// The client certificate's file, if one is presented.
    pub(crate) fn cert_file(&self) -> Option<&Path> {
        self.options.cert_file.as_deref()
    }
}

/// A parameter of RabbitMQ's Erlang client not supported here.
fn unsupported(key: &str) -> String {
    match key {
        "password" => "password (the password of an encrypted keyfile) is not supported; give \
                       the key unencrypted (openssl pkey -in KEY -out PLAIN.key), readable only \
                       by this service"
            .to_owned(),
        _ => format!("{key} is not supported here"),
    }
}

/// Decodes a URL query component (`%2F`, `+` for a space, as form
/// encoding has it); `None` if it is not UTF-8 or has a broken escape.
fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn tls_error(reason: impl Into<String>) -> Error {
    Error::Tls {
        reason: reason.into(),
        source: None,
    }
}

fn tls_error_with(
    reason: impl Into<String>,
    source: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    Error::Tls {
        reason: reason.into(),
        source: Some(Box::new(source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_spells_options_as_rabbitmq_does() {
        let options = TlsOptions::from_query(
            "heartbeat=5&cacertfile=%2Fetc%2Fca.pem&certfile=/c.pem&keyfile=/c.key\
             &server_name_indication=broker.example&verify=verify_peer",
        )
        .unwrap();
        assert_eq!(
            options,
            TlsOptions::new()
                .ca_file("/etc/ca.pem")
                .client_cert("/c.pem", "/c.key")
                .server_name("broker.example")
                .or(&TlsOptions {
                    verify: Some(true),
                    ..TlsOptions::default()
                })
        );
        let none = TlsOptions::from_query("verify=verify_none").unwrap();
        assert_eq!(none, TlsOptions::new().insecure_skip_verify());
        assert_eq!(
            TlsOptions::from_query("heartbeat=5&channel_max=9").unwrap(),
            TlsOptions::new()
        );
    }

    #[test]
    fn bad_query_values_are_one_line_without_secrets() {
        for (query, says) in [
            ("verify=maybe", "verify=maybe is not a choice"),
            ("cacertfile=/a&cacertfile=/b", "cacertfile is given twice"),
            ("cacertfile=", "cacertfile is empty"),
            ("server_name_indication=disable", "is not supported"),
            ("password=hunter2", "password (the password of an encrypted"),
            ("depth=3", "depth is not supported"),
            ("keyfile=%ff", "not valid UTF-8"),
        ] {
            let error = TlsOptions::from_query(query).unwrap_err().to_string();
            assert!(error.contains(says), "{query}: {error}");
            assert!(!error.contains("hunter2"), "{error}");
            assert!(!error.contains('\n'), "{error}");
        }
    }

    #[test]
    fn a_urls_options_win_over_the_builders() {
        let builder = TlsOptions::new()
            .ca_file("/ca.pem")
            .client_cert("/c.pem", "/c.key")
            .server_name("a.example");
        let own = TlsOptions::new().server_name("b.example");
        let tls = Tls::resolve(true, "10.0.0.1", &own, Some(&builder))
            .unwrap()
            .unwrap();
        assert_eq!(tls.server_name(), "b.example");
        assert_eq!(tls.options.ca_file.as_deref(), Some(Path::new("/ca.pem")));
        let tls = Tls::resolve(true, "10.0.0.1", &TlsOptions::new(), Some(&builder))
            .unwrap()
            .unwrap();
        assert_eq!(tls.server_name(), "a.example");
        let tls = Tls::resolve(true, "10.0.0.1", &TlsOptions::new(), None)
            .unwrap()
            .unwrap();
        assert_eq!(tls.server_name(), "10.0.0.1");
    }

    #[test]
    fn options_that_cannot_work_are_refused_before_any_file_is_read() {
        let cases = [
            (
                false,
                TlsOptions::new().ca_file("/ca.pem"),
                "use an amqps:// URL",
            ),
            (
                true,
                TlsOptions {
                    cert_file: Some("/c.pem".into()),
                    ..TlsOptions::default()
                },
                "certfile needs keyfile",
            ),
            (
                true,
                TlsOptions {
                    key_file: Some("/c.key".into()),
                    ..TlsOptions::default()
                },
                "keyfile needs certfile",
            ),
            (
                true,
                TlsOptions::new().external_auth(),
                "give the certificate",
            ),
            (
                true,
                TlsOptions::new().server_name("no such name!"),
                "cannot be a TLS server name",
            ),
        ];
        for (tls, options, says) in cases {
            let error = Tls::resolve(tls, "h", &options, None).unwrap_err();
            assert!(matches!(error, Error::Tls { .. }), "{error:?}");
            assert!(error.to_string().contains(says), "{error}");
        }
        assert!(
            Tls::resolve(false, "h", &TlsOptions::new(), None)
                .unwrap()
                .is_none()
        );
    }
}
