//! Command-line arguments. The shape of `serve fib` and `call` is a public
//! contract (see docs/CLI.md): add to it, do not change it.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{ArgMatches, Args, Parser, Subcommand, parser::ValueSource};

/// Request/reply (RPC) over RabbitMQ: serve the fibonacci service, or call
/// any server that speaks RabbitMQ's tutorial-6 protocol.
#[derive(Debug, Parser)]
#[command(name = "rabbit-rpc", version, propagate_version = true)]
pub struct Cli {
    /// Broker URL [default: amqp://guest@127.0.0.1:5672/%2f, password
    /// guest]. Repeat it, or separate URLs with commas, to give several
    /// brokers (e.g. the nodes of a cluster): they are tried in turn when
    /// connecting and reconnecting. amqps:// URLs take TLS options, as
    /// RabbitMQ spells them: ?cacertfile=PATH&certfile=PATH&keyfile=PATH
    /// &server_name_indication=NAME&auth_mechanism=external.
    #[arg(
        long = "url",
        global = true,
        env = "AMQP_URL",
        value_delimiter = ',',
        default_value = rabbit_rpc::BrokerUrl::DEFAULT,
        hide_default_value = true,
        hide_env_values = true
    )]
    pub urls: Vec<String>,

    /// Read the broker URL(s) from FILE instead of --url, so passwords stay
    /// out of the process list and the shell's history: one URL per line,
    /// or several separated by commas; blank lines and lines starting with
    /// # are skipped. --url on the command line wins over AMQP_URL_FILE,
    /// and --url-file over AMQP_URL.
    #[arg(
        long = "url-file",
        global = true,
        env = "AMQP_URL_FILE",
        value_name = "FILE"
    )]
    pub url_file: Option<PathBuf>,

    /// Async worker threads: 1 runs everything on one thread (measured
    /// fastest on 2 cores; see docs/PERFORMANCE.md), more spreads
    /// async work over cores. CPU-heavy handlers (fib above n = 5000) run on
    /// a separate blocking pool either way.
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub threads: usize,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The command line, parsed as clap does (exiting on bad usage), with
    /// the broker URLs read from `--url-file` (or `AMQP_URL_FILE`) when
    /// that is how they are given.
    ///
    /// # Errors
    /// One line for a URL file that cannot be read or holds no URL, or
    /// `--url` and `--url-file` both given at the same level.
    pub fn parse_args() -> Result<Cli, String> {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Cli::command().get_matches();
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
        cli.read_url_file(&matches)?;
        Ok(cli)
    }

    /// Replaces the URLs with those of the URL file, if one is given and
    /// wins over `--url`/`AMQP_URL`: the command line wins over the
    /// environment; both on one level is an error.
    ///
    /// # Errors
    /// As [`Cli::parse_args`].
    pub fn read_url_file(&mut self, matches: &ArgMatches) -> Result<(), String> {
        let Some(path) = &self.url_file else {
            return Ok(());
        };
        let file = matches.value_source("url_file");
        if !file_wins(matches.value_source("urls"), file)? {
            return Ok(());
        }
        let name = if file == Some(ValueSource::EnvVariable) {
            "AMQP_URL_FILE"
        } else {
            "--url-file"
        };
        self.urls = urls_from_file(name, path)?;
        Ok(())
    }
}

/// Whether the URL file gives the URLs, by where `--url` (`url`) and
/// `--url-file` (`file`) came from: the command line wins over the
/// environment, the environment over the default.
///
/// # Errors
/// Both given at the same level.
fn file_wins(url: Option<ValueSource>, file: Option<ValueSource>) -> Result<bool, String> {
    match (url, file) {
        (_, None) => Ok(false),
        (Some(ValueSource::CommandLine), Some(ValueSource::CommandLine)) => {
            Err("give the broker with --url or with --url-file, not both".to_owned())
        }
        (Some(ValueSource::EnvVariable), Some(ValueSource::EnvVariable)) => Err(
            "AMQP_URL and AMQP_URL_FILE are both set; unset one (or give --url or --url-file)"
                .to_owned(),
        ),
        (Some(ValueSource::CommandLine), Some(_)) => Ok(false),
        _ => Ok(true),
    }
}

