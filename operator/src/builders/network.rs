//! Services, NetworkPolicies and the PodDisruptionBudget of a rollup.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;

fn service_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

fn ports() -> Vec<ServicePort> {
    vec![
        service_port("rpc", RPC_PORT),
        service_port("admin", ADMIN_PORT),
        service_port("metrics", METRICS_PORT),
    ]
}

/// Headless Service that gives each sequencer pod a stable DNS name.
pub fn headless_service(rollup: &FlashRollup) -> Service {
    Service {
        metadata: child_meta(rollup, child_name(rollup, "sequencer-headless"), component::SEQUENCER),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(rollup, component::SEQUENCER)),
            ports: Some(ports()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Client Service: JSON-RPC for users and verifiers, admin for the operator, metrics.
pub fn client_service(rollup: &FlashRollup) -> Service {
    Service {
        metadata: child_meta(rollup, child_name(rollup, component::RPC), component::RPC),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(rollup, component::SEQUENCER)),
            ports: Some(ports()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn np_port(port: i32, protocol: &str) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some(protocol.into()),
        end_port: None,
    }
}

fn pods(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels),
        ..LabelSelector::default()
    }
}

/// Only what each pod needs: the sequencer takes JSON-RPC and metrics from anyone and admin calls
/// from the operator's pods only; verifiers take metrics scrapes and may only reach the
/// sequencer's JSON-RPC and DNS.
pub fn network_policies(rollup: &FlashRollup) -> Vec<NetworkPolicy> {
    let (op_key, op_value) = OPERATOR_POD_LABEL;
    let from_operator = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector::default()),
        pod_selector: Some(pods(BTreeMap::from([(op_key.to_owned(), op_value.to_owned())]))),
        ..NetworkPolicyPeer::default()
    };
    let sequencer = NetworkPolicy {
        metadata: child_meta(rollup, child_name(rollup, component::SEQUENCER), component::SEQUENCER),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pods(selector_labels(rollup, component::SEQUENCER))),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    ports: Some(vec![np_port(RPC_PORT, "TCP"), np_port(METRICS_PORT, "TCP")]),
                    from: None,
                },
                NetworkPolicyIngressRule {
                    ports: Some(vec![np_port(ADMIN_PORT, "TCP")]),
                    from: Some(vec![from_operator]),
                },
            ]),
            egress: None,
        }),
    };
    let verifier = NetworkPolicy {
        metadata: child_meta(rollup, child_name(rollup, component::VERIFIER), component::VERIFIER),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pods(selector_labels(rollup, component::VERIFIER))),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                ports: Some(vec![np_port(METRICS_PORT, "TCP")]),
                from: None,
            }]),
            egress: Some(vec![
                NetworkPolicyEgressRule {
                    ports: Some(vec![np_port(RPC_PORT, "TCP")]),
                    to: Some(vec![NetworkPolicyPeer {
                        pod_selector: Some(pods(selector_labels(rollup, component::SEQUENCER))),
                        ..NetworkPolicyPeer::default()
                    }]),
                },
                NetworkPolicyEgressRule {
                    ports: Some(vec![np_port(53, "UDP"), np_port(53, "TCP")]),
                    to: None,
                },
            ]),
        }),
    };
    vec![sequencer, verifier]
}

/// A voluntary eviction (a node drain) must not stop a single sequencer mid-life: the chain is
/// short-lived and its TTL, not a drain, ends it. A squad tolerates one sequencer away.
pub fn pod_disruption_budget(rollup: &FlashRollup) -> PodDisruptionBudget {
    let max_unavailable = if rollup.spec.sequencer_replicas() > 1 { 1 } else { 0 };
    PodDisruptionBudget {
        metadata: child_meta(rollup, child_name(rollup, component::SEQUENCER), component::SEQUENCER),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(max_unavailable)),
            selector: Some(pods(selector_labels(rollup, component::SEQUENCER))),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}
