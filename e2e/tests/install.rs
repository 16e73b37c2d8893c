//! Installation and admission: the chart's CRDs and RBAC, and invalid manifests that the API
//! server refuses before any operator could see them.

use flashlayer_e2e::cmd::{kubectl, kubectl_ok};
use flashlayer_e2e::install::{CLUSTER_ROLE, CRDS, NAMESPACE, SERVICE_ACCOUNT};
use flashlayer_e2e::manifests::{Rollup, avs_operator};
use flashlayer_e2e::{Scenario, log};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;

/// Every field listed under FIELDS in `kubectl explain` output has a description line.
fn assert_explained(path: &str, expected_fields: &[&str]) {
    let out = kubectl_ok(&["explain", path], None).expect("kubectl explain");
    let description = out
        .split("DESCRIPTION:")
        .nth(1)
        .and_then(|rest| rest.split("FIELDS:").next())
        .unwrap_or("")
        .trim();
    assert!(description.len() > 20, "{path} has no description:\n{out}");
    let fields = out.split("FIELDS:").nth(1).unwrap_or("");
    let lines: Vec<&str> = fields.lines().collect();
    for field in expected_fields {
        let i = lines
            .iter()
            .position(|l| l.trim_start().starts_with(&format!("{field}\t")))
            .unwrap_or_else(|| panic!("{path}: field {field} not listed:\n{out}"));
        let next = lines[i + 1..]
            .iter()
            .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with("enum:"))
            .copied()
            .unwrap_or("");
        assert!(
            next.starts_with("    ") && next.trim().len() > 10,
            "{path}: field {field} has no description:\n{out}"
        );
    }
    log(format!("kubectl explain {path}: {description:.60}..."));
}

fn assert_no_wildcards(owner: &str, rules: &[PolicyRule]) {
    assert!(!rules.is_empty(), "{owner} has no rules");
    for rule in rules {
        let lists = [
            ("verbs", Some(&rule.verbs)),
            ("resources", rule.resources.as_ref()),
            ("apiGroups", rule.api_groups.as_ref()),
            ("resourceNames", rule.resource_names.as_ref()),
            ("nonResourceURLs", rule.non_resource_urls.as_ref()),
        ];
        for (what, values) in lists {
            for v in values.into_iter().flatten() {
                assert!(!v.contains('*'), "{owner} grants {what} {v:?} in {rule:?}");
            }
        }
    }
}

