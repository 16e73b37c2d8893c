//! Running the command-line tools a user would (kubectl, helm) and capturing what they print.

use std::io::Write;
use std::process::{Command, Stdio};

/// What a finished command printed, and whether it succeeded.
#[derive(Debug, Clone)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout, or an error naming the command and carrying its stderr.
    pub fn ok(self, what: &str) -> Result<String, String> {
        if self.success {
            Ok(self.stdout)
        } else {
            Err(format!("{what} failed: {}{}", self.stderr.trim(), self.stdout.trim()))
        }
    }
}

/// Run `program args...`, feeding `stdin` when given. Only a failure to start is an `Err`.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<Output, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e} (is it on PATH? use e2e/run)"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|e| format!("writing to {program}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for {program}: {e}"))?;
    Ok(Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// `kubectl args...` with the admin kubeconfig of the environment (`KUBECONFIG`).
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> Output {
    run("kubectl", args, stdin).unwrap_or_else(|e| Output {
        success: false,
        stdout: String::new(),
        stderr: e,
    })
}

/// `kubectl args...` that must succeed: its stdout, or an error with its stderr.
pub fn kubectl_ok(args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    kubectl(args, stdin).ok(&format!("kubectl {}", args.join(" ")))
}

/// `helm args...` that must succeed.
pub fn helm_ok(args: &[&str]) -> Result<String, String> {
    run("helm", args, None)?.ok(&format!("helm {}", args.join(" ")))
}
