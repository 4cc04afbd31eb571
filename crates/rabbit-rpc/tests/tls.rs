//! TLS against the test bed of `scripts/tls.sh`: two RabbitMQ 3.10 nodes
//! beside the default broker that speak AMQP only over TLS, tls1 on
//! 127.0.0.1:5711 (a client certificate checked if presented) and tls2 on
//! 127.0.0.1:5712 (a client certificate required), with certificates the
//! script makes: a CA, the nodes' certificate for localhost and 127.0.0.1,
//! a client certificate for the user `rabbit-rpc-tls-client` (a user on
//! tls2, not on tls1), and a second CA that nothing trusts with a
//! certificate of its own. These tests bring
//! the bed up if it is not (about 12 s; a second when it is) and leave it
//! running: `scripts/test.sh` takes it down at the end if it started it,
//! or by hand `scripts/tls.sh down`. Whatever broker `AMQP_URL` names, the
//! bed is RabbitMQ 3.10, driven with the host's rabbitmqctl
//! (`scripts/tls.sh ctl`).

#![cfg(unix)]

mod common;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use rabbit_rpc::{Client, Error, Refusal, Server, TlsOptions};
use tokio::sync::OnceCell;

/// The bed's nodes: tls1 checks a client certificate if one is
/// presented, tls2 requires one.
const TLS1: u16 = 5711;
const TLS2: u16 = 5712;

/// The client certificate's user.
const CERT_USER: &str = "rabbit-rpc-tls-client";

fn script() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts/tls.sh")
        .to_str()
        .expect("a UTF-8 path")
        .to_owned()
}

/// The bed's certificate directory, once the bed is up.
async fn certs() -> &'static Path {
    static CERTS: OnceCell<PathBuf> = OnceCell::const_new();
    CERTS
        .get_or_init(|| async {
            common::run_checked(&script(), &["up"], Duration::from_secs(300)).await;
            let dir = common::run_checked(&script(), &["dir"], Duration::from_secs(10)).await;
            PathBuf::from(dir.trim())
        })
        .await
}

/// A file of the bed, by name (`ca.pem`, `client.key`, …).
async fn cert(name: &str) -> String {
    certs()
        .await
        .join(name)
        .to_str()
        .expect("a UTF-8 path")
        .to_owned()
}

/// guest over TLS on node `port`, trusting the bed's CA.
async fn guest_url(port: u16) -> String {
    format!(
        "amqps://guest:guest@localhost:{port}/%2f?cacertfile={}",
        cert("ca.pem").await
    )
}

/// The client certificate, logging in by it (EXTERNAL), on node `port`.
async fn external(port: u16) -> (String, TlsOptions) {
    let options = TlsOptions::new()
        .ca_file(cert("ca.pem").await)
        .client_cert(cert("client.pem").await, cert("client.key").await)
        .external_auth();
    (format!("amqps://localhost:{port}/%2f"), options)
}

/// `rabbitmqctl -n tlsN@localhost ARGS` for node `port`: the host's
/// rabbitmqctl, through the script, whatever `RABBITMQCTL` names.
async fn ctl(port: u16, args: &[&str]) -> String {
    let node = (port - 5710).to_string();
    let args = [&["ctl", node.as_str()][..], args].concat();
    common::run_checked(&script(), &args, Duration::from_secs(70)).await
}

/// `(user, ssl)` of the connection named `name` on node `port`, as
/// `rabbitmqctl list_connections` shows them.
async fn connection(port: u16, name: &str) -> Option<(String, String)> {
    let listing = ctl(
        port,
        &[
            "list_connections",
            "-q",
            "--no-table-headers",
            "user",
            "ssl",
            "client_properties",
        ],
    )
    .await;
    let property = format!("{{\"connection_name\",\"{name}\"}}");
    listing.lines().find_map(|line| {
        let mut fields = line.split('\t');
        let user = fields.next()?.trim().to_owned();
        let ssl = fields.next()?.trim().to_owned();
        fields.next()?.contains(&property).then_some((user, ssl))
    })
}

/// Serves an echo procedure on a fresh queue over `url` with `tls`, and
/// calls it over the same with a client named `name`: the reply.
async fn round_trip(test: &str, url: &str, tls: Option<TlsOptions>, name: &str) -> String {
    let queue = common::unique_queue(test);
    let mut server = Server::builder()
        .url(url)
        .connection_name(format!("{name} server"))
        .queue_argument("x-expires", 60_000)
        .procedure(&queue, common::echo());
    let mut client = Client::builder().url(url).connection_name(name);
    if let Some(tls) = tls {
        server = server.tls(tls.clone());
        client = client.tls(tls);
    }
    let server = server.bind().await.expect("bind over TLS");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_shutdown(async {
        let _ = stopped.await;
    }));
    let client = client.connect().await.expect("connect over TLS");
    let reply = client
        .call(&queue, "over TLS")
        .await
        .expect("call over TLS");
    let _ = stop.send(());
    serving.await.expect("server task").expect("serve");
    String::from_utf8(reply.into_body()).expect("UTF-8")
}

