//! `rabbit-rpc` over TLS, as a user runs it: the bed of `scripts/tls.sh`
//! (RabbitMQ 3.10 nodes beside the default broker, tls1 on 127.0.0.1:5711
//! and tls2, which requires a client certificate, on 127.0.0.1:5712),
//! brought up by these tests if it is not running and left running
//! (`scripts/test.sh` takes it down at the end if it started it). TLS
//! options in `--url` and in `--url-file`, exit codes and one-line messages
//! for each TLS failure, and passwords in no output. The bed is RabbitMQ
//! 3.10 whatever `AMQP_URL` names, driven with the host's rabbitmqctl
//! (`scripts/tls.sh ctl`).

#![cfg(unix)]

#[path = "../../rabbit-rpc/tests/common/mod.rs"]
mod common;
mod serve;

use std::{
    path::{Path, PathBuf},
    process::{Output, Stdio},
    time::Duration,
};

use rabbit_rpc_cli::exit;
use serve::{BIN, ServeProcess};
use tokio::{process::Command, sync::OnceCell};

/// The bed's nodes: tls1 checks a client certificate if one is
/// presented, tls2 requires one.
const TLS1: u16 = 5711;
const TLS2: u16 = 5712;

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

/// `rabbitmqctl -n tlsN@localhost ARGS` for node `port`: the host's
/// rabbitmqctl, through the script, whatever `RABBITMQCTL` names.
async fn ctl(port: u16, args: &[&str]) -> String {
    let node = (port - 5710).to_string();
    let args = [&["ctl", node.as_str()][..], args].concat();
    common::run_checked(&script(), &args, Duration::from_secs(70)).await
}

