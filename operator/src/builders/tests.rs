//! Tests of the desired objects: ownership, labels, Pod Security "restricted", key isolation.

use k8s_openapi::api::core::v1::PodSpec;
use kube::ResourceExt;

use super::*;
use crate::api::AVSOperatorSpec;
use crate::api::flashrollup::AssignedOperator;

fn rollup(extra: &str) -> FlashRollup {
    let yaml = format!(
        "apiVersion: rollups.flashlayer.dev/v1alpha1\nkind: FlashRollup\nmetadata: {{ name: mint, namespace: games, uid: 1234-uid }}\nspec:\n  ttl: 1h\n  chain: {{ chainId: 901337, blockTime: 500ms }}\n  verification: {{ minOperators: 2 }}\n  settlement: {{ policy: Discard }}\n{extra}"
    );
    serde_yaml::from_str(&yaml).expect("test rollup parses")
}

fn operator_spec(secret: &str) -> AVSOperatorSpec {
    serde_yaml::from_str(&format!(
        "{{ address: '0x70997970C51812dc3A010C7d01b50e0d17dc79C8', blsPublicKey: {{ g1: '0x01', g2: '0x02' }}, blsKey: {{ secretRef: {{ name: {secret} }} }}, stake: 100 }}"
    ))
    .expect("operator spec parses")
}

fn assigned(name: &str) -> AssignedOperator {
    AssignedOperator {
        name: name.into(),
        address: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
        stake: 100,
    }
}

fn desired(r: &FlashRollup) -> Desired {
    let (a, b) = (assigned("op-a"), assigned("op-b"));
    let (sa, sb) = (operator_spec("op-a-bls"), operator_spec("op-b-bls"));
    Desired::build(&Inputs {
        rollup: r,
        verifiers: vec![
            Verifier {
                assigned: &a,
                spec: Some(&sa),
            },
            Verifier {
                assigned: &b,
                spec: Some(&sb),
            },
        ],
        rollup_id: "0xabc".into(),
    })
}

/// Every object of the desired state, as JSON.
fn objects(d: &Desired) -> Vec<serde_json::Value> {
    let mut out = vec![
        serde_json::to_value(&d.config_map),
        serde_json::to_value(&d.headless_service),
        serde_json::to_value(&d.client_service),
        serde_json::to_value(&d.statefulset),
        serde_json::to_value(&d.pdb),
    ];
    out.extend(d.verifiers.iter().map(serde_json::to_value));
    out.extend(d.network_policies.iter().map(serde_json::to_value));
    out.into_iter().map(|v| v.expect("serializes")).collect()
}

#[test]
fn every_child_is_owned_labelled_and_namespaced() {
    let r = rollup("");
    for o in objects(&desired(&r)) {
        let meta = &o["metadata"];
        assert_eq!(meta["namespace"], "games", "{meta}");
        let owner = &meta["ownerReferences"][0];
        assert_eq!(owner["kind"], "FlashRollup");
        assert_eq!(owner["uid"], "1234-uid");
        assert_eq!(owner["controller"], true);
        assert_eq!(meta["labels"][LABEL_ROLLUP], "mint");
        assert_eq!(meta["labels"][LABEL_MANAGED_BY], MANAGED_BY);
        assert!(
            meta["name"]
                .as_str()
                .is_some_and(|n| n.len() <= 63 && n.starts_with("mint-")),
            "{meta}"
        );
    }
}

/// The checks of Pod Security "restricted" (v1.34) that a pod spec can fail.
fn assert_restricted(pod: &PodSpec) {
    let psc = pod.security_context.as_ref().expect("pod security context");
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(
        psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
        Some("RuntimeDefault")
    );
    assert!(pod.host_network.is_none() && pod.host_pid.is_none() && pod.host_ipc.is_none());
    for v in pod.volumes.iter().flatten() {
        let allowed = v.config_map.is_some()
            || v.secret.is_some()
            || v.empty_dir.is_some()
            || v.persistent_volume_claim.is_some();
        assert!(allowed, "volume type not allowed by restricted: {v:?}");
    }
    for c in &pod.containers {
        let sc = c.security_context.as_ref().expect("container security context");
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
        assert_eq!(
            sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_owned()])
        );
        assert!(sc.capabilities.as_ref().and_then(|c| c.add.as_ref()).is_none());
        assert!(sc.privileged.is_none_or(|p| !p));
        assert!(c.ports.iter().flatten().all(|p| p.host_port.is_none()));
    }
}

