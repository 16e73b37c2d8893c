//! Command line of `kubectl-flashrollup` (run as `kubectl flashrollup ...`) and the thin layer
//! of API calls around the pure parts: read the FlashRollup, patch it with the plugin's own
//! field manager, watch the operator's answer, print.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use super::error::{PluginError, is_conflict, is_not_found};
use super::extend::Outcome;
use super::status::time_left;
use super::{FIELD_MANAGER, duration, extend, logs, settle, status};
use crate::api::{FlashRollup, Phase};

/// Inspect and steer Flashlayer FlashRollups: status, extend, settle, logs.
#[derive(Debug, Parser)]
#[command(name = "kubectl-flashrollup", bin_name = "kubectl flashrollup", version)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// The kubectl flags the plugin honours (kubectl does not pass its own flags to plugins).
#[derive(Debug, Args)]
pub struct Global {
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Namespace of the FlashRollup (default: the context's namespace, else "default").
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Phase, heights, time left, operators, settlement and conditions of a FlashRollup.
    Status(StatusArgs),
    /// Lengthen a FlashRollup's life by a duration (its ttl or expiresAt, whichever it uses).
    Extend(ExtendArgs),
    /// Ask a FlashRollup to end now (the settle-now annotation): settle, or tear down per policy.
    Settle(SettleArgs),
    /// Logs of a FlashRollup's sequencer, or of an operator's verifier.
    Logs(LogsArgs),
}

/// Output format of `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Yaml,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Name of the FlashRollup.
    pub name: String,
    /// Output format: the summary text, or the object as JSON or YAML.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct ExtendArgs {
    /// Name of the FlashRollup.
    pub name: String,
    /// How much longer it lives, e.g. 30m, 2h, 1h30m or 1d.
    #[arg(value_parser = duration::parse)]
    pub duration: Duration,
    /// How long to wait for the operator to accept (or refuse) the new lifetime.
    #[arg(long, default_value = "30s", value_parser = duration::parse)]
    pub timeout: Duration,
    /// Patch and return without waiting for the operator's answer.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Args)]
pub struct SettleArgs {
    /// Name of the FlashRollup.
    pub name: String,
    /// Wait until the rollup is TornDown (or Failed), printing each phase it goes through.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "10m", value_parser = duration::parse)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Name of the FlashRollup.
    pub name: String,
    /// The verifier this AVSOperator runs for the rollup, instead of the sequencer.
    #[arg(long, value_name = "OPERATOR")]
    pub verifier: Option<String>,
    /// Which sequencer in mode Squad (the StatefulSet ordinal).
    #[arg(long, default_value_t = 0, conflicts_with = "verifier")]
    pub replica: u32,
    /// Keep streaming new lines.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
    pub tail: Option<i64>,
    /// The previous instance of the container (after a restart).
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Prefix each line with its timestamp.
    #[arg(long)]
    pub timestamps: bool,
}

/// Run a parsed command line: exit code 0, or 1 with `error: ...` on stderr.
pub fn main(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), PluginError> {
    let (client, ns) = connect(&cli.global).await?;
    let api: Api<FlashRollup> = Api::namespaced(client.clone(), &ns);
    let stdout = &mut std::io::stdout();
    match cli.command {
        Command::Status(args) => {
            let fr = get(&api, &args.name, &ns).await?;
            let text = match args.output {
                Format::Text => status::render(&fr, Timestamp::now()),
                Format::Json => serde_json::to_string_pretty(&for_output(fr))
                    .map(|s| s + "\n")
                    .map_err(output)?,
                Format::Yaml => serde_yaml::to_string(&for_output(fr)).map_err(output)?,
            };
            write(stdout, &text)
        }
        Command::Extend(args) => run_extend(&api, &ns, &args, stdout).await,
        Command::Settle(args) => run_settle(&api, &ns, &args, stdout).await,
        Command::Logs(args) => {
            let fr = get(&api, &args.name, &ns).await?;
            let target = match args.verifier {
                Some(operator) => logs::Target::Verifier { operator },
                None => logs::Target::Sequencer { replica: args.replica },
            };
            let options = logs::Options {
                follow: args.follow,
                tail: args.tail,
                previous: args.previous,
                timestamps: args.timestamps,
            };
            logs::read(&client, &fr, &target, &options, stdout).await
        }
    }
}

/// A client for the kubeconfig, context and namespace the flags (or the environment) name.
async fn connect(global: &Global) -> Result<(Client, String), PluginError> {
    let options = KubeConfigOptions {
        context: global.context.clone(),
        cluster: None,
        user: None,
    };
    let kubeconfig = match &global.kubeconfig {
        // kube's error names the path already.
        Some(path) => Kubeconfig::read_from(path).map_err(|e| PluginError::Kubeconfig(error_chain(&e)))?,
        None => match Kubeconfig::read() {
            Ok(k) => k,
            // Run inside a pod without a kubeconfig: its service account, as kubectl does.
            Err(_) if global.context.is_none() && std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => {
                let config = Config::incluster().map_err(|e| PluginError::Kubeconfig(error_chain(&e)))?;
                return client_for(config, global);
            }
            Err(e) => return Err(PluginError::Kubeconfig(error_chain(&e))),
        },
    };
    let config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| PluginError::Kubeconfig(error_chain(&e)))?;
    client_for(config, global)
}