/// The largest URL file read: URLs are short.
const MAX_URL_FILE: u64 = 64 * 1024;

/// The URLs in the file at `path` (named `name` in messages): one per line
/// or comma-separated, blank lines and `#` comments skipped. Messages never
/// show the file's contents: it holds passwords.
///
/// # Errors
/// One line: the file is missing, unreadable, too large, not text, or
/// holds no URL.
pub fn urls_from_file(name: &str, path: &Path) -> Result<Vec<String>, String> {
    let shown = path.display();
    let size = std::fs::metadata(path).map_or(0, |metadata| metadata.len());
    if size > MAX_URL_FILE {
        return Err(format!(
            "{name} {shown}: {size} bytes is too large for a list of broker URLs"
        ));
    }
    let bytes = std::fs::read(path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => format!("{name} {shown}: no such file"),
        _ => format!("{name} {shown}: cannot read it: {error}"),
    })?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{name} {shown}: not text (UTF-8)"))?;
    let urls: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .collect();
    if urls.is_empty() {
        return Err(format!("{name} {shown}: no broker URL in it"));
    }
    Ok(urls)
}

/// The queue of `call` and `bench`, and of `serve` with one service: the
/// tutorial's.
pub const DEFAULT_QUEUE: &str = "rpc_queue";

/// The largest n `serve fib` serves unless told otherwise.
const DEFAULT_MAX_N: u64 = crate::fib::DEFAULT_MAX_N;

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve one or more services, each on its own queue, over one
    /// connection, until Ctrl-C or SIGTERM.
    Serve(ServeArgs),
    /// Send one request and print the reply.
    #[command(allow_negative_numbers = true)]
    Call(CallArgs),
    /// Drive a server with many calls in flight; report calls/s, latency
    /// percentiles, errors and this client's CPU and memory.
    Bench(BenchArgs),
    /// Ask whatever serves a queue for a ping, answered by the rabbit-rpc
    /// server library without running the handler: which server instance
    /// answered, its version, whether it is serving or draining, and the
    /// round trip. Exits 0 when serving (see the exit codes in docs/CLI.md).
    Ping(ControlArgs),
    /// Ask the rabbit-rpc server on a queue what its procedure takes and
    /// returns: its doc, content types and JSON Schemas.
    Describe(DescribeArgs),
}

/// The services `serve` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum ServiceName {
    /// fibonacci(n): body n as decimal text, reply fib(n) as decimal text;
    /// or body {"n": n} as JSON, reply {"n": n, "fib": "…"}.
    Fib,
    /// Replies with the request body, unchanged (for tests and benchmarks).
    Echo,
}

impl ServiceName {
    /// The name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceName::Fib => "fib",
            ServiceName::Echo => "echo",
        }
    }

    /// The queue it listens on when served beside others, unless named.
    fn own_queue(self) -> &'static str {
        match self {
            ServiceName::Fib => DEFAULT_QUEUE,
            ServiceName::Echo => "echo",
        }
    }
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `rabbit-rpc serve` options.
#[derive(Debug, Args)]
#[command(after_help = "\
Queues: one service listens on --queue NAME (default rpc_queue). Several \
services in one process share one connection, each on its own queue: fib on \
rpc_queue, echo on echo; name one with --queue SERVICE=NAME (repeatable), \
e.g. `rabbit-rpc serve fib echo --queue echo=echo.v2`.")]
pub struct ServeArgs {
    /// The services to serve.
    #[arg(required = true, value_enum, value_name = "SERVICE")]
    pub services: Vec<ServiceName>,

    /// Options every service takes.
    #[command(flatten)]
    pub server: ServerArgs,

    /// fib: the largest n served; larger ones get an invalid_argument reply
    /// [default: 100000].
    #[arg(long, value_name = "N")]
    pub max_n: Option<u64>,
}

