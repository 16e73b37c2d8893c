//! `kubectl flashrollup logs`: find the sequencer pod (or an operator's verifier pod) by the
//! labels the builders put on it, check that its container can have logs, and read or follow
//! them. Picking the pod is pure; reading is a thin layer over the pod log API.

use std::io::Write;

use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams};
use kube::{Api, Client, ResourceExt};

use super::error::PluginError;
use crate::api::{FlashRollup, Phase};
use crate::builders::verifier::operator_hash;
use crate::builders::{LABEL_COMPONENT, LABEL_MANAGED_BY, LABEL_OPERATOR, LABEL_ROLLUP, MANAGED_BY, component};

/// Whose logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The sequencer; `replica` is the StatefulSet ordinal (Squad mode has several).
    Sequencer { replica: u32 },
    /// The verifier an AVSOperator runs for this rollup.
    Verifier { operator: String },
}

impl Target {
    /// The container name the builders give it.
    pub fn container(&self) -> &'static str {
        match self {
            Target::Sequencer { .. } => component::SEQUENCER,
            Target::Verifier { .. } => component::VERIFIER,
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::Sequencer { .. } => "sequencer".into(),
            Target::Verifier { operator } => format!("verifier of operator \"{operator}\""),
        }
    }
}

/// Label selector of the target's pods.
pub fn selector(rollup: &str, target: &Target) -> String {
    let mut s = format!(
        "{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_ROLLUP}={rollup},{LABEL_COMPONENT}={}",
        target.container()
    );
    if let Target::Verifier { operator } = target {
        s.push_str(&format!(",{LABEL_OPERATOR}={}", operator_hash(operator)));
    }
    s
}

/// A verifier target must name an operator assigned to the rollup.
pub fn check_target(fr: &FlashRollup, target: &Target) -> Result<(), PluginError> {
    let Target::Verifier { operator } = target else {
        return Ok(());
    };
    let assigned: Vec<String> = fr
        .status
        .as_ref()
        .map(|s| s.assigned_operators.iter().map(|o| o.name.clone()).collect())
        .unwrap_or_default();
    if assigned.iter().any(|a| a == operator) {
        return Ok(());
    }
    let list = if assigned.is_empty() {
        "none is assigned".to_owned()
    } else {
        format!("assigned: {}", assigned.join(", "))
    };
    Err(PluginError::NoPod(format!(
        "operator \"{operator}\" is not assigned to flashrollup \"{}\" ({list})",
        fr.name_any()
    )))
}

/// Pick the pod to read from among those the selector found, and check its container can
/// have logs.
pub fn pick<'a>(fr: &FlashRollup, target: &Target, pods: &'a [Pod]) -> Result<&'a Pod, PluginError> {
    let name = fr.name_any();
    let ns = fr.namespace().unwrap_or_default();
    if pods.is_empty() {
        let phase = fr.status.as_ref().and_then(|s| s.phase).unwrap_or_default();
        let why = match phase {
            Phase::Pending => "its workloads are not created until enough operators are assigned",
            Phase::Settled | Phase::TornDown => "its workloads are gone",
            _ => "it may be starting or tearing down",
        };
        return Err(PluginError::NoPod(format!(
            "flashrollup \"{name}\" in namespace \"{ns}\" has no {} pod (phase {phase}: {why})",
            target.describe()
        )));
    }
    let pod = match target {
        Target::Sequencer { replica } => {
            let wanted = format!("{name}-{}-{replica}", component::SEQUENCER);
            pods.iter().find(|p| p.name_any() == wanted).ok_or_else(|| {
                let mut found: Vec<String> = pods.iter().map(ResourceExt::name_any).collect();
                found.sort();
                PluginError::NoPod(format!(
                    "flashrollup \"{name}\" has no sequencer pod {wanted} (found: {})",
                    found.join(", ")
                ))
            })?
        }
        // During a rollout a Deployment has two pods: the newest running one that is not going
        // away verifies now; a running one on its way out still has logs, a pod that has not
        // started has none.
        Target::Verifier { .. } => pods
            .iter()
            .max_by_key(|p| {
                let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                let live = p.metadata.deletion_timestamp.is_none();
                (running, live, p.metadata.creation_timestamp.as_ref().map(|t| t.0))
            })
            .ok_or_else(|| PluginError::NoPod(format!("flashrollup \"{name}\" has no verifier pod")))?,
    };
    container_ready_for_logs(pod, target.container())?;
    Ok(pod)
}

