//! The real operator as a child process (`flashlayer-operator run`), out of cluster, with the
//! chart ServiceAccount's kubeconfig and leader election on the chart's Lease.
//!
//! Each process runs under a small bash guard that holds a pipe from this test process: if
//! the test process dies without cleaning up (a Ctrl-C, a crash), the pipe closes and the guard
//! stops the operator, so that no orphan keeps the Lease for the next run.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::install::{Installed, LEASE, NAMESPACE};
use crate::log;

/// Starts `"$@"` in the background with its output appended to `$1`, prints its PID, then
/// waits for stdin to close and stops it (SIGTERM) and reaps it.
const GUARD: &str = r#"log="$1"; shift
"$@" </dev/null >>"$log" 2>&1 &
op=$!
echo "$op"
exec >/dev/null
cat >/dev/null
kill -TERM "$op" 2>/dev/null
wait "$op"
"#;

/// How to start an operator beyond the defaults.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `--node-endpoint`: where the sequencer's admin API is (e.g. a node run on 127.0.0.1).
    pub node_endpoint: Option<String>,
    /// `--node-status-interval` (default `0s`: no status reads from the node).
    pub node_status_interval: Option<String>,
    /// Extra environment, e.g. `FLASHLAYER_FAULT`.
    pub env: Vec<(String, String)>,
}

/// One operator process.
#[derive(Debug)]
pub struct Operator {
    pub identity: String,
    /// PID of the operator itself (not of its guard).
    pub pid: u32,
    pub log: PathBuf,
    pub metrics_addr: String,
    guard: Child,
    guard_stdin: Option<ChildStdin>,
    stopped: bool,
}

impl Operator {
    /// Start `flashlayer-operator run` with `identity` in the Lease.
    pub fn start(installed: &Installed, identity: &str) -> Result<Operator, String> {
        Self::start_with(installed, identity, &Options::default())
    }

    /// Start `flashlayer-operator run` with `identity` in the Lease and `options`.
    pub fn start_with(installed: &Installed, identity: &str, options: &Options) -> Result<Operator, String> {
        let port = free_port()?;
        let metrics_addr = format!("127.0.0.1:{port}");
        // One log per process, even for a restart under the same identity.
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed) + 1;
        let log_path = installed.dir.join(format!("operator-{n:02}-{identity}.log"));
        let bin = installed.operator_bin.to_string_lossy().into_owned();
        let interval = options.node_status_interval.as_deref().unwrap_or("0s");
        let mut args = vec![
            "run",
            "--metrics-addr",
            &metrics_addr,
            "--log-format",
            "text",
            "--node-status-interval",
            interval,
            "--leader-election=true",
            "--lease-namespace",
            NAMESPACE,
            "--lease-name",
            LEASE,
            "--identity",
            identity,
        ];
        if let Some(endpoint) = &options.node_endpoint {
            args.extend(["--node-endpoint", endpoint]);
        }
        let mut guard = Command::new("bash")
            .arg("-c")
            .arg(GUARD)
            .arg("operator-guard")
            .arg(&log_path)
            .arg(&bin)
            .args(args)
            .env("KUBECONFIG", &installed.operator_kubeconfig)
            .env("RUST_LOG", "info,kube=warn,hyper=warn")
            .env("NO_COLOR", "1")
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting the operator: {e}"))?;
        let mut line = String::new();
        if let Some(out) = guard.stdout.take() {
            BufReader::new(out)
                .read_line(&mut line)
                .map_err(|e| format!("reading the operator's PID: {e}"))?;
        }
        let pid: u32 = line
            .trim()
            .parse()
            .map_err(|e| format!("the operator guard printed {line:?} instead of a PID: {e}"))?;
        let env: Vec<String> = options.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        log(format!(
            "started operator {identity} (pid {pid}, metrics {metrics_addr}, log {}{})",
            log_path.display(),
            if env.is_empty() {
                String::new()
            } else {
                format!(", env {}", env.join(" "))
            }
        ));
        Ok(Operator {
            identity: identity.to_owned(),
            pid,
            log: log_path,
            metrics_addr,
            guard_stdin: guard.stdin.take(),
            guard,
            stopped: false,
        })
    }

    /// Crash it: SIGKILL, no chance to release the Lease.
    pub fn kill(&mut self) {
        log(format!("SIGKILL operator {} (pid {})", self.identity, self.pid));
        signal(self.pid, "KILL");
        self.reap(Duration::from_secs(10));
    }

    /// Stop it gracefully (SIGTERM, it releases the Lease), or SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        signal(self.pid, "TERM");
        if !self.reap(Duration::from_secs(10)) {
            log(format!("operator {} ignored SIGTERM for 10s; SIGKILL", self.identity));
            signal(self.pid, "KILL");
            self.reap(Duration::from_secs(5));
        }
    }

    /// Close the guard's stdin and wait for the guard (which reaps the operator) to exit.
    fn reap(&mut self, timeout: Duration) -> bool {
        // Until the guard reaps it, a dead operator is a zombie: its PID cannot be reused, so
        // the signals above never reach another process.
        self.guard_stdin.take();
        let deadline = Instant::now() + timeout;
        loop {
            match self.guard.try_wait() {
                Ok(Some(_)) | Err(_) => {
                    self.stopped = true;
                    return true;
                }
                Ok(None) if Instant::now() >= deadline => return false,
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        !self.stopped && matches!(self.guard.try_wait(), Ok(None))
    }

    /// Whether the operator process itself has exited on its own (the guard, which has not
    /// reaped it yet, keeps it as a zombie).
    pub fn has_exited(&self) -> bool {
        crate::process::exited(self.pid)
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Its whole log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// A TCP port on 127.0.0.1 that is free now.
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}