impl ServeArgs {
    /// Each service with its queue, checked: no service twice, no queue
    /// twice, `--queue NAME` only for one service, `--queue SERVICE=NAME`
    /// only for a service being served, `--max-n` only with fib.
    ///
    /// # Errors
    /// What is wrong, for a usage error.
    pub fn queues(&self) -> Result<Vec<(ServiceName, String)>, String> {
        let mut services = self.services.clone();
        services.sort();
        if services.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err("a service is named twice; name each once".to_owned());
        }
        if self.max_n.is_some() && !services.contains(&ServiceName::Fib) {
            return Err("--max-n is an option of fib, which is not being served".to_owned());
        }
        let mut named: Vec<(ServiceName, String)> = Vec::new();
        let mut bare: Vec<&str> = Vec::new();
        for value in &self.server.queue {
            let per_service = value.split_once('=').and_then(|(service, queue)| {
                <ServiceName as clap::ValueEnum>::from_str(service, false)
                    .ok()
                    .map(|service| (service, queue))
            });
            match per_service {
                Some((service, queue)) if services.contains(&service) => {
                    named.push((service, queue.to_owned()));
                }
                Some((service, _)) => {
                    return Err(format!("--queue {value}: {service} is not being served"));
                }
                None => bare.push(value),
            }
        }
        if !bare.is_empty() && (services.len() > 1 || bare.len() > 1 || !named.is_empty()) {
            return Err(format!(
                "--queue {}: with several services or queues, name each as --queue SERVICE=NAME",
                bare[0]
            ));
        }
        let queues: Vec<(ServiceName, String)> = self
            .services
            .iter()
            .map(|&service| {
                let queue = named
                    .iter()
                    .rev()
                    .find(|(s, _)| *s == service)
                    .map(|(_, queue)| queue.clone())
                    .or_else(|| bare.first().map(|q| (*q).to_owned()))
                    .unwrap_or_else(|| {
                        if services.len() == 1 {
                            DEFAULT_QUEUE.to_owned()
                        } else {
                            service.own_queue().to_owned()
                        }
                    });
                (service, queue)
            })
            .collect();
        for (i, (service, queue)) in queues.iter().enumerate() {
            if let Some((other, _)) = queues[i + 1..].iter().find(|(_, q)| q == queue) {
                return Err(format!(
                    "{service} and {other} would both listen on queue '{queue}'; give each its own with --queue SERVICE=NAME"
                ));
            }
        }
        Ok(queues)
    }

    /// fib's largest n.
    pub fn max_n(&self) -> u64 {
        self.max_n.unwrap_or(DEFAULT_MAX_N)
    }
}