/// A container that never started has no logs; say why instead of the API's error.
fn container_ready_for_logs(pod: &Pod, container: &str) -> Result<(), PluginError> {
    let status = pod.status.as_ref();
    let cs = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|all| all.iter().find(|c| c.name == container));
    let Some(cs) = cs else {
        let phase = status.and_then(|s| s.phase.clone()).unwrap_or_else(|| "Unknown".into());
        return Err(PluginError::NoPod(format!(
            "pod {} ({phase}) has no {container} container status yet: it has not started, so it has no logs",
            pod.name_any()
        )));
    };
    let started = cs
        .state
        .as_ref()
        .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
        || cs.last_state.as_ref().is_some_and(|s| s.terminated.is_some());
    if started {
        return Ok(());
    }
    let waiting = cs.state.as_ref().and_then(|s| s.waiting.as_ref());
    let why = waiting
        .map(|w| {
            let reason = w.reason.clone().unwrap_or_else(|| "Waiting".into());
            match &w.message {
                Some(m) if !m.is_empty() => format!("{reason}: {m}"),
                _ => reason,
            }
        })
        .unwrap_or_else(|| "not started".into());
    Err(PluginError::NoPod(format!(
        "the {container} container of pod {} has not started ({why}), so it has no logs yet",
        pod.name_any()
    )))
}

/// Options of one read.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub follow: bool,
    pub tail: Option<i64>,
    pub previous: bool,
    pub timestamps: bool,
}