fn client_for(config: Config, global: &Global) -> Result<(Client, String), PluginError> {
    let ns = global
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| PluginError::Kubeconfig(error_chain(&e)))?;
    Ok((client, ns))
}

/// An error and its sources on one line (kube's errors say "failed to ..." and keep the cause
/// in the source).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Read the FlashRollup, with the errors a person understands.
async fn get(api: &Api<FlashRollup>, name: &str, ns: &str) -> Result<FlashRollup, PluginError> {
    api.get(name).await.map_err(|e| not_found_or(e, name, ns, "reading"))
}

fn not_found_or(e: kube::Error, name: &str, ns: &str, doing: &str) -> PluginError {
    if is_not_found(&e) {
        // A 404 without the object's name is the API itself missing: the CRD is not installed.
        let crd_missing = matches!(&e, kube::Error::Api(s) if s.details.as_ref().is_none_or(|d| d.name.is_empty()));
        if crd_missing {
            return PluginError::Api {
                what: format!("{doing} flashrollup \"{name}\""),
                message: "the cluster does not serve flashrollups.rollups.flashlayer.dev/v1alpha1: is Flashlayer installed (its CRDs)?".into(),
            };
        }
        return PluginError::NotFound {
            name: name.to_owned(),
            namespace: ns.to_owned(),
        };
    }
    PluginError::api(format!("{doing} flashrollup \"{name}\" in namespace \"{ns}\""), &e)
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    }
}

fn output(e: impl std::fmt::Display) -> PluginError {
    PluginError::Output(e.to_string())
}

fn write(out: &mut dyn Write, text: &str) -> Result<(), PluginError> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(output)
}

/// The object without managedFields, as `kubectl get -o yaml` shows it.
fn for_output(mut fr: FlashRollup) -> FlashRollup {
    fr.metadata.managed_fields = None;
    fr
}