/// Options of `rabbit-rpc serve SERVICE...`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The request queue: NAME for one service [default: rpc_queue], or
    /// SERVICE=NAME for each of several (see below).
    #[arg(long, value_name = "[SERVICE=]NAME")]
    pub queue: Vec<String>,

    /// How many requests of each service are handled at once.
    #[arg(long, default_value_t = rabbit_rpc::ServerBuilder::DEFAULT_CONCURRENCY, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub concurrency: usize,

    /// How many unacknowledged requests the broker sends ahead, per
    /// service.
    #[arg(long, default_value_t = rabbit_rpc::ServerBuilder::DEFAULT_PREFETCH, value_parser = clap::value_parser!(u16).range(1..))]
    pub prefetch: u16,

    /// The type of queue declared when the request queue does not exist
    /// [default: quorum: durable, `x-queue-type: quorum` and nothing else,
    /// as RabbitMQ's tutorials declare it today]. Without this or another
    /// queue setting, an existing queue is served as it is, whoever declared
    /// it; with one, serve declares the queue with exactly these settings
    /// and the broker refuses if an existing queue differs (exit 8).
    #[arg(long, value_enum, value_name = "TYPE")]
    pub queue_type: Option<QueueTypeArg>,

    /// Declare a transient (non-durable) classic queue, as RabbitMQ's 2022
    /// tutorial did: for fleets running that tutorial's servers. Deprecated
    /// in RabbitMQ 4.x (`transient_nonexcl_queues`): 4.3 permits it by
    /// default, an operator may deny it, and a later version will; where it
    /// is denied, serve exits 9. A queue setting.
    #[arg(long, conflicts_with_all = ["delivery_limit", "durable", "quorum"])]
    pub transient: bool,

    /// Same as --queue-type classic (kept for scripts written for earlier
    /// versions).
    #[arg(long, hide = true, conflicts_with_all = ["queue_type", "quorum"])]
    pub durable: bool,

    /// Same as --queue-type quorum (kept for scripts written for earlier
    /// versions).
    #[arg(long, hide = true, conflicts_with = "queue_type")]
    pub quorum: bool,

    /// How many times the broker delivers one request before it drops it
    /// (or dead-letters it), so a request that crashes servers cannot loop
    /// forever: x-delivery-limit, quorum queues only [default: not set;
    /// RabbitMQ 4 applies 20, 3.x none]. A queue setting.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub delivery_limit: Option<u32>,

    /// Also answer requests whose reply_to starts with PREFIX (repeatable).
    /// By default serve answers only reply addresses: direct reply-to,
    /// server-named queues (amq.gen-…) and rabbit-rpc clients' reply queues
    /// (rabbit-rpc.reply.…), which every tutorial client uses. A request
    /// whose reply_to names any other queue is refused (not run, not
    /// answered, logged), so nobody can make the server publish into
    /// another service's queue.
    #[arg(long, value_name = "PREFIX", value_parser = parse_reply_to_prefix)]
    pub allow_reply_to: Vec<String>,

    /// Answer any reply_to, as earlier versions and the tutorial's servers
    /// do. Unsafe on a shared virtual host: whoever may publish to the
    /// request queue can then make this server publish into any queue.
    #[arg(long, conflicts_with = "allow_reply_to")]
    pub allow_any_reply_to: bool,

    /// Acknowledge every request only once the broker has confirmed its
    /// reply, not only those answered to a rabbit-rpc client's reply queue
    /// (rabbit-rpc.reply.…, always confirmed): if this server's broker node
    /// stops between a reply and its acknowledgement, the request goes to
    /// another server instead of its reply being lost. Costs about a fifth of the
    /// throughput at 200 calls in flight.
    #[arg(long)]
    pub confirm_replies: bool,

    /// The largest request body worked on; larger ones get a
    /// resource_exhausted reply.
    #[arg(long, default_value_t = rabbit_rpc::ServerBuilder::DEFAULT_MAX_REQUEST_SIZE, value_name = "BYTES")]
    pub max_request_size: usize,

    /// On Ctrl-C or SIGTERM, how long to wait for requests being handled
    /// before closing anyway (the broker then hands them to another server).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// The longest a handler may run: then it is cancelled and its caller
    /// answered deadline_exceeded, unless the caller's own deadline came
    /// first (then nothing is answered). [default: none]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub handler_timeout: Option<Duration>,

    /// The connection name shown by `rabbitmqctl list_connections`, and by
    /// `rabbit-rpc ping` with the host and pid [default: rabbit-rpc serve
    /// SERVICE...].
    #[arg(long)]
    pub connection_name: Option<String>,

    /// Answer only requests from this broker user (repeatable): the
    /// request's user_id, which RabbitMQ checks is the user its sender
    /// logged in as. Others get permission_denied, requests without one
    /// (tutorial clients') unauthenticated; neither runs. Default: anyone.
    #[arg(long, value_name = "USER")]
    pub allow_caller: Vec<String>,

    /// Serve Prometheus metrics (/metrics), liveness (/livez) and readiness
    /// (/readyz) over HTTP on ADDR, e.g. 127.0.0.1:9464 (port 0: any free
    /// port, logged).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
}

/// The `--queue-type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueTypeArg {
    /// A quorum queue: durable, replicated over a cluster's nodes.
    Quorum,
    /// A durable classic queue (with --transient: a transient one).
    Classic,
}

impl ServerArgs {
    /// The queue type asked for, by `--queue-type` or its older aliases.
    pub fn queue_type(&self) -> Option<rabbit_rpc::QueueType> {
        match (self.queue_type, self.quorum, self.durable) {
            (Some(QueueTypeArg::Quorum), ..) | (None, true, _) => {
                Some(rabbit_rpc::QueueType::Quorum)
            }
            (Some(QueueTypeArg::Classic), ..) | (None, false, true) => {
                Some(rabbit_rpc::QueueType::Classic)
            }
            (None, false, false) => None,
        }
    }
}

