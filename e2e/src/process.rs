//! Local processes a scenario runs besides the operator (anvil, the rollup node), each under
//! the same kind of bash guard as the operator: if the test process dies without cleaning up,
//! the guard's stdin closes and it stops the process, so nothing is left listening on loopback.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Starts `"$@"` in the background with its output appended to `$1`, prints its PID, then
/// waits for stdin to close and stops it (SIGTERM) and reaps it.
const GUARD: &str = r#"log="$1"; shift
"$@" </dev/null >>"$log" 2>&1 &
p=$!
echo "$p"
exec >/dev/null
cat >/dev/null
kill -TERM "$p" 2>/dev/null
wait "$p"
"#;

/// One guarded process.
#[derive(Debug)]
pub struct Guarded {
    pub name: String,
    pub pid: u32,
    pub log: PathBuf,
    guard: Child,
    guard_stdin: Option<ChildStdin>,
    stopped: bool,
}

impl Guarded {
    /// Start `program args...` with `env`, its output appended to `log`.
    pub fn start(
        name: &str,
        log: &Path,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Result<Guarded, String> {
        let mut guard = Command::new("bash")
            .arg("-c")
            .arg(GUARD)
            .arg(format!("{name}-guard"))
            .arg(log)
            .arg(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting {name}: {e}"))?;
        let mut line = String::new();
        if let Some(out) = guard.stdout.take() {
            BufReader::new(out)
                .read_line(&mut line)
                .map_err(|e| format!("reading the PID of {name}: {e}"))?;
        }
        let pid: u32 = line
            .trim()
            .parse()
            .map_err(|e| format!("the guard of {name} printed {line:?} instead of a PID: {e}"))?;
        Ok(Guarded {
            name: name.to_owned(),
            pid,
            log: log.to_path_buf(),
            guard_stdin: guard.stdin.take(),
            guard,
            stopped: false,
        })
    }

    /// Stop it gracefully (SIGTERM: anvil dumps its state), or SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        signal(self.pid, "TERM");
        if !self.reap(Duration::from_secs(10)) {
            signal(self.pid, "KILL");
            self.reap(Duration::from_secs(5));
        }
    }

    /// Close the guard's stdin and wait for the guard (which reaps the process) to exit.
    fn reap(&mut self, timeout: Duration) -> bool {
        // Until the guard reaps it, a dead process is a zombie: its PID cannot be reused, so
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

    /// Crash it: SIGKILL, no chance to clean up.
    pub fn kill(&mut self) {
        signal(self.pid, "KILL");
        self.reap(Duration::from_secs(10));
    }

    /// Whether the process still runs under its guard.
    pub fn is_running(&mut self) -> bool {
        !self.stopped && matches!(self.guard.try_wait(), Ok(None))
    }

    /// Whether the process exited on its own.
    pub fn has_exited(&self) -> bool {
        self.stopped || exited(self.pid)
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether process `pid` is gone or a zombie (exited, not reaped yet).
pub fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) state ...`: the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(true),
        Err(_) => true,
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// A TCP port on 127.0.0.1 that is free now, from below the kernel's ephemeral range.
///
/// A port from `bind(:0)` is ephemeral: once released, the kernel may give it to any outgoing
/// connection (a run opens hundreds) before the process meant to listen on it binds it. CI saw a
/// verifier fail that way ("Address already in use"). Below the range only explicit binds take
/// ports; a counter keeps this process's picks apart, and a start from the pid keeps runs apart.
pub fn free_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    const FIRST: u64 = 10_000;
    let low = u64::from(ephemeral_low());
    if low <= FIRST + 1_000 {
        return TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port on 127.0.0.1");
    }
    let span = low - FIRST;
    let start = u64::from(std::process::id()) * 7_919;
    (0..span)
        .map(|_| FIRST + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span)
        .filter_map(|port| u16::try_from(port).ok())
        .find(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free port on 127.0.0.1 below the ephemeral range")
}

/// The first port of the kernel's ephemeral range, read once.
fn ephemeral_low() -> u16 {
    static LOW: OnceLock<u16> = OnceLock::new();
    *LOW.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
            .unwrap_or(32_768)
    })
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn listening(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_bindable_and_not_ephemeral() {
        let low = ephemeral_low();
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        for port in ports {
            assert!(port < low, "{port} is in the ephemeral range (from {low})");
            TcpListener::bind(("127.0.0.1", port)).expect("free");
        }
    }
}
