//! One-time setup per test binary: install the Helm chart, wait for the CRDs, and write a
//! kubeconfig that authenticates as the chart's ServiceAccount for the operator processes.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::cmd::{helm_ok, kubectl_ok};
use crate::log;

/// Helm release, its namespace, and the names the chart derives from it.
pub const RELEASE: &str = "flashlayer";
pub const NAMESPACE: &str = "flashlayer-system";
/// The chart's ServiceAccount, ClusterRole and leader-election Lease are named after the release.
pub const SERVICE_ACCOUNT: &str = "flashlayer";
pub const CLUSTER_ROLE: &str = "flashlayer";
pub const LEASE: &str = "flashlayer";
/// The two CRDs the chart installs.
pub const CRDS: [&str; 2] = [
    "flashrollups.rollups.flashlayer.dev",
    "avsoperators.rollups.flashlayer.dev",
];

/// What the scenarios share: paths, and the installed chart.
#[derive(Debug)]
pub struct Installed {
    /// The repository root.
    pub root: PathBuf,
    /// Where this test binary keeps operator logs and kubeconfigs.
    pub dir: PathBuf,
    /// The operator binary (`cargo build -p flashlayer-operator`).
    pub operator_bin: PathBuf,
    /// A kubeconfig with the chart ServiceAccount's token.
    pub operator_kubeconfig: PathBuf,
}

/// The chart installed and the operator's kubeconfig written, once per test binary. Panics
/// (failing the calling test) with the reason when the setup cannot be done.
pub fn installed() -> &'static Installed {
    static ONCE: OnceLock<Result<Installed, String>> = OnceLock::new();
    match ONCE.get_or_init(setup) {
        Ok(i) => i,
        Err(e) => panic!("e2e setup failed: {e}"),
    }
}

fn setup() -> Result<Installed, String> {
    if std::env::var_os("KUBECONFIG").is_none() {
        return Err("KUBECONFIG is not set: run the suite with e2e/run (or eval \"$(e2e/cluster env)\")".into());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("the e2e crate has no parent directory")?
        .to_path_buf();
    let operator_bin = operator_crate_binary(&root, "FLASHLAYER_OPERATOR_BIN", "flashlayer-operator")?;
    let binary = std::env::args()
        .next()
        .and_then(|a| Path::new(&a).file_name().map(|f| f.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "e2e".into());
    let base = std::env::var_os("FLASHLAYER_E2E_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("flashlayer-e2e"));
    let dir = base.join(format!("{binary}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    log(format!("artifacts (operator logs) in {}", dir.display()));

    // `upgrade --install` is `install` on a fresh cluster, and idempotent for the next binary.
    let chart = root.join("charts/flashlayer");
    log("helm install flashlayer charts/flashlayer");
    helm_ok(&[
        "upgrade",
        "--install",
        RELEASE,
        &chart.to_string_lossy(),
        "-n",
        NAMESPACE,
        "--create-namespace",
        "--wait=false",
        "--set",
        "image.pullPolicy=Never",
    ])?;
    let mut wait = vec!["wait", "--for=condition=Established", "--timeout=60s"];
    let crds: Vec<String> = CRDS.iter().map(|c| format!("crd/{c}")).collect();
    wait.extend(crds.iter().map(String::as_str));
    kubectl_ok(&wait, None)?;

    let operator_kubeconfig = dir.join("operator.kubeconfig");
    write_service_account_kubeconfig(&operator_kubeconfig, "2h")?;
    Ok(Installed {
        root,
        dir,
        operator_bin,
        operator_kubeconfig,
    })
}

/// A binary of the operator crate that e2e/run built: `$<env>` if set, else
/// `<target dir>/debug/<name>`.
pub fn operator_crate_binary(root: &Path, env: &str, name: &str) -> Result<PathBuf, String> {
    let bin = match std::env::var_os(env) {
        Some(b) => PathBuf::from(b),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"))
            .join("debug")
            .join(name),
    };
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "{} does not exist: run `cargo build -p flashlayer-operator` first (e2e/run does)",
            bin.display()
        ))
    }
}

/// A kubeconfig for the chart's ServiceAccount: a token valid for `duration` (e.g. "2h"), and the
/// server and CA of the admin kubeconfig.
pub fn write_service_account_kubeconfig(path: &Path, duration: &str) -> Result<(), String> {
    let token = kubectl_ok(
        &[
            "create",
            "token",
            SERVICE_ACCOUNT,
            "-n",
            NAMESPACE,
            &format!("--duration={duration}"),
        ],
        None,
    )?;
    let view = |field: &str| {
        kubectl_ok(
            &[
                "config",
                "view",
                "--raw",
                "--minify",
                "-o",
                &format!("jsonpath={{.clusters[0].cluster.{field}}}"),
            ],
            None,
        )
    };
    let server = view("server")?;
    let ca = view("certificate-authority-data")?;
    let config = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster: {{server: {server}, certificate-authority-data: {ca}}}
users:
- name: {SERVICE_ACCOUNT}
  user: {{token: {token}}}
contexts:
- name: e2e
  context: {{cluster: e2e, user: {SERVICE_ACCOUNT}}}
current-context: e2e
",
        token = token.trim()
    );
    std::fs::write(path, config).map_err(|e| format!("writing {}: {e}", path.display()))?;
    restrict(path)
}

#[cfg(unix)]
fn restrict(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

#[cfg(not(unix))]
fn restrict(_: &Path) -> Result<(), String> {
    Ok(())
}
