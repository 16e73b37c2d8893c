//! The kubectl plugin as a user runs it: `kubectl flashrollup ...`, with the directory of the
//! built `kubectl-flashrollup` first on PATH so that kubectl finds it, and what it printed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cmd::Output;
use crate::log;

/// `$FLASHLAYER_PLUGIN_BIN`, else `<target dir>/debug/kubectl-flashrollup` (built by
/// `cargo build -p flashlayer-operator`, which e2e/run does).
pub fn binary() -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("the e2e crate has no parent directory")?;
    crate::install::operator_crate_binary(root, "FLASHLAYER_PLUGIN_BIN", "kubectl-flashrollup")
}

/// `kubectl flashrollup args...` with the plugin's directory first on PATH.
fn command(args: &[&str]) -> Result<Command, String> {
    let bin = binary()?;
    let dir = bin.parent().ok_or("the plugin binary has no directory")?;
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    let path = std::env::join_paths(paths).map_err(|e| format!("building PATH: {e}"))?;
    let mut cmd = Command::new("kubectl");
    cmd.arg("flashrollup").args(args).env("PATH", path);
    Ok(cmd)
}

fn failed_to_start(e: String) -> Output {
    Output {
        success: false,
        stdout: String::new(),
        stderr: e,
    }
}

/// Run `kubectl flashrollup args...` to its end; what it printed and whether it succeeded.
pub fn run(args: &[&str]) -> Output {
    log(format!("kubectl flashrollup {}", args.join(" ")));
    let out = match command(args) {
        Ok(mut cmd) => cmd.stdin(Stdio::null()).output(),
        Err(e) => return failed_to_start(e),
    };
    match out {
        Ok(out) => Output {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
        Err(e) => failed_to_start(format!("cannot run kubectl flashrollup: {e}")),
    }
}

/// [`run`] with `-n ns` appended.
pub fn run_in(ns: &str, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend(["-n", ns]);
    run(&all)
}

/// Run a command that may not end by itself (`logs -f`): what it printed within `period`; it is
/// stopped then if still running (`success` is then true: it was still going).
pub fn run_for(args: &[&str], period: Duration) -> Output {
    log(format!(
        "kubectl flashrollup {} (for {:.0}s)",
        args.join(" "),
        period.as_secs_f64()
    ));
    let mut child = match command(args).and_then(|mut cmd| {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run kubectl flashrollup: {e}"))
    }) {
        Ok(c) => c,
        Err(e) => return failed_to_start(e),
    };
    // Readers on threads: a full pipe would block the plugin while we wait.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + period;
    let success = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.success(),
            Ok(None) if Instant::now() >= deadline => {
                // kubectl execs the plugin, so this child is the plugin itself.
                let _ = child.kill();
                let _ = child.wait();
                break true;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(_) => break false,
        }
    };
    Output {
        success,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}
