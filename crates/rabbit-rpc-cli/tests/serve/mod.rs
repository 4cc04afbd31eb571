//! `rabbit-rpc serve SERVICE` as a child process, for the CLI crate's
//! integration tests: started, waited on until it says it is ready, its
//! stderr collected, signalled, and checked on exit.

#![allow(dead_code, missing_docs)]

use std::{
    process::{ExitStatus, Output, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::oneshot,
};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_rabbit-rpc");

/// Runs `rabbit-rpc ARGS` to its end against the broker at `url` (given as
/// `AMQP_URL`), with no `RUST_LOG`; fails the test if it takes over 60 s.
pub async fn run(url: &str, args: &[&str]) -> Output {
    let run = Command::new(BIN)
        .args(args)
        .env("AMQP_URL", url)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("rabbit-rpc hung")
        .expect("run rabbit-rpc")
}

/// A running `rabbit-rpc serve`; killed if dropped. Its stderr is collected
/// so failures can show it.
pub struct ServeProcess {
    pub child: Child,
    pub pid: u32,
    log: Arc<Mutex<Vec<String>>>,
    /// The task reading its stderr: done once the process has exited and
    /// every line it wrote is in `log`.
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl ServeProcess {
    /// Starts `rabbit-rpc serve SERVICE --queue QUEUE EXTRA...` against the
    /// test broker and returns once it logged that it is serving.
    pub async fn start(service: &str, queue: &str, extra: &[&str]) -> ServeProcess {
        let mut child = Command::new(BIN)
            .args(["serve", service, "--queue", queue])
            .args(extra)
            .env("AMQP_URL", crate::common::url())
            // SERVE_RUST_LOG=debug to see more of what servers do.
            .env(
                "RUST_LOG",
                std::env::var("SERVE_RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start rabbit-rpc serve");
        let pid = child.id().expect("just started");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready, is_ready) = oneshot::channel::<()>();
        let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let collected = Arc::clone(&log);
        // "serving fib on queue …", "… on quorum queue …", "… on durable queue …"
        let ready_line = format!("serving {service} on ");
        // Drains stderr for the process's whole life, so it never blocks on
        // a full pipe.
        let reader = tokio::spawn(async move {
            let mut ready = Some(ready);
            while let Ok(Some(line)) = lines.next_line().await {
                let serving = line.contains(&ready_line);
                collected.lock().unwrap().push(line);
                if serving && let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
            }
        });
        let server = ServeProcess {
            child,
            pid,
            log,
            reader: Some(reader),
        };
        match tokio::time::timeout(Duration::from_secs(30), is_ready).await {
            Ok(Ok(())) => server,
            Ok(Err(_)) => panic!(
                "serve {service} {extra:?} exited before it was ready:\n{}",
                server.log()
            ),
            Err(_) => panic!(
                "serve {service} {extra:?} not ready within 30 s:\n{}",
                server.log()
            ),
        }
    }

    /// Everything it wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The stderr lines so far for which `what` holds.
    pub fn lines(&self, what: impl Fn(&str) -> bool) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|line| what(line))
            .cloned()
            .collect()
    }

    /// The address of its operations endpoint (`serve --http`), as logged.
    pub fn http_address(&self) -> String {
        self.lines(|line| line.contains("metrics and probes on http://"))
            .first()
            .and_then(|line| {
                let rest = &line[line.find("http://")? + "http://".len()..];
                Some(rest.split(':').take(2).collect::<Vec<_>>().join(":"))
            })
            .unwrap_or_else(|| {
                panic!(
                    "no operations endpoint in the log:
{}",
                    self.log()
                )
            })
    }

    /// Sends `signal` (e.g. `-TERM`, `-KILL`) with `kill`.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {} failed", self.pid);
    }

    /// Waits for it to exit, failing the test after `limit`; then for its
    /// last lines to be read, so the log is whole (the exit can come before
    /// the reader has seen them).
    pub async fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.expect("wait for serve"),
            Err(_) => panic!(
                "serve (pid {}) did not exit within {limit:?}:\n{}",
                self.pid,
                self.log()
            ),
        };
        if let Some(reader) = self.reader.take() {
            // Its stderr closed with it, so the reader ends at once.
            let _ = tokio::time::timeout(Duration::from_secs(10), reader).await;
        }
        status
    }

    /// Whether this very process is still running (it never exited).
    pub fn still_running(&mut self) -> bool {
        self.child.try_wait().expect("poll serve").is_none()
    }

    /// SIGTERM, then it must exit 0 within 10 s.
    pub async fn stop(&mut self) {
        self.signal("-TERM");
        let status = self.exit_within(Duration::from_secs(10)).await;
        assert_eq!(
            status.code(),
            Some(0),
            "serve ended with {status} after SIGTERM:\n{}",
            self.log()
        );
    }
}