/// `rabbit-rpc call` options.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The request queue.
    #[arg(long, default_value = DEFAULT_QUEUE)]
    pub queue: String,

    /// How long to wait for the reply, e.g. 3s, 500ms, 1m.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// The request body (for fib: n), sent as text/plain.
    #[arg(default_value = "30")]
    pub body: String,

    /// Send this JSON instead of BODY, as application/json (checked here
    /// first), and pretty-print the reply if it is JSON, e.g.
    /// --json '{"n": 30}'.
    #[arg(long, value_name = "JSON", conflicts_with = "body")]
    pub json: Option<String>,

    /// Calls that outlive their connection and their broker node: replies
    /// wait in a replicated queue of this client's own, requests are
    /// confirmed by the broker and published again after a lost connection,
    /// so a node going away fails no call (a request may then run twice).
    /// Costs the broker more per call.
    #[arg(long)]
    pub resilient: bool,
}

/// `rabbit-rpc ping` options.
#[derive(Debug, Args)]
pub struct ControlArgs {
    /// The request queue.
    #[arg(long, default_value = DEFAULT_QUEUE)]
    pub queue: String,

    /// How long to wait for the answer, e.g. 3s, 500ms. A queue nobody
    /// consumes is reported after about 2 s, or half this if shorter.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `rabbit-rpc describe` options.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// The queue and the timeout.
    #[command(flatten)]
    pub control: ControlArgs,

    /// Print the description as the server sent it, as JSON (pretty), instead
    /// of as text.
    #[arg(long)]
    pub json: bool,
}

/// `rabbit-rpc bench` options.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The request queue.
    #[arg(long, default_value = DEFAULT_QUEUE)]
    pub queue: String,

    /// How many calls to make.
    #[arg(long, default_value_t = 10_000, conflicts_with = "duration")]
    pub calls: u64,

    /// Run for this long instead of a number of calls, e.g. 10s.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// How many calls to keep in flight at once.
    #[arg(long, default_value_t = 100, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub inflight: usize,

    /// The request body of every call.
    #[arg(long, default_value = "30", allow_hyphen_values = true)]
    pub body: String,

    /// Instead of --body, a body of this many bytes ('x' repeated), e.g.
    /// for `serve echo`.
    #[arg(long, conflicts_with = "body", value_name = "BYTES")]
    pub body_size: Option<usize>,

    /// How long each call may wait for its reply.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// The requests' content type, as `call` sends it; empty for none.
    #[arg(long, default_value = "text/plain")]
    pub content_type: String,

    /// Have the broker confirm every request (publisher confirms), to
    /// measure what they cost.
    #[arg(long)]
    pub publisher_confirms: bool,

    /// Calls that outlive their connection and their broker node: replies
    /// wait in a replicated queue of this client's own, requests are
    /// confirmed by the broker and published again after a lost connection,
    /// so a node going away fails no call (a request may then run twice).
    /// Costs the broker more per call.
    #[arg(long)]
    pub resilient: bool,

    /// Print the summary as JSON, on the last line of stdout.
    #[arg(long)]
    pub json: bool,

    /// Write a picture of the run (latency distribution, calls/s over time)
    /// to this SVG file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<std::path::PathBuf>,

    /// The server's operations endpoint (`serve --http ADDR`): what the
    /// server saw of the run, from its /metrics before and after, is shown
    /// beside the client's figures.
    #[arg(long, value_name = "ADDR")]
    pub server_http: Option<String>,
}

impl BenchArgs {
    /// The request body every call sends.
    pub fn body_bytes(&self) -> Vec<u8> {
        match self.body_size {
            Some(size) => vec![b'x'; size],
            None => self.body.clone().into_bytes(),
        }
    }
}