/// The error of a client connecting to `url` with `tls`.
async fn refused(url: &str, tls: Option<TlsOptions>) -> Error {
    let mut client = Client::builder()
        .url(url)
        .connect_timeout(Duration::from_secs(10));
    if let Some(tls) = tls {
        client = client.tls(tls);
    }
    match client.connect().await {
        Ok(_) => panic!("connected to {url}"),
        Err(error) => error,
    }
}

#[tokio::test]
async fn call_and_serve_over_tls_with_a_ca_file() {
    // The CA file in the URL, as RabbitMQ's URI query parameters say it.
    let url = guest_url(TLS1).await;
    let name = format!("tls-ca-{}", uuid::Uuid::new_v4().simple());
    assert_eq!(round_trip("tls.ca", &url, None, &name).await, "over TLS");
    // The same through the builders, and to 127.0.0.1, which the broker's
    // certificate names too.
    let url = format!("amqps://guest:guest@127.0.0.1:{TLS1}/%2f");
    let tls = TlsOptions::new().ca_file(cert("ca.pem").await);
    let name = format!("tls-builder-{}", uuid::Uuid::new_v4().simple());
    assert_eq!(
        round_trip("tls.builder", &url, Some(tls.clone()), &name).await,
        "over TLS"
    );

    // The broker saw TLS.
    let client = Client::builder()
        .url(&url)
        .tls(tls)
        .connection_name(&name)
        .connect()
        .await
        .expect("connect");
    let (user, ssl) = connection(TLS1, &name)
        .await
        .expect("the client's connection");
    assert_eq!((user.as_str(), ssl.as_str()), ("guest", "true"));
    client.close().await.expect("close");
}

#[tokio::test]
async fn an_untrusted_server_certificate_fails_with_its_own_line() {
    let untrusted_ca = cert("untrusted-ca.pem").await;
    let url = format!("amqps://guest:guest@localhost:{TLS1}/%2f?cacertfile={untrusted_ca}");
    let error = refused(&url, None).await;
    assert!(error.is_connect(), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "cannot reach the broker at localhost:{TLS1}: TLS: the broker's certificate is not \
             signed by a trusted CA (cacertfile={untrusted_ca})"
        )
    );
    // Without a CA file: the system's CAs, which do not know the bed's.
    let error = refused(&format!("amqps://guest:guest@localhost:{TLS1}/%2f"), None).await;
    assert!(error.is_connect(), "{error:?}");
    assert!(
        error.to_string().ends_with(
            "TLS: the broker's certificate is not signed by a trusted CA (the system's trusted \
             CAs; name the broker's CA with cacertfile)"
        ),
        "{error}"
    );
}

#[tokio::test]
async fn a_wrong_host_name_fails_with_its_own_line() {
    let ca = cert("ca.pem").await;
    let url = format!(
        "amqps://guest:guest@127.0.0.1:{TLS1}/%2f?cacertfile={ca}&server_name_indication=wrong.example"
    );
    let error = refused(&url, None).await;
    assert!(error.is_connect(), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "cannot reach the broker at 127.0.0.1:{TLS1}: TLS: the broker's certificate is for \
             localhost, 127.0.0.1, not wrong.example (server_name_indication)"
        )
    );
    // The builder's server name, over a URL's host.
    let error = refused(
        &format!("amqps://guest:guest@localhost:{TLS1}/%2f"),
        Some(TlsOptions::new().ca_file(&ca).server_name("other.example")),
    )
    .await;
    assert!(
        error
            .to_string()
            .ends_with("is for localhost, 127.0.0.1, not other.example (server_name_indication)"),
        "{error}"
    );
}

#[tokio::test]
async fn mutual_tls_with_external_logs_in_as_the_certificates_user() {
    let (url, tls) = external(TLS2).await;
    let name = format!("tls-external-{}", uuid::Uuid::new_v4().simple());
    assert_eq!(
        round_trip("tls.external", &url, Some(tls.clone()), &name).await,
        "over TLS"
    );
    let client = Client::builder()
        .url(&url)
        .tls(tls)
        .connection_name(&name)
        .connect()
        .await
        .expect("connect by certificate");
    let (user, ssl) = connection(TLS2, &name)
        .await
        .expect("the client's connection");
    assert_eq!((user.as_str(), ssl.as_str()), (CERT_USER, "true"));
    client.close().await.expect("close");

    // The same in the URL alone, as RabbitMQ's URI query parameters say it.
    let url = format!(
        "amqps://localhost:{TLS2}/%2f?cacertfile={}&certfile={}&keyfile={}&auth_mechanism=external",
        cert("ca.pem").await,
        cert("client.pem").await,
        cert("client.key").await
    );
    let client = Client::connect(&url).await.expect("connect by certificate");
    client.close().await.expect("close");
}

