//! The sequencer StatefulSet: one pod (Single) or a set (Squad), each with its chain data volume.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, HTTPGetAction, KeyToPath, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, Probe, ResourceRequirements, SecretVolumeSource, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::api::flashrollup::VolumePolicy;

/// Where the node finds its files inside the container.
pub(super) const CONFIG_DIR: &str = "/etc/flashlayer";
pub(super) const DATA_DIR: &str = "/data";
const ADMIN_DIR: &str = "/var/run/flashlayer/admin";

pub fn statefulset(rollup: &FlashRollup, config_hash: &str) -> StatefulSet {
    let spec = &rollup.spec;
    let name = child_name(rollup, component::SEQUENCER);
    let volume_policy = match spec.teardown.volume {
        VolumePolicy::Delete => "Delete",
        VolumePolicy::Retain => "Retain",
    };
    let container = Container {
        name: component::SEQUENCER.into(),
        image: Some(spec.sequencer.image.clone()),
        image_pull_policy: spec.sequencer.image_pull_policy.map(|p| format!("{p:?}")),
        args: Some(vec![
            "sequencer".into(),
            format!("--config={CONFIG_DIR}/chain.json"),
            format!("--data-dir={DATA_DIR}"),
            format!("--admin-token-file={ADMIN_DIR}/{ADMIN_TOKEN_KEY}"),
            format!("--rpc-addr=0.0.0.0:{RPC_PORT}"),
            format!("--admin-addr=0.0.0.0:{ADMIN_PORT}"),
            format!("--metrics-addr=0.0.0.0:{METRICS_PORT}"),
        ]),
        ports: Some(vec![
            port("rpc", RPC_PORT),
            port("admin", ADMIN_PORT),
            port("metrics", METRICS_PORT),
        ]),
        resources: Some(
            spec.sequencer
                .resources
                .clone()
                .unwrap_or_else(|| default_resources("100m", "128Mi", "1Gi")),
        ),
        readiness_probe: Some(http_probe("/readyz", 1)),
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(10),
            ..http_probe("/healthz", 10)
        }),
        security_context: Some(container_security_context()),
        volume_mounts: Some(vec![
            mount("config", CONFIG_DIR, true),
            mount("admin", ADMIN_DIR, true),
            mount("data", DATA_DIR, false),
            mount("tmp", "/tmp", false),
        ]),
        ..Container::default()
    };
    let pod_labels = labels(rollup, component::SEQUENCER);
    StatefulSet {
        metadata: child_meta(rollup, name, component::SEQUENCER),
        spec: Some(StatefulSetSpec {
            replicas: Some(spec.sequencer_replicas()),
            service_name: Some(child_name(rollup, "sequencer-headless")),
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(rollup, component::SEQUENCER)),
                ..LabelSelector::default()
            },
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some(volume_policy.into()),
                when_scaled: Some("Retain".into()),
            }),
            template: pod_template(
                rollup,
                pod_labels,
                config_hash,
                container,
                vec![
                    Volume {
                        name: "admin".into(),
                        secret: Some(SecretVolumeSource {
                            secret_name: Some(admin_secret_name(rollup)),
                            items: Some(vec![KeyToPath {
                                key: ADMIN_TOKEN_KEY.into(),
                                path: ADMIN_TOKEN_KEY.into(),
                                mode: None,
                            }]),
                            default_mode: Some(0o440),
                            optional: Some(false),
                        }),
                        ..Volume::default()
                    },
                    empty_dir("tmp"),
                ],
            ),
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("data".into()),
                    labels: Some(labels(rollup, component::SEQUENCER)),
                    ..ObjectMeta::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: spec.sequencer.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([("storage".to_owned(), spec.sequencer.storage.clone())])),
                        ..VolumeResourceRequirements::default()
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                ..PersistentVolumeClaim::default()
            }]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

pub(super) fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: number,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

pub(super) fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

pub(super) fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

pub(super) fn http_probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("metrics".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        ..Probe::default()
    }
}

pub(super) fn default_resources(cpu: &str, memory: &str, memory_limit: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.into())),
            ("memory".to_owned(), Quantity(memory.into())),
        ])),
        limits: Some(BTreeMap::from([("memory".to_owned(), Quantity(memory_limit.into()))])),
        ..ResourceRequirements::default()
    }
}