/// `ctl` when dropping: waits, ignores the outcome.
fn ctl_now(port: u16, args: &[&str]) {
    let node = (port - 5710).to_string();
    let _ = std::process::Command::new(script())
        .args(["ctl", node.as_str()])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A user of the test's own on node `port`, with a password that appears
/// nowhere else, and every permission on vhost `/`; deleted when dropped.
struct NodeUser {
    port: u16,
    name: String,
    password: String,
}

impl NodeUser {
    async fn create(port: u16) -> NodeUser {
        let user = NodeUser {
            port,
            name: format!("tls-cli-{}", uuid::Uuid::new_v4().simple()),
            password: format!("pw-{}", uuid::Uuid::new_v4().simple()),
        };
        ctl(port, &["-q", "add_user", &user.name, &user.password]).await;
        ctl(
            port,
            &[
                "-q",
                "set_permissions",
                "-p",
                "/",
                &user.name,
                ".*",
                ".*",
                ".*",
            ],
        )
        .await;
        user
    }
}

impl Drop for NodeUser {
    fn drop(&mut self) {
        ctl_now(self.port, &["-q", "delete_user", &self.name]);
    }
}

/// Deletes a queue of node `port` when dropped: `serve` declares durable
/// queues.
struct DeleteOnNode(u16, String);

impl Drop for DeleteOnNode {
    fn drop(&mut self) {
        ctl_now(self.0, &["-q", "delete_queue", &self.1]);
    }
}

/// A file of this test binary's own holding `text`, readable only by its
/// owner (as a URL file with a password should be).
fn url_file(name: &str, text: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tls-cli");
    std::fs::create_dir_all(&dir).expect("a directory for URL files");
    let path = dir.join(format!("{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, text).expect("write the URL file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .expect("chmod the URL file");
    path.to_str().expect("UTF-8").to_owned()
}

/// Runs `rabbit-rpc ARGS` with `env` and no `AMQP_URL`, `AMQP_URL_FILE` or
/// `RUST_LOG` of the test's.
async fn rabbit_rpc(args: &[&str], env: &[(&str, &str)]) -> Output {
    let run = Command::new(BIN)
        .args(args)
        .env_remove("AMQP_URL")
        .env_remove("AMQP_URL_FILE")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("rabbit-rpc hung")
        .expect("run rabbit-rpc")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn code(output: &Output) -> u8 {
    u8::try_from(output.status.code().expect("exited, not killed")).expect("an exit code")
}

/// The user of the connection named `name` on node `port`.
async fn connection_user(port: u16, name: &str) -> Option<String> {
    let listing = ctl(
        port,
        &[
            "list_connections",
            "-q",
            "--no-table-headers",
            "user",
            "client_properties",
        ],
    )
    .await;
    let property = format!("{{\"connection_name\",\"{name}\"}}");
    listing.lines().find_map(|line| {
        let (user, properties) = line.split_once('\t')?;
        properties
            .contains(&property)
            .then(|| user.trim().to_owned())
    })
}

#[tokio::test]
async fn serve_and_call_over_tls_with_urls_from_a_file_never_showing_the_password() {
    let user = NodeUser::create(TLS1).await;
    let url = format!(
        "amqps://{}:{}@localhost:{TLS1}/%2f?cacertfile={}",
        user.name,
        user.password,
        cert("ca.pem").await
    );
    let file = url_file("urls", &format!("# the TLS node\n{url}\n"));
    let queue = common::unique_queue("tls_cli");
    let _cleanup = DeleteOnNode(TLS1, queue.clone());
    let mut server = ServeProcess::start("echo", &queue, &["--url-file", &file]).await;

    // --url-file on the command line, and AMQP_URL_FILE.
    let output = rabbit_rpc(
        &["call", "--url-file", &file, "--queue", &queue, "hello"],
        &[],
    )
    .await;
    assert_eq!(
        (code(&output), stdout(&output).as_str()),
        (exit::OK, "hello\n"),
        "{}",
        stderr(&output)
    );
    let output = rabbit_rpc(
        &["call", "--queue", &queue, "again"],
        &[("AMQP_URL_FILE", &file)],
    )
    .await;
    assert_eq!(stdout(&output), "again\n", "{}", stderr(&output));

    // A failure names the broker and the user, not the password.
    let wrong_ca = url_file("wrong-ca", &url.replace("ca.pem", "untrusted-ca.pem"));
    let output = rabbit_rpc(&["ping", "--url-file", &wrong_ca], &[]).await;
    assert_eq!(code(&output), exit::CANNOT_CONNECT, "{}", stderr(&output));

    // The password is in no command line, output or log line.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", server.pid)).expect("serve's cmdline");
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(&user.password),
        "password in serve's command line"
    );
    server.stop().await;
    for shown in [server.log(), stdout(&output), stderr(&output)] {
        assert!(!shown.contains(&user.password), "password shown: {shown}");
    }
    // It says where it serves: the broker and the user.
    assert!(
        server
            .log()
            .contains(&format!("at amqps://{}@localhost:{TLS1}/%2f", user.name)),
        "{}",
        server.log()
    );
}

#[tokio::test]
async fn tls_failures_exit_with_their_codes_and_one_line() {
    let (ca, untrusted_ca, client, client_key, other_key) = (
        cert("ca.pem").await,
        cert("untrusted-ca.pem").await,
        cert("client.pem").await,
        cert("client.key").await,
        cert("untrusted.key").await,
    );
    let missing = url_file("gone", "").replace("gone-", "missing-");
    let empty = url_file("empty", "# no URL here\n\n");
    let guest = |port: u16, query: &str| {
        format!("amqps://guest:hunter2-not-guest@localhost:{port}/%2f?{query}")
    };
    let cases: Vec<(Vec<String>, u8, String)> = vec![
        (
            vec!["--url".into(), guest(TLS1, &format!("cacertfile={untrusted_ca}"))],
            exit::CANNOT_CONNECT,
            format!("the broker's certificate is not signed by a trusted CA (cacertfile={untrusted_ca})"),
        ),
        (
            vec![
                "--url".into(),
                format!(
                    "amqps://guest:guest@127.0.0.1:{TLS1}/%2f?cacertfile={ca}&server_name_indication=wrong.example"
                ),
            ],
            exit::CANNOT_CONNECT,
            "the broker's certificate is for localhost, 127.0.0.1, not wrong.example (server_name_indication)".into(),
        ),
        (
            vec!["--url".into(), guest(TLS2, &format!("cacertfile={ca}"))],
            exit::LOGIN_REFUSED,
            "login refused: TLS: the broker requires a client certificate, and none was given".into(),
        ),
        (
            vec!["--url".into(), guest(TLS1, &format!("cacertfile={missing}"))],
            exit::USAGE,
            format!("error: TLS settings: cacertfile '{missing}': no such file"),
        ),
        (
            vec![
                "--url".into(),
                guest(TLS1, &format!("cacertfile={ca}&certfile={client}&keyfile={other_key}")),
            ],
            exit::USAGE,
            format!("keyfile '{other_key}' is not the key of the certificate in certfile '{client}'"),
        ),
        (
            vec!["--url".into(), guest(TLS1, &format!("cacertfile={ca}&certfile={client}"))],
            exit::USAGE,
            "certfile needs keyfile".into(),
        ),
        (
            vec!["--url".into(), guest(TLS1, &format!("cacertfile={client_key}"))],
            exit::USAGE,
            "no certificate in it (it holds: PRIVATE KEY)".into(),
        ),
        (
            vec!["--url".into(), format!("amqp://guest:hunter2-not-guest@localhost:{TLS1}/%2f?cacertfile={ca}")],
            exit::USAGE,
            "use an amqps:// URL".into(),
        ),
        (
            vec!["--url-file".into(), missing.clone()],
            exit::USAGE,
            format!("error: --url-file {missing}: no such file"),
        ),
        (
            vec!["--url-file".into(), empty.clone()],
            exit::USAGE,
            format!("error: --url-file {empty}: no broker URL in it"),
        ),
        (
            vec!["--url-file".into(), empty.clone(), "--url".into(), guest(TLS1, "")],
            exit::USAGE,
            "error: give the broker with --url or with --url-file, not both".into(),
        ),
    ];
    for (args, expected, says) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = rabbit_rpc(&[&["ping"][..], &args].concat(), &[]).await;
        let message = stderr(&output);
        assert_eq!(code(&output), expected, "{args:?}: {message}");
        assert!(
            message.contains(&says),
            "{args:?}: {message}\nexpected: {says}"
        );
        assert_eq!(message.lines().count(), 1, "{args:?}: {message}");
        assert!(!message.contains("hunter2"), "{message}");
    }
}

#[tokio::test]
async fn mutual_tls_with_external_from_the_command_line() {
    let url = format!(
        "amqps://localhost:{TLS2}/%2f?cacertfile={}&certfile={}&keyfile={}&auth_mechanism=external",
        cert("ca.pem").await,
        cert("client.pem").await,
        cert("client.key").await
    );
    let queue = common::unique_queue("tls_cli_external");
    let _cleanup = DeleteOnNode(TLS2, queue.clone());
    let name = format!("tls-cli-external-{}", uuid::Uuid::new_v4().simple());
    let mut server =
        ServeProcess::start("fib", &queue, &["--url", &url, "--connection-name", &name]).await;
    let output = rabbit_rpc(&["call", "--url", &url, "--queue", &queue, "30"], &[]).await;
    assert_eq!(stdout(&output), "832040\n", "{}", stderr(&output));
    assert_eq!(
        connection_user(TLS2, &name).await.as_deref(),
        Some("rabbit-rpc-tls-client")
    );
    // The log names the broker and the login, not a user the URL does not
    // send.
    assert!(
        server.log().contains(&format!(
            "amqps://localhost:{TLS2}/%2f?auth_mechanism=external"
        )),
        "{}",
        server.log()
    );
    server.stop().await;
}

#[tokio::test]
async fn verify_none_warns_on_every_connect() {
    let url = format!(
        "amqps://guest:guest@127.0.0.1:{TLS1}/%2f?server_name_indication=wrong.example&verify=verify_none"
    );
    // Reaches the broker (no queue there: exit 5), with the warning first.
    let _ = certs().await;
    let queue = common::unique_queue("tls_cli_nobody");
    let output = rabbit_rpc(&["ping", "--url", &url, "--queue", &queue], &[]).await;
    let message = stderr(&output);
    assert_eq!(code(&output), exit::NO_SERVER, "{message}");
    let warnings: Vec<&str> = message
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("verification is OFF"))
        .collect();
    assert_eq!(warnings.len(), 1, "{message}");
    assert!(!message.contains(":guest@"), "{message}");
}