#[test]
fn pods_pass_the_restricted_profile() {
    let d = desired(&rollup(""));
    let sts_pod = d
        .statefulset
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec");
    assert_restricted(sts_pod);
    assert_eq!(sts_pod.automount_service_account_token, Some(false));
    for dep in &d.verifiers {
        assert_restricted(
            dep.spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .expect("pod spec"),
        );
    }
}

#[test]
fn a_verifier_mounts_its_own_key_read_only_and_no_other_secret() {
    let d = desired(&rollup(""));
    for (dep, secret) in d.verifiers.iter().zip(["op-a-bls", "op-b-bls"]) {
        let pod = dep
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod spec");
        let secrets: Vec<_> = pod.volumes.iter().flatten().filter_map(|v| v.secret.as_ref()).collect();
        assert_eq!(secrets.len(), 1);
        assert_eq!(secrets[0].secret_name.as_deref(), Some(secret));
        let key_volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.secret.is_some())
            .expect("key volume");
        let m = pod.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == key_volume.name)
            .expect("mounted");
        assert_eq!(m.read_only, Some(true));
        assert!(pod.containers[0].env.is_none(), "no key material in the environment");
        assert_eq!(
            dep.spec
                .as_ref()
                .and_then(|s| s.strategy.as_ref())
                .and_then(|s| s.type_.as_deref()),
            Some("Recreate")
        );
    }
    assert_ne!(d.verifiers[0].name_any(), d.verifiers[1].name_any());
}

#[test]
fn sequencer_shape_follows_mode_and_volume_policy() {
    let single = desired(&rollup(""));
    let spec = single.statefulset.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(
        spec.persistent_volume_claim_retention_policy
            .as_ref()
            .and_then(|p| p.when_deleted.as_deref()),
        Some("Delete")
    );
    assert_eq!(
        single.pdb.spec.as_ref().and_then(|s| s.max_unavailable.clone()),
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0))
    );

    let squad = desired(&rollup(
        "  sequencer: { mode: Squad, replicas: 3 }\n  teardown: { volume: Retain }\n",
    ));
    let spec = squad.statefulset.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(
        spec.persistent_volume_claim_retention_policy
            .as_ref()
            .and_then(|p| p.when_deleted.as_deref()),
        Some("Retain")
    );
}

#[test]
fn chain_config_lists_the_operator_set_in_order() {
    let d = desired(&rollup(""));
    let json: serde_json::Value =
        serde_json::from_str(&d.config_map.data.as_ref().expect("data")["chain.json"]).expect("valid JSON");
    assert_eq!(json["chainId"], 901337);
    assert_eq!(json["blockTimeMs"], 500);
    assert_eq!(json["rollupId"], "0xabc");
    assert_eq!(json["operators"][0]["name"], "op-a");
    assert_eq!(json["operators"][1]["index"], 1);
}

#[test]
fn hash_is_stable_and_follows_the_operator_set() {
    let r = rollup("");
    assert_eq!(desired(&r).hash(), desired(&r).hash());
    let a = assigned("op-a");
    let sa = operator_spec("op-a-bls");
    let one = Desired::build(&Inputs {
        rollup: &r,
        verifiers: vec![Verifier {
            assigned: &a,
            spec: Some(&sa),
        }],
        rollup_id: "0xabc".into(),
    });
    assert_ne!(one.hash(), desired(&r).hash());
}

#[test]
fn admin_secret_is_immutable() {
    let s = admin_secret(&rollup(""), "t0ken".into());
    assert_eq!(s.immutable, Some(true));
    assert_eq!(s.metadata.name.as_deref(), Some("mint-admin"));
}
