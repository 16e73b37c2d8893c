//! The real operator as a child process (`flashlayer-operator run`), out of cluster, with the
//! chart ServiceAccount's kubeconfig and leader election on the chart's Lease.
//!
//! It runs under the bash guard of [`crate::process::Guarded`]: if the test process dies without
//! cleaning up (a Ctrl-C, a crash), the guard stops the operator, so that no orphan keeps the
//! Lease for the next run.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::install::{Installed, LEASE, NAMESPACE};
use crate::log;
use crate::process::{Guarded, free_port};

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
    process: Guarded,
}

impl Operator {
    /// Start `flashlayer-operator run` with `identity` in the Lease.
    pub fn start(installed: &Installed, identity: &str) -> Result<Operator, String> {
        Self::start_with(installed, identity, &Options::default())
    }

    /// Start `flashlayer-operator run` with `identity` in the Lease and `options`.
    pub fn start_with(installed: &Installed, identity: &str, options: &Options) -> Result<Operator, String> {
        let metrics_addr = format!("127.0.0.1:{}", free_port());
        // One log per process, even for a restart under the same identity.
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed) + 1;
        let log_path = installed.dir.join(format!("operator-{n:02}-{identity}.log"));
        let interval = options.node_status_interval.as_deref().unwrap_or("0s");
        let mut args: Vec<String> = [
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
        ]
        .map(str::to_owned)
        .to_vec();
        if let Some(endpoint) = &options.node_endpoint {
            args.extend(["--node-endpoint".to_owned(), endpoint.clone()]);
        }
        let kubeconfig = installed.operator_kubeconfig.to_string_lossy().into_owned();
        let mut env: Vec<(&str, &str)> = vec![
            ("KUBECONFIG", &kubeconfig),
            ("RUST_LOG", "info,kube=warn,hyper=warn"),
            ("NO_COLOR", "1"),
        ];
        env.extend(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let process = Guarded::start("operator", &log_path, &installed.operator_bin, &args, &env)?;
        let extra: Vec<String> = options.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        log(format!(
            "started operator {identity} (pid {}, metrics {metrics_addr}, log {}{})",
            process.pid,
            log_path.display(),
            if extra.is_empty() {
                String::new()
            } else {
                format!(", env {}", extra.join(" "))
            }
        ));
        Ok(Operator {
            identity: identity.to_owned(),
            pid: process.pid,
            log: log_path,
            metrics_addr,
            process,
        })
    }

    /// Crash it: SIGKILL, no chance to release the Lease.
    pub fn kill(&mut self) {
        log(format!("SIGKILL operator {} (pid {})", self.identity, self.pid));
        self.process.kill();
    }

    /// Stop it gracefully (SIGTERM, it releases the Lease), or SIGKILL after 10 s.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Whether the operator process itself has exited on its own.
    pub fn has_exited(&self) -> bool {
        self.process.has_exited()
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// Its whole log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