/// A `--allow-reply-to` prefix; `orders.*` reads as `orders.`.
fn parse_reply_to_prefix(text: &str) -> Result<String, String> {
    let prefix = text.trim_end_matches('*');
    if prefix.is_empty() {
        return Err(
            "an empty prefix would allow every queue; say --allow-any-reply-to if that is meant"
                .to_owned(),
        );
    }
    Ok(prefix.to_owned())
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|e| format!("{e} (write durations like 3s, 500ms or 1m)"))?;
    if duration.is_zero() {
        return Err("must be more than zero".to_owned());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_takes_negative_bodies_with_or_without_dashes() {
        for args in [
            &["rabbit-rpc", "call", "--", "-1"][..],
            &["rabbit-rpc", "call", "-1"][..],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            let Command::Call(call) = cli.command else {
                panic!("not a call")
            };
            assert_eq!(call.body, "-1");
        }
    }

    #[test]
    fn call_json_replaces_the_body_and_ping_waits_5s_by_default() {
        let cli = Cli::try_parse_from(["rabbit-rpc", "call", "--json", r#"{"n": 1}"#]).unwrap();
        let Command::Call(call) = cli.command else {
            panic!("not a call")
        };
        assert_eq!(call.json.as_deref(), Some(r#"{"n": 1}"#));
        assert!(Cli::try_parse_from(["rabbit-rpc", "call", "--json", "{}", "30"]).is_err());
        let cli = Cli::try_parse_from(["rabbit-rpc", "ping"]).unwrap();
        let Command::Ping(ping) = cli.command else {
            panic!("not a ping")
        };
        assert_eq!(
            (ping.queue.as_str(), ping.timeout),
            ("rpc_queue", Duration::from_secs(5))
        );
    }

    #[test]
    fn url_goes_before_or_after_the_subcommand() {
        for args in [
            &["rabbit-rpc", "--url", "amqp://h", "call"][..],
            &["rabbit-rpc", "call", "--url", "amqp://h"][..],
        ] {
            assert_eq!(Cli::try_parse_from(args).unwrap().urls, ["amqp://h"]);
        }
    }

    #[test]
    fn several_urls_by_repeating_or_commas() {
        for args in [
            &[
                "rabbit-rpc",
                "--url",
                "amqp://a",
                "--url",
                "amqp://b",
                "call",
            ][..],
            &["rabbit-rpc", "call", "--url", "amqp://a,amqp://b"][..],
        ] {
            assert_eq!(
                Cli::try_parse_from(args).unwrap().urls,
                ["amqp://a", "amqp://b"]
            );
        }
    }

    #[test]
    fn the_command_line_wins_over_the_environment() {
        use ValueSource::{CommandLine, DefaultValue, EnvVariable};
        for (url, file, chosen) in [
            (Some(DefaultValue), Some(CommandLine), Ok(true)),
            (Some(DefaultValue), Some(EnvVariable), Ok(true)),
            (Some(EnvVariable), Some(CommandLine), Ok(true)),
            (Some(CommandLine), Some(EnvVariable), Ok(false)),
            (Some(CommandLine), None, Ok(false)),
            (Some(CommandLine), Some(CommandLine), Err("not both")),
            (Some(EnvVariable), Some(EnvVariable), Err("both set")),
        ] {
            match (file_wins(url, file), chosen) {
                (Ok(wins), Ok(expected)) => assert_eq!(wins, expected, "{url:?} {file:?}"),
                (Err(message), Err(says)) => assert!(message.contains(says), "{message}"),
                (got, _) => panic!("{url:?} {file:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn a_url_file_holds_urls_by_line_or_comma() {
        let dir = std::env::temp_dir().join(format!("rabbit-rpc-url-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("urls");
        std::fs::write(
            &file,
            "# the cluster\namqp://u:s3cret@a/%2f, amqp://u:s3cret@b/%2f\n\n  amqp://u:s3cret@c/%2f  \n",
        )
        .unwrap();
        assert_eq!(
            urls_from_file("--url-file", &file).unwrap(),
            [
                "amqp://u:s3cret@a/%2f",
                "amqp://u:s3cret@b/%2f",
                "amqp://u:s3cret@c/%2f"
            ]
        );
        std::fs::write(&file, "# nothing\n\n").unwrap();
        let empty = urls_from_file("--url-file", &file).unwrap_err();
        assert!(empty.ends_with("no broker URL in it"), "{empty}");
        std::fs::write(&file, b"amqp://u:s3cret@a/\xff").unwrap();
        let binary = urls_from_file("AMQP_URL_FILE", &file).unwrap_err();
        assert!(binary.starts_with("AMQP_URL_FILE "), "{binary}");
        assert!(binary.ends_with("not text (UTF-8)"), "{binary}");
        assert!(!binary.contains("s3cret"), "{binary}");
        let missing = urls_from_file("--url-file", &dir.join("missing")).unwrap_err();
        assert!(missing.ends_with("missing: no such file"), "{missing}");
        let directory = urls_from_file("--url-file", &dir).unwrap_err();
        assert!(directory.contains("cannot read it"), "{directory}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn call_defaults_match_the_tutorial() {
        let cli = Cli::try_parse_from(["rabbit-rpc", "call"]).unwrap();
        let Command::Call(call) = cli.command else {
            panic!("not a call")
        };
        assert_eq!(call.body, "30");
        assert_eq!(call.queue, "rpc_queue");
        assert_eq!(call.timeout, Duration::from_secs(30));
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3 parsecs").is_err());
        assert!(parse_duration("0s").is_err());
    }

    fn serve(args: &[&str]) -> Result<Vec<(ServiceName, String)>, String> {
        let cli = Cli::try_parse_from([&["rabbit-rpc", "serve"][..], args].concat()).unwrap();
        let Command::Serve(serve) = cli.command else {
            panic!("not serve")
        };
        serve.queues()
    }

    #[test]
    fn serve_caps_handlers_only_when_asked() {
        let handler_timeout = |args: &[&str]| {
            let cli =
                Cli::try_parse_from([&["rabbit-rpc", "serve", "fib"][..], args].concat()).unwrap();
            let Command::Serve(serve) = cli.command else {
                panic!("not serve")
            };
            serve.server.handler_timeout
        };
        assert_eq!(handler_timeout(&[]), None);
        assert_eq!(
            handler_timeout(&["--handler-timeout", "250ms"]),
            Some(Duration::from_millis(250))
        );
    }

    #[test]
    fn one_service_listens_on_rpc_queue_or_the_queue_named() {
        assert_eq!(
            serve(&["fib"]),
            Ok(vec![(ServiceName::Fib, "rpc_queue".into())])
        );
        assert_eq!(
            serve(&["echo"]),
            Ok(vec![(ServiceName::Echo, "rpc_queue".into())])
        );
        assert_eq!(
            serve(&["fib", "--queue", "math"]),
            Ok(vec![(ServiceName::Fib, "math".into())])
        );
        assert_eq!(
            serve(&["fib", "--queue", "fib=math"]),
            Ok(vec![(ServiceName::Fib, "math".into())])
        );
        // A queue name with '=' that names no service is a name.
        assert_eq!(
            serve(&["fib", "--queue", "a=b"]),
            Ok(vec![(ServiceName::Fib, "a=b".into())])
        );
    }

    #[test]
    fn several_services_each_take_their_own_queue() {
        assert_eq!(
            serve(&["fib", "echo"]),
            Ok(vec![
                (ServiceName::Fib, "rpc_queue".into()),
                (ServiceName::Echo, "echo".into())
            ])
        );
        assert_eq!(
            serve(&["echo", "fib", "--queue", "echo=e2", "--queue", "fib=f2"]),
            Ok(vec![
                (ServiceName::Echo, "e2".into()),
                (ServiceName::Fib, "f2".into())
            ])
        );
    }

    #[test]
    fn ambiguous_serve_arguments_are_refused() {
        for args in [
            &["fib", "echo", "--queue", "q"][..],
            &["fib", "fib"][..],
            &["fib", "--queue", "echo=q"][..],
            &["fib", "echo", "--queue", "echo=rpc_queue"][..],
            &["echo", "--max-n", "5"][..],
            &["fib", "--queue", "a", "--queue", "b"][..],
        ] {
            assert!(serve(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
