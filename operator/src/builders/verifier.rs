//! A verifier Deployment for one assigned AVS operator: it re-executes the rollup's blocks and
//! signs attestations with the operator's BLS key, which it gets as a read-only Secret mount and
//! nothing else.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{Container, KeyToPath, SecretVolumeSource, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::sequencer::{CONFIG_DIR, DATA_DIR, default_resources, empty_dir, http_probe, mount, port};
use super::*;

const KEY_DIR: &str = "/var/run/flashlayer/bls";
const KEY_FILE: &str = "bls.key";

/// Short, label-safe id of an operator name.
pub fn operator_hash(name: &str) -> String {
    short_hash(&name)[..10].to_owned()
}

/// Name of the verifier Deployment of `operator` for `rollup`.
pub fn deployment_name(rollup: &FlashRollup, operator: &str) -> String {
    child_name(rollup, &format!("verifier-{}", operator_hash(operator)))
}

pub fn deployment(
    rollup: &FlashRollup,
    assigned: &AssignedOperator,
    op: &AVSOperatorSpec,
    config_hash: &str,
) -> Deployment {
    let ns = rollup.namespace().unwrap_or_default();
    let image = op
        .verifier
        .image
        .clone()
        .unwrap_or_else(|| rollup.spec.sequencer.image.clone());
    let pull = op
        .verifier
        .image_pull_policy
        .or(rollup.spec.sequencer.image_pull_policy);
    let key_ref = op.bls_key.secret_ref.as_ref();

    let mut pod_labels = labels(rollup, component::VERIFIER);
    pod_labels.insert(LABEL_OPERATOR.into(), operator_hash(&assigned.name));
    let mut selector = selector_labels(rollup, component::VERIFIER);
    selector.insert(LABEL_OPERATOR.into(), operator_hash(&assigned.name));

    let mut metadata = child_meta(rollup, deployment_name(rollup, &assigned.name), component::VERIFIER);
    metadata
        .labels
        .get_or_insert_default()
        .insert(LABEL_OPERATOR.into(), operator_hash(&assigned.name));
    metadata.annotations = Some(BTreeMap::from([(
        ANNOTATION_OPERATOR.to_owned(),
        assigned.name.clone(),
    )]));

    let container = Container {
        name: component::VERIFIER.into(),
        image: Some(image),
        image_pull_policy: pull.map(|p| format!("{p:?}")),
        args: Some(vec![
            "verifier".into(),
            format!("--config={CONFIG_DIR}/chain.json"),
            format!("--operator={}", assigned.name),
            format!("--bls-key-file={KEY_DIR}/{KEY_FILE}"),
            format!(
                "--sequencer-url=http://{}.{ns}.svc:{RPC_PORT}",
                child_name(rollup, component::RPC)
            ),
            format!("--data-dir={DATA_DIR}"),
            format!("--metrics-addr=0.0.0.0:{METRICS_PORT}"),
        ]),
        ports: Some(vec![port("metrics", METRICS_PORT)]),
        resources: Some(
            op.verifier
                .resources
                .clone()
                .unwrap_or_else(|| default_resources("50m", "64Mi", "512Mi")),
        ),
        readiness_probe: Some(http_probe("/readyz", 2)),
        liveness_probe: Some(http_probe("/healthz", 10)),
        security_context: Some(container_security_context()),
        volume_mounts: Some(vec![
            mount("config", CONFIG_DIR, true),
            mount("bls-key", KEY_DIR, true),
            mount("data", DATA_DIR, false),
            mount("tmp", "/tmp", false),
        ]),
        ..Container::default()
    };

    Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            // Never two pods signing with one key at once, not even during a rollout.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            }),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            template: pod_template(
                rollup,
                pod_labels,
                config_hash,
                container,
                vec![
                    Volume {
                        name: "bls-key".into(),
                        secret: Some(SecretVolumeSource {
                            secret_name: key_ref.map(|r| r.name.clone()),
                            items: Some(vec![KeyToPath {
                                key: key_ref.map(|r| r.key.clone()).unwrap_or_else(|| KEY_FILE.into()),
                                path: KEY_FILE.into(),
                                mode: None,
                            }]),
                            // Readable by the node's group only (fsGroup), never writable.
                            default_mode: Some(0o440),
                            optional: Some(false),
                        }),
                        ..Volume::default()
                    },
                    empty_dir("data"),
                    empty_dir("tmp"),
                ],
            ),
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}