#[tokio::test]
#[ignore = "needs the local cluster: make e2e"]
async fn install() {
    let s = Scenario::new("install").await;

    // CRDs Established, names accepted, v1alpha1 served.
    let crds: Api<CustomResourceDefinition> = Api::all(s.client.clone());
    for name in CRDS {
        let crd = crds.get(name).await.expect("the CRD exists");
        let conditions = crd.status.and_then(|st| st.conditions).unwrap_or_default();
        for type_ in ["Established", "NamesAccepted"] {
            assert!(
                conditions.iter().any(|c| c.type_ == type_ && c.status == "True"),
                "{name}: {type_} is not True: {conditions:?}"
            );
        }
        assert!(
            crd.spec
                .versions
                .iter()
                .any(|v| v.name == "v1alpha1" && v.served && v.storage),
            "{name} does not serve v1alpha1"
        );
    }

    // Field documentation reaches `kubectl explain`.
    assert_explained("flashrollup.spec.settlement", &["policy", "l1", "confirmations"]);
    assert_explained("avsoperator.spec.blsKey", &["secretRef"]);
    assert_explained(
        "flashrollup.spec.verification",
        &["operatorSelector", "minOperators", "quorumStakePercent"],
    );

    // Least privilege: explicit verbs and resources only.
    let role = Api::<ClusterRole>::all(s.client.clone())
        .get(CLUSTER_ROLE)
        .await
        .expect("the chart's ClusterRole");
    assert_no_wildcards("ClusterRole flashlayer", &role.rules.unwrap_or_default());
    let lease_role = Api::<Role>::namespaced(s.client.clone(), NAMESPACE)
        .get("flashlayer-leader-election")
        .await
        .expect("the chart's leader-election Role");
    assert_no_wildcards("Role flashlayer-leader-election", &lease_role.rules.unwrap_or_default());

    // And what that means for the ServiceAccount the operator runs as.
    let sa = format!("system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}");
    let can = |args: &[&str]| {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        all.extend(["--as", sa.as_str()]);
        kubectl(&all, None).stdout.trim().to_owned()
    };
    let allowed: &[&[&str]] = &[
        &["watch", "flashrollups.rollups.flashlayer.dev", "-A"],
        &[
            "patch",
            "flashrollups.rollups.flashlayer.dev",
            "--subresource=status",
            "-n",
            "default",
        ],
        &["create", "statefulsets.apps", "-n", "default"],
        &["deletecollection", "persistentvolumeclaims", "-n", "default"],
        &["deletecollection", "configmaps", "-n", "default"],
        &["update", "leases.coordination.k8s.io/flashlayer", "-n", NAMESPACE],
    ];
    let denied: &[&[&str]] = &[
        &["list", "secrets", "-n", "default"],
        &["get", "persistentvolumeclaims", "-n", "default"],
        &["deletecollection", "secrets", "-n", "default"],
        &["watch", "secrets", "-A"],
        &["create", "flashrollups.rollups.flashlayer.dev", "-n", "default"],
        &["update", "leases.coordination.k8s.io/other", "-n", NAMESPACE],
        &["delete", "namespaces"],
        &["get", "nodes"],
        &["escalate", "clusterroles.rbac.authorization.k8s.io"],
    ];
    for args in allowed {
        assert_eq!(
            can(args),
            "yes",
            "the operator's ServiceAccount should be allowed: {args:?}"
        );
    }
    for args in denied {
        assert_eq!(
            can(args),
            "no",
            "the operator's ServiceAccount should be denied: {args:?}"
        );
    }
}

/// A small variation of a valid manifest and the message the API server must answer with.
struct Bad {
    what: &'static str,
    yaml: String,
    expect: &'static str,
}

/// `base` with `from` replaced by `to` (which must occur, so a case cannot silently test the
/// valid manifest).
fn vary(base: &str, from: &str, to: &str) -> String {
    assert!(base.contains(from), "{from:?} is not in the base manifest");
    base.replacen(from, to, 1)
}

/// Server-side apply words strict field validation differently: `unknown field "spec.x"` is
/// `.spec.x: field not declared in schema` there.
fn expected_message(expect: &str, server_side: bool) -> String {
    match expect
        .strip_prefix("unknown field \"")
        .and_then(|r| r.strip_suffix('"'))
    {
        Some(path) if server_side => format!(".{path}: field not declared in schema"),
        _ => expect.to_owned(),
    }
}