/// Read (or follow) the target's logs into `out`.
pub async fn read(
    client: &Client,
    fr: &FlashRollup,
    target: &Target,
    options: &Options,
    out: &mut dyn Write,
) -> Result<(), PluginError> {
    check_target(fr, target)?;
    let ns = fr.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let selector = selector(&fr.name_any(), target);
    let found = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| PluginError::api(format!("listing pods {selector} in namespace \"{ns}\""), &e))?
        .items;
    let pod = pick(fr, target, &found)?;
    let pod_name = pod.name_any();
    let params = LogParams {
        container: Some(target.container().to_owned()),
        follow: options.follow,
        tail_lines: options.tail,
        previous: options.previous,
        timestamps: options.timestamps,
        ..LogParams::default()
    };
    let what = format!("reading the logs of pod {pod_name} (container {})", target.container());
    let write_err = |e: std::io::Error| PluginError::Output(e.to_string());
    if options.follow {
        let stream = pods
            .log_stream(&pod_name, &params)
            .await
            .map_err(|e| PluginError::api(&what, &e))?;
        let mut lines = std::pin::pin!(stream.lines());
        while let Some(l) = lines.try_next().await.map_err(|e| PluginError::Api {
            what: what.clone(),
            message: e.to_string(),
        })? {
            writeln!(out, "{l}").map_err(write_err)?;
            out.flush().map_err(write_err)?;
        }
    } else {
        let text = pods
            .logs(&pod_name, &params)
            .await
            .map_err(|e| PluginError::api(&what, &e))?;
        out.write_all(text.as_bytes()).map_err(write_err)?;
        out.flush().map_err(write_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateWaiting, ContainerStatus, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use pretty_assertions::assert_eq;

    use super::*;
    use crate::api::flashrollup::FlashRollupStatus;
    use crate::plugin::fixtures::{rollup, running, t};

    fn pod(name: &str, created: &str, container: &str, state: ContainerState) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(t(created))),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                phase: Some("Running".into()),
                container_statuses: Some(vec![ContainerStatus {
                    name: container.into(),
                    state: Some(state),
                    ..ContainerStatus::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    fn up() -> ContainerState {
        ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..ContainerState::default()
        }
    }

    #[test]
    fn selectors_use_the_builders_labels() {
        assert_eq!(
            selector("devnet", &Target::Sequencer { replica: 0 }),
            "app.kubernetes.io/managed-by=flashlayer-operator,rollups.flashlayer.dev/rollup=devnet,app.kubernetes.io/component=sequencer"
        );
        assert_eq!(
            selector(
                "devnet",
                &Target::Verifier {
                    operator: "avs-gold-1".into()
                }
            ),
            format!(
                "app.kubernetes.io/managed-by=flashlayer-operator,rollups.flashlayer.dev/rollup=devnet,app.kubernetes.io/component=verifier,rollups.flashlayer.dev/operator-hash={}",
                operator_hash("avs-gold-1")
            )
        );
    }

    #[test]
    fn selectors_match_the_labels_of_the_built_pods() {
        let mut fr = running("ttl: 10m", "Discard");
        fr.metadata.uid = Some("u".into());
        let sts = crate::builders::statefulset(&fr, "h");
        let labels = sts
            .spec
            .and_then(|s| s.template.metadata)
            .and_then(|m| m.labels)
            .expect("pod labels");
        for pair in selector("devnet", &Target::Sequencer { replica: 0 }).split(',') {
            let (k, v) = pair.split_once('=').expect("k=v");
            assert_eq!(labels.get(k).map(String::as_str), Some(v), "sequencer pod label {k}");
        }
    }

    #[test]
    fn the_sequencer_replica_is_picked_by_name() {
        let fr = running("ttl: 10m", "Discard");
        let pods = vec![
            pod("devnet-sequencer-1", "2026-11-21T10:00:00Z", "sequencer", up()),
            pod("devnet-sequencer-0", "2026-11-21T10:00:00Z", "sequencer", up()),
        ];
        let picked = pick(&fr, &Target::Sequencer { replica: 0 }, &pods).expect("a pod");
        assert_eq!(picked.name_any(), "devnet-sequencer-0");
        let err = pick(&fr, &Target::Sequencer { replica: 2 }, &pods).expect_err("no replica 2");
        assert_eq!(
            err.to_string(),
            "flashrollup \"devnet\" has no sequencer pod devnet-sequencer-2 (found: devnet-sequencer-0, devnet-sequencer-1)"
        );
    }

    #[test]
    fn the_newest_live_verifier_pod_is_picked() {
        let fr = running("ttl: 10m", "Discard");
        let mut old = pod("v-old", "2026-11-21T10:00:00Z", "verifier", up());
        let new = pod("v-new", "2026-11-21T10:01:00Z", "verifier", up());
        let mut newest_deleting = pod("v-deleting", "2026-11-21T10:02:00Z", "verifier", up());
        newest_deleting.metadata.deletion_timestamp = Some(Time(t("2026-11-21T10:03:00Z")));
        let target = Target::Verifier {
            operator: "avs-gold-1".into(),
        };
        let pods = vec![old.clone(), newest_deleting.clone(), new];
        assert_eq!(pick(&fr, &target, &pods).expect("a pod").name_any(), "v-new");
        if let Some(s) = old.status.as_mut() {
            s.phase = Some("Pending".into());
        }
        let pods = vec![old, newest_deleting];
        assert_eq!(
            pick(&fr, &target, &pods).expect("a pod").name_any(),
            "v-deleting",
            "a running pod on its way out has logs, a pod not running yet has none"
        );
    }

    #[test]
    fn no_pod_says_why_by_phase() {
        let mut fr = running("ttl: 10m", "Discard");
        if let Some(s) = fr.status.as_mut() {
            s.phase = Some(Phase::TornDown);
        }
        let err = pick(&fr, &Target::Sequencer { replica: 0 }, &[]).expect_err("no pods");
        assert_eq!(
            err.to_string(),
            "flashrollup \"devnet\" in namespace \"games\" has no sequencer pod (phase TornDown: its workloads are gone)"
        );
        let fr = rollup("ttl: 10m", "Discard");
        let err = pick(&fr, &Target::Sequencer { replica: 0 }, &[]).expect_err("no pods");
        assert_eq!(
            err.to_string(),
            "flashrollup \"devnet\" in namespace \"games\" has no sequencer pod (phase Pending: its workloads are not created until enough operators are assigned)"
        );
    }

    #[test]
    fn a_container_that_never_started_has_no_logs() {
        let fr = running("ttl: 10m", "Discard");
        let waiting = ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ImagePullBackOff".into()),
                message: Some("Back-off pulling image \"flashlayer-node:0.1.0\"".into()),
            }),
            ..ContainerState::default()
        };
        let pods = vec![pod("devnet-sequencer-0", "2026-11-21T10:00:00Z", "sequencer", waiting)];
        let err = pick(&fr, &Target::Sequencer { replica: 0 }, &pods).expect_err("waiting");
        assert_eq!(
            err.to_string(),
            "the sequencer container of pod devnet-sequencer-0 has not started (ImagePullBackOff: Back-off pulling image \"flashlayer-node:0.1.0\"), so it has no logs yet"
        );
        let mut unscheduled = pod("devnet-sequencer-0", "2026-11-21T10:00:00Z", "sequencer", up());
        unscheduled.status = Some(PodStatus {
            phase: Some("Pending".into()),
            ..PodStatus::default()
        });
        let err = pick(&fr, &Target::Sequencer { replica: 0 }, &[unscheduled]).expect_err("pending");
        assert_eq!(
            err.to_string(),
            "pod devnet-sequencer-0 (Pending) has no sequencer container status yet: it has not started, so it has no logs"
        );
    }

    #[test]
    fn verifier_of_an_unassigned_operator_is_refused() {
        let fr = running("ttl: 10m", "Discard");
        let target = Target::Verifier {
            operator: "avs-gold-2".into(),
        };
        let err = check_target(&fr, &target).expect_err("not assigned");
        assert_eq!(
            err.to_string(),
            "operator \"avs-gold-2\" is not assigned to flashrollup \"devnet\" (assigned: avs-gold-1, avs-gold-3)"
        );
        assert!(
            check_target(
                &fr,
                &Target::Verifier {
                    operator: "avs-gold-3".into()
                }
            )
            .is_ok()
        );
        let mut pending = rollup("ttl: 10m", "Discard");
        pending.status = Some(FlashRollupStatus::default());
        let err = check_target(&pending, &target).expect_err("none assigned");
        assert_eq!(
            err.to_string(),
            "operator \"avs-gold-2\" is not assigned to flashrollup \"devnet\" (none is assigned)"
        );
    }
}