#[tokio::test]
async fn external_with_a_certificate_that_names_no_user_is_refused() {
    // tls1 accepts the client certificate, but has no user of its name.
    let (url, tls) = external(TLS1).await;
    let error = refused(&url, Some(tls)).await;
    assert_eq!(error.refusal(), Some(Refusal::Login), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "login refused: the broker at localhost:{TLS1} refused the EXTERNAL login with the \
             client certificate in '{}': it knows no user of the name it takes from the \
             certificate (its CN, or its whole subject, as its ssl_cert_login_from says), or \
             that user may not log in (the broker's log names the user it looked for)",
            cert("client.pem").await
        )
    );
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused_where_one_is_required() {
    let error = refused(&guest_url(TLS2).await, None).await;
    assert_eq!(error.refusal(), Some(Refusal::Login), "{error:?}");
    assert_eq!(
        error.to_string(),
        "login refused: TLS: the broker requires a client certificate, and none was given; give \
         one (certfile and keyfile)"
    );
}

#[tokio::test]
async fn a_client_certificate_the_broker_does_not_trust_is_refused() {
    let untrusted = TlsOptions::new()
        .ca_file(cert("ca.pem").await)
        .client_cert(cert("untrusted.pem").await, cert("untrusted.key").await);
    let error = refused(
        &format!("amqps://guest:guest@localhost:{TLS2}/%2f"),
        Some(untrusted),
    )
    .await;
    assert_eq!(error.refusal(), Some(Refusal::Login), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "login refused: TLS: the broker does not accept the client certificate in '{}' (it \
             says: unknown_ca)",
            cert("untrusted.pem").await
        )
    );
}

#[tokio::test]
async fn verify_none_connects_to_a_broker_it_does_not_trust() {
    let url = format!(
        "amqps://guest:guest@127.0.0.1:{TLS1}/%2f?server_name_indication=wrong.example&verify=verify_none"
    );
    let client = Client::connect(&url).await.expect("connect unverified");
    client.close().await.expect("close");
}

#[tokio::test]
async fn bad_option_files_each_name_the_file_before_connecting() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tls-bad-files");
    std::fs::create_dir_all(&dir).expect("a directory for bad files");
    let not_pem = dir.join("not-pem.crt");
    std::fs::write(&not_pem, [0x30, 0x82, 0x01, 0x0a, 0x02]).expect("write a DER-ish file");
    let not_pem = not_pem.to_str().expect("UTF-8").to_owned();
    let missing = dir.join("missing.pem").to_str().expect("UTF-8").to_owned();
    let (ca, client, client_key, other_key) = (
        cert("ca.pem").await,
        cert("client.pem").await,
        cert("client.key").await,
        cert("untrusted.key").await,
    );
    // Port 1: nothing listens there, so only the files can be the error.
    let url = "amqps://guest:guest@localhost:1/%2f";
    for (tls, says) in [
        (
            TlsOptions::new().ca_file(&missing),
            format!("TLS settings: cacertfile '{missing}': no such file"),
        ),
        (
            TlsOptions::new().ca_file(&not_pem),
            format!("TLS settings: cacertfile '{not_pem}': not PEM (no -----BEGIN line)"),
        ),
        (
            TlsOptions::new().ca_file(&client_key),
            format!(
                "TLS settings: cacertfile '{client_key}': no certificate in it (it holds: \
                 PRIVATE KEY)"
            ),
        ),
        (
            TlsOptions::new()
                .ca_file(&ca)
                .client_cert(&not_pem, &client_key),
            format!("TLS settings: certfile '{not_pem}': not PEM"),
        ),
        (
            TlsOptions::new()
                .ca_file(&ca)
                .client_cert(&client, &missing),
            format!("TLS settings: keyfile '{missing}': no such file"),
        ),
        (
            TlsOptions::new().ca_file(&ca).client_cert(&client, &client),
            format!(
                "TLS settings: keyfile '{client}': no private key in it (it holds: CERTIFICATE)"
            ),
        ),
        (
            TlsOptions::new()
                .ca_file(&ca)
                .client_cert(&client, &other_key),
            format!(
                "TLS settings: keyfile '{other_key}' is not the key of the certificate in \
                 certfile '{client}'"
            ),
        ),
    ] {
        let error = refused(url, Some(tls)).await;
        assert!(matches!(error, Error::Tls { .. }), "{error:?}");
        let shown = error.to_string();
        assert!(shown.starts_with(&says), "{shown}\nexpected: {says}");
        assert!(!shown.contains('\n'), "{shown}");
    }
    // A server is checked the same way, before it connects.
    let bound = Server::builder()
        .url(format!("{url}?cacertfile={missing}"))
        .procedure("tls.never", common::echo())
        .bind()
        .await;
    let Err(error) = bound else {
        panic!("bound with a missing CA file")
    };
    assert_eq!(
        error.to_string(),
        format!("TLS settings: cacertfile '{missing}': no such file")
    );
}