#[tokio::test]
#[ignore = "needs the local cluster: make e2e"]
async fn bad_input() {
    let s = Scenario::new("bad-input").await;
    let fr = |name: &str| Rollup::new(name).ttl("10m").yaml();
    let l1 = "policy: Settle\n    l1:\n      rpcUrl: http://127.0.0.1:8545\n      chainId: 31337\n      \
              contract: \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\n      signerSecretRef: {name: l1-signer}";

    let mut cases = vec![
        Bad {
            what: "enum violation",
            yaml: vary(&fr("bad-enum"), "policy: Discard", "policy: Burn"),
            expect: r#"Unsupported value: "Burn""#,
        },
        Bad {
            what: "missing required settlement",
            yaml: vary(&fr("bad-missing"), "  settlement:\n    policy: Discard\n", ""),
            expect: "spec.settlement: Required value",
        },
        Bad {
            what: "ttl too short",
            yaml: vary(&fr("bad-ttl-short"), "ttl: 10m", "ttl: 30s"),
            expect: "ttl must be between 1m and 720h",
        },
        Bad {
            what: "ttl too long",
            yaml: vary(&fr("bad-ttl-long"), "ttl: 10m", "ttl: 721h"),
            expect: "ttl must be between 1m and 720h",
        },
        Bad {
            what: "ttl not a duration",
            yaml: vary(&fr("bad-ttl-format"), "ttl: 10m", "ttl: ten-minutes"),
            expect: "ttl must be a duration such as 90s, 30m or 48h",
        },
        Bad {
            what: "both ttl and expiresAt",
            yaml: vary(
                &fr("bad-both"),
                "ttl: 10m",
                "ttl: 10m\n  expiresAt: \"2030-01-01T00:00:00Z\"",
            ),
            expect: "set exactly one of spec.ttl",
        },
        Bad {
            what: "neither ttl nor expiresAt",
            yaml: vary(&fr("bad-neither"), "  ttl: 10m\n", ""),
            expect: "set exactly one of spec.ttl",
        },
        Bad {
            what: "expiresAt not a time",
            yaml: vary(&fr("bad-expires"), "ttl: 10m", "expiresAt: tomorrow"),
            expect: "must be of type date-time",
        },
        Bad {
            what: "quorum 50",
            yaml: vary(&fr("bad-quorum"), "quorumStakePercent: 67", "quorumStakePercent: 50"),
            expect: "quorumStakePercent must be between 51 and 100",
        },
        Bad {
            what: "minOperators 0",
            yaml: vary(&fr("bad-min-ops"), "minOperators: 2", "minOperators: 0"),
            expect: "minOperators must be between 1 and 100",
        },
        Bad {
            what: "settle without l1",
            yaml: vary(&fr("bad-no-l1"), "policy: Discard", "policy: Settle"),
            expect: "settlement.l1 is required when settlement.policy is Settle",
        },
        Bad {
            what: "bad contract address",
            yaml: vary(
                &fr("bad-contract"),
                "policy: Discard",
                &l1.replace("0x5FbDB2315678afecb367f032d93F642f64180aa3", "0x5FbDB23"),
            ),
            expect: "l1.contract must be a 0x-prefixed 20-byte hex address",
        },
        Bad {
            what: "rpcUrl not http",
            yaml: vary(
                &fr("bad-rpc"),
                "policy: Discard",
                &l1.replace("http://127.0.0.1:8545", "ftp://127.0.0.1"),
            ),
            expect: "l1.rpcUrl must be an http:// or https:// URL",
        },
        Bad {
            what: "confirmations 0",
            yaml: vary(
                &fr("bad-confirmations"),
                "policy: Discard",
                "policy: Discard\n    confirmations: 0",
            ),
            expect: "confirmations must be between 1 and 64",
        },
        Bad {
            what: "name longer than 40",
            yaml: fr(&format!("n{}", "x".repeat(40))),
            expect: "metadata.name must be at most 40 characters",
        },
        Bad {
            what: "chainId 0",
            yaml: vary(&fr("bad-chain-id"), "chainId: 901337", "chainId: 0"),
            expect: "chainId must be greater than 0",
        },
        Bad {
            what: "blockTime 10ms",
            yaml: vary(&fr("bad-block-time"), "blockTime: 500ms", "blockTime: 10ms"),
            expect: "blockTime must be between 50ms and 1m",
        },
        Bad {
            what: "gasLimit below one transfer",
            yaml: vary(&fr("bad-gas"), "gasLimit: 30000000", "gasLimit: 100"),
            expect: "gasLimit must be between 21000",
        },
        Bad {
            what: "genesis key not an address",
            yaml: vary(
                &fr("bad-alloc"),
                "\"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266\"",
                "\"0xnothex\"",
            ),
            expect: "genesis.alloc keys must be 0x-prefixed 20-byte hex addresses",
        },
        Bad {
            what: "replicas in mode Single",
            yaml: vary(&fr("bad-replicas"), "mode: Single", "mode: Single\n    replicas: 3"),
            expect: "sequencer.replicas can only be more than 1 in mode Squad",
        },
        Bad {
            what: "misspelt field (strict field validation)",
            yaml: vary(&fr("bad-typo"), "minOperators: 2", "minOperatorz: 2"),
            expect: r#"unknown field "spec.verification.minOperatorz""#,
        },
    ];
    let avs = avs_operator("avs-bad");
    cases.extend([
        Bad {
            what: "operator address too short",
            yaml: vary(&avs, "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "0x70997970"),
            expect: "address must be a 0x-prefixed 20-byte hex address",
        },
        Bad {
            what: "operator address missing",
            yaml: vary(&avs, "  address: \"0x70997970C51812dc3A010C7d01b50e0d17dc79C8\"\n", ""),
            expect: "spec.address: Required value",
        },
        Bad {
            what: "inline BLS private key",
            yaml: vary(
                &avs,
                "blsKey:\n    secretRef:\n      name: avs-bad-bls\n      key: bls.key",
                "blsKey:\n    privateKey: \"0x1e3e128b9678dd0e2982d9df452c2a1766880c970a1732260d24921408371a25\"",
            ),
            expect: r#"unknown field "spec.blsKey.privateKey""#,
        },
        Bad {
            what: "BLS key without a Secret",
            yaml: vary(
                &avs,
                "blsKey:\n    secretRef:\n      name: avs-bad-bls\n      key: bls.key",
                "blsKey: {}",
            ),
            expect: "the BLS private key can only come from a Secret",
        },
        Bad {
            what: "stake 0",
            yaml: vary(&avs, "stake: 100", "stake: 0"),
            expect: "stake must be at least 1",
        },
        Bad {
            what: "capacity 0",
            yaml: vary(&avs, "capacity: 4", "capacity: 0"),
            expect: "capacity must be between 1 and 1000",
        },
        Bad {
            what: "G1 key too short",
            yaml: vary(&avs, "g1: \"0x28f2089ee5520f56", "g1: \"0x28f2"),
            expect: "blsPublicKey.g1 must be 0x followed by 128 hex digits",
        },
    ]);

    let mut failures = Vec::new();
    for case in &cases {
        for server_side in [false, true] {
            let mut args = vec!["apply", "-f", "-"];
            if server_side {
                args.push("--server-side");
            }
            let out = s.kubectl(&args, Some(&case.yaml));
            let mode = if server_side { "apply --server-side" } else { "apply" };
            let expect = expected_message(case.expect, server_side);
            if out.success {
                failures.push(format!("{} ({mode}): ACCEPTED: {}", case.what, out.stdout.trim()));
            } else if !out.stderr.contains(&expect) {
                failures.push(format!(
                    "{} ({mode}): refused without {expect:?}: {}",
                    case.what,
                    out.stderr.trim()
                ));
            }
        }
    }
    log(format!(
        "{} invalid manifests, each refused by apply and apply --server-side",
        cases.len()
    ));

    // spec.chain is immutable once created.
    let valid = fr("immutable");
    s.apply_ok(&valid);
    let changed = vary(&valid, "chainId: 901337", "chainId: 901338");
    let out = s.kubectl(&["apply", "-f", "-"], Some(&changed));
    if out.success || !out.stderr.contains("spec.chain is immutable after creation") {
        failures.push(format!(
            "chain change on update: {}{}",
            out.stdout.trim(),
            out.stderr.trim()
        ));
    }
    let kept = s.rollup("immutable").await.expect("the valid rollup exists");
    assert_eq!(kept["spec"]["chain"]["chainId"], 901337, "the chain changed on update");
    kubectl_ok(&["delete", "flashrollup", "immutable", "-n", &s.ns], None).expect("deleting the valid rollup");

    // The AVSOperator base manifest is valid too: only the variations are refused.
    s.apply_ok(&avs);
    kubectl_ok(&["delete", "avsoperator", "avs-bad", "-n", &s.ns], None).expect("deleting the valid operator");

    // Nothing invalid was stored: the operator never saw any of them.
    let left = kubectl_ok(&["get", "flashrollups,avsoperators", "-n", &s.ns, "-o", "name"], None)
        .expect("listing what is left");
    if !left.trim().is_empty() {
        failures.push(format!("objects exist after the refusals: {left}"));
    }
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