async fn run_extend(
    api: &Api<FlashRollup>,
    ns: &str,
    args: &ExtendArgs,
    out: &mut dyn Write,
) -> Result<(), PluginError> {
    let name = args.name.as_str();
    // The patch carries the resourceVersion it was computed from: on a conflict (someone else
    // changed the object) read again and add the duration to what is there now.
    let mut attempts = 0;
    let (ext, patched) = loop {
        attempts += 1;
        let fr = get(api, name, ns).await?;
        let ext = extend::plan(&fr, args.duration, Timestamp::now())?;
        match api.patch(name, &patch_params(), &Patch::Merge(&ext.patch)).await {
            Ok(patched) => break (ext, patched),
            Err(e) if is_conflict(&e) && attempts < 5 => continue,
            Err(e) => return Err(not_found_or(e, name, ns, "patching")),
        }
    };
    write(
        out,
        &format!(
            "flashrollup \"{name}\" extended by {}: {} {} -> {}\n",
            duration::go(args.duration),
            ext.field,
            ext.from,
            ext.to
        ),
    )?;
    if args.no_wait {
        return Ok(());
    }
    let generation = patched.metadata.generation.unwrap_or_default();
    let deadline = Instant::now() + args.timeout;
    loop {
        let fr = get(api, name, ns).await?;
        match extend::outcome(&fr, generation) {
            Outcome::Accepted { expires_at: Some(at) } => {
                return write(out, &format!("expires at {at} ({})\n", time_left(at, Timestamp::now())));
            }
            Outcome::Accepted { expires_at: None } => {
                return write(out, "the ttl starts counting when the rollup is Running\n");
            }
            Outcome::Refused { reason, message } => {
                return Err(PluginError::Refused {
                    name: name.to_owned(),
                    reason,
                    message,
                });
            }
            Outcome::NotObserved if Instant::now() >= deadline => {
                // The spec is changed; a non-zero exit would invite a retry that extends twice.
                eprintln!(
                    "warning: the operator has not acknowledged the change within {} (is it running?); check with: kubectl flashrollup status {name} -n {ns}",
                    duration::go(args.timeout)
                );
                return Ok(());
            }
            Outcome::NotObserved => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

async fn run_settle(
    api: &Api<FlashRollup>,
    ns: &str,
    args: &SettleArgs,
    out: &mut dyn Write,
) -> Result<(), PluginError> {
    let name = args.name.as_str();
    let fr = get(api, name, ns).await?;
    match settle::plan(&fr) {
        settle::Plan::AlreadyEnded { phase, ended_at } => {
            let at = ended_at.map(|t| format!(" at {t}")).unwrap_or_default();
            return write(
                out,
                &format!("flashrollup \"{name}\" already ended{at} and is {phase}: nothing to settle\n"),
            );
        }
        settle::Plan::AlreadyRequested { note } => {
            write(
                out,
                &format!("flashrollup \"{name}\": settle-now was already requested; {note}\n"),
            )?;
        }
        settle::Plan::Annotate { patch, note } => {
            api.patch(name, &patch_params(), &Patch::Merge(&patch))
                .await
                .map_err(|e| not_found_or(e, name, ns, "annotating"))?;
            write(out, &format!("flashrollup \"{name}\": settle-now requested; {note}\n"))?;
        }
    }
    if !args.wait {
        return Ok(());
    }
    let deadline = Instant::now() + args.timeout;
    let mut last: Option<Phase> = None;
    loop {
        let fr = match api.get_opt(name).await {
            Ok(fr) => fr,
            Err(e) => return Err(not_found_or(e, name, ns, "reading")),
        };
        let phase = fr.as_ref().and_then(|f| f.status.as_ref()).and_then(|s| s.phase);
        if phase != last && fr.is_some() {
            write(out, &format!("phase {}\n", phase.map(|p| p.as_str()).unwrap_or("-")))?;
            last = phase;
        }
        if settle::finished(fr.as_ref()) {
            return match fr {
                None => write(out, "deleted (teardown.policy Delete)\n"),
                Some(fr) => finished_summary(&fr, out),
            };
        }
        if Instant::now() >= deadline {
            return Err(PluginError::Timeout(format!(
                "flashrollup \"{name}\" is still {} after {}; see kubectl flashrollup status {name} -n {ns}",
                last.map(|p| p.as_str()).unwrap_or("-"),
                duration::go(args.timeout)
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The last words of `settle --wait`: the L1 transaction, or why it failed.
fn finished_summary(fr: &FlashRollup, out: &mut dyn Write) -> Result<(), PluginError> {
    let status = fr.status.clone().unwrap_or_default();
    if status.phase == Some(Phase::Failed) {
        let why = status
            .conditions
            .iter()
            .find(|c| c.type_ == crate::api::conditions::READY)
            .map(|c| format!("{}: {}", c.reason, c.message))
            .unwrap_or_else(|| "see its conditions".into());
        return Err(PluginError::Api {
            what: format!("flashrollup \"{}\" failed", kube::ResourceExt::name_any(fr)),
            message: why,
        });
    }
    match status
        .settlement
        .as_ref()
        .and_then(|s| s.tx_hash.as_ref().map(|tx| (s, tx)))
    {
        Some((s, tx)) => write(
            out,
            &format!(
                "settled in L1 transaction {tx} (block {}), final height {}, state root {}\n",
                s.l1_block_number.map(|b| b.to_string()).unwrap_or_else(|| "-".into()),
                s.final_height.map(|h| h.to_string()).unwrap_or_else(|| "-".into()),
                s.state_root.as_deref().unwrap_or("-")
            ),
        ),
        None => write(out, "torn down without settlement\n"),
    }
}
