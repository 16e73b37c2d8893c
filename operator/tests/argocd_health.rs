//! The Argo CD health checks (manifests/argocd/resource_customizations/<group>/<Kind>/health.lua)
//! against the cases of their health_test.yaml, as Argo CD runs them: Lua 5.1 in Argo CD's sandbox
//! (manifests/argocd/check-health.lua). Plus what keeps the cases honest: the test objects are
//! objects the API server would store, every phase is covered, the scripts match only on names
//! the operator really writes, and argocd-cm-patch.yaml carries the scripts as they are
//! (`FLASHLAYER_UPDATE_GENERATED=1` rewrites it).

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use flashlayer_operator::api::conditions::{self, reason};
use flashlayer_operator::api::flashrollup::TeardownPolicy;
use flashlayer_operator::api::{AVSOperator, FlashRollup, Phase};
use serde_json::Value;

const CUSTOMIZATIONS: &str = "manifests/argocd/resource_customizations";
const HARNESS: &str = "manifests/argocd/check-health.lua";
const CM_PATCH: &str = "manifests/argocd/argocd-cm-patch.yaml";

/// One health check: `<group>/<Kind>` and its directory.
#[derive(Debug)]
struct Check {
    group: String,
    kind: String,
    dir: PathBuf,
}

impl Check {
    fn script(&self) -> PathBuf {
        self.dir.join("health.lua")
    }
}

/// One case of a health_test.yaml.
#[derive(Debug)]
struct Case {
    input: String,
    status: String,
    message: String,
}

fn lua() -> PathBuf {
    common::tool(
        "lua5.1",
        "FLASHLAYER_LUA",
        "the Argo CD health checks run on Lua 5.1 as in Argo CD: `apt-get install lua5.1` (.ci/run does)",
    )
}

fn checks() -> Vec<Check> {
    let base = common::root().join(CUSTOMIZATIONS);
    let mut out = Vec::new();
    for group in std::fs::read_dir(&base)
        .expect("resource_customizations exists")
        .flatten()
    {
        for kind in std::fs::read_dir(group.path()).expect("a group directory").flatten() {
            out.push(Check {
                group: group.file_name().to_string_lossy().into_owned(),
                kind: kind.file_name().to_string_lossy().into_owned(),
                dir: kind.path(),
            });
        }
    }
    out.sort_by(|a, b| (&a.group, &a.kind).cmp(&(&b.group, &b.kind)));
    out
}

fn cases(check: &Check) -> Vec<Case> {
    let path = check.dir.join("health_test.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let tests = doc["tests"].as_sequence().expect("health_test.yaml has a tests list");
    tests
        .iter()
        .map(|t| Case {
            input: t["inputPath"].as_str().expect("inputPath").to_owned(),
            status: t["healthStatus"]["status"]
                .as_str()
                .expect("healthStatus.status")
                .to_owned(),
            // Argo CD compares the whole HealthStatus: an absent message is "".
            message: t["healthStatus"]["message"].as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}

/// A YAML test object as JSON (what Argo CD hands the script, decoded from the live object).
fn object(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Run `script` on `object` through the harness: `(status, message)`, or what went wrong.
fn run(script: &Path, object: &Value) -> Result<(String, String), String> {
    let mut child = Command::new(lua())
        .arg(common::root().join(HARNESS))
        .arg(script)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running lua5.1: {e}"))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(object.to_string().as_bytes())
        .map_err(|e| format!("writing the object: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for lua5.1: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    let result: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("harness output {:?}: {e}", String::from_utf8_lossy(&out.stdout)))?;
    Ok((
        result["status"].as_str().unwrap_or_default().to_owned(),
        result["message"].as_str().unwrap_or_default().to_owned(),
    ))
}

/// Runs a Lua snippet (as a health script file) on `object`.
fn run_snippet(name: &str, lua: &str, object: &Value) -> Result<(String, String), String> {
    let dir = std::env::temp_dir().join(format!("flashlayer-lua-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(&path, lua).expect("write snippet");
    let out = run(&path, object);
    let _ = std::fs::remove_file(&path);
    out
}

#[test]
fn every_case_gives_the_expected_health() {
    let checks = checks();
    let names: Vec<String> = checks.iter().map(|c| format!("{}/{}", c.group, c.kind)).collect();
    assert_eq!(
        names,
        [
            "rollups.flashlayer.dev/AVSOperator",
            "rollups.flashlayer.dev/FlashRollup"
        ],
        "one health check per kind"
    );
    let mut failures = Vec::new();
    let mut ran = 0;
    for check in &checks {
        let cases = cases(check);
        assert!(cases.len() >= 5, "{}: too few cases", check.kind);
        for case in &cases {
            let obj = object(&check.dir.join(&case.input));
            ran += 1;
            match run(&check.script(), &obj) {
                Ok((status, message)) if status == case.status && message == case.message => {}
                Ok((status, message)) => failures.push(format!(
                    "{}/{}: want {} {:?}\n    got {status} {message:?}",
                    check.kind, case.input, case.status, case.message
                )),
                Err(e) => failures.push(format!("{}/{}: {e}", check.kind, case.input)),
            }
        }
        // Every object in testdata/ is a case: none is left untested by mistake.
        let listed: BTreeSet<String> = cases.iter().map(|c| c.input.clone()).collect();
        for file in std::fs::read_dir(check.dir.join("testdata"))
            .expect("testdata/")
            .flatten()
        {
            let input = format!("testdata/{}", file.file_name().to_string_lossy());
            assert!(
                listed.contains(&input),
                "{}: {input} is not in health_test.yaml",
                check.kind
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_cases_cover_every_phase_and_outcome() {
    for check in checks() {
        let mut phases = BTreeSet::new();
        let mut statuses = BTreeSet::new();
        for case in cases(&check) {
            let obj = object(&check.dir.join(&case.input));
            phases.insert(
                obj.pointer("/status/phase")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            );
            statuses.insert(case.status);
        }
        match check.kind.as_str() {
            "FlashRollup" => {
                for phase in Phase::ALL.iter().map(|p| p.as_str()).chain([""]) {
                    assert!(phases.contains(phase), "FlashRollup: no case in phase {phase:?}");
                }
                assert_eq!(
                    statuses,
                    BTreeSet::from(["Degraded".into(), "Healthy".into(), "Progressing".into()]),
                    "FlashRollup outcomes"
                );
            }
            "AVSOperator" => assert_eq!(
                statuses,
                BTreeSet::from([
                    "Degraded".into(),
                    "Healthy".into(),
                    "Progressing".into(),
                    "Suspended".into()
                ]),
                "AVSOperator outcomes"
            ),
            other => panic!("a health check for an unknown kind {other}"),
        }
    }
}

/// The fields of `value` that `schema` (a CRD's structural OpenAPI schema) does not know, which
/// the API server would prune: a test object with one describes an object that cannot exist.
fn unknown_fields(value: &Value, schema: &serde_yaml::Value, path: &str, out: &mut Vec<String>) {
    if schema["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true) {
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                let at = format!("{path}.{key}");
                if let Some(s) = schema["properties"].get(key.as_str()) {
                    unknown_fields(v, s, &at, out);
                } else if schema["additionalProperties"].is_mapping() {
                    unknown_fields(v, &schema["additionalProperties"], &at, out);
                } else if schema["additionalProperties"].as_bool() != Some(true) {
                    out.push(at);
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                unknown_fields(v, &schema["items"], &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn test_objects_are_objects_the_api_server_would_store() {
    for check in checks() {
        let crd_path = common::root().join(format!("crds/{}s.{}.yaml", check.kind.to_lowercase(), check.group));
        let crd: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&crd_path).expect("the CRD of the kind")).expect("CRD YAML");
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        for case in cases(&check) {
            let obj = object(&check.dir.join(&case.input));
            let what = format!("{}/{}", check.kind, case.input);
            assert_eq!(obj["apiVersion"], "rollups.flashlayer.dev/v1alpha1", "{what}");
            assert_eq!(obj["kind"], check.kind.as_str(), "{what}");
            // apiVersion, kind (checked above) and metadata (ObjectMeta) are not in the CRD schema.
            let mut body = obj.clone();
            for key in ["apiVersion", "kind", "metadata"] {
                body.as_object_mut().expect("an object").remove(key);
            }
            let mut unknown = Vec::new();
            unknown_fields(&body, schema, "", &mut unknown);
            assert!(unknown.is_empty(), "{what}: fields the CRD does not have: {unknown:?}");
            // And the operator's own types read it (types, enums, timestamps).
            let parsed = match check.kind.as_str() {
                "FlashRollup" => serde_json::from_value::<FlashRollup>(obj).map(|_| ()),
                _ => serde_json::from_value::<AVSOperator>(obj).map(|_| ()),
            };
            parsed.unwrap_or_else(|e| panic!("{what}: not a valid {}: {e}", check.kind));
        }
    }
}

/// The double-quoted words a script compares with (phases, condition types and reasons, policy
/// names, health statuses).
fn quoted_words(script: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, part) in script.split('"').enumerate() {
        let word = i % 2 == 1 && part.chars().next().is_some_and(|c| c.is_ascii_uppercase());
        if word && part.chars().all(|c| c.is_ascii_alphabetic()) {
            out.insert(part.to_owned());
        }
    }
    out
}

#[test]
fn scripts_match_only_names_the_operator_writes() {
    let policy = |p: TeardownPolicy| {
        serde_json::to_value(p)
            .expect("a policy")
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    let mut known: BTreeSet<String> = Phase::ALL.iter().map(|p| p.as_str().to_owned()).collect();
    known.extend(
        [
            conditions::READY,
            conditions::QUORUM_MET,
            conditions::SETTLED,
            conditions::DEGRADED,
            conditions::SETTLING,
            reason::QUORUM_LOST,
            reason::VERIFIER_ALERT,
            reason::SUSPENDED,
            "True",
            "False",
            // Argo CD's health statuses.
            "Healthy",
            "Progressing",
            "Suspended",
            "Unknown",
        ]
        .map(str::to_owned),
    );
    known.insert(policy(TeardownPolicy::Delete));
    known.insert(policy(TeardownPolicy::Retain));
    for check in checks() {
        let script = std::fs::read_to_string(check.script()).expect("health.lua");
        let words = quoted_words(&script);
        assert!(words.contains("Ready"), "{}: found no quoted names at all", check.kind);
        let strange: Vec<&String> = words.iter().filter(|w| !known.contains(*w)).collect();
        assert!(
            strange.is_empty(),
            "{}: health.lua matches on {strange:?}, which the operator never writes (see api/conditions.rs)",
            check.kind
        );
    }
}

#[test]
fn the_harness_is_as_strict_as_argo_cd() {
    let obj = serde_json::json!({ "status": { "height": 7, "note": "é \"quoted\"\n", "list": [1, 2, 3] } });
    // Values arrive as Argo CD converts them: numbers, strings (escapes decoded), 1-based arrays.
    assert_eq!(
        run_snippet(
            "values",
            "return { status = \"Healthy\", message = obj.status.note .. obj.status.list[3] .. #obj.status.list }",
            &obj
        ),
        Ok(("Healthy".into(), "é \"quoted\"\n33".into()))
    );
    // No string library and no string methods in argocd-cm scripts.
    for (name, lua) in [
        (
            "library",
            "return { status = \"Healthy\", message = string.upper(\"x\") }",
        ),
        (
            "method",
            "local m = (\"x\"):upper()\nreturn { status = \"Healthy\", message = m }",
        ),
        ("math", "return { status = \"Healthy\", message = math.floor(1.5) }"),
        ("io", "io.write(\"x\")\nreturn { status = \"Healthy\" }"),
    ] {
        let out = run_snippet(name, lua, &obj);
        assert!(
            out.is_err(),
            "{name}: Argo CD would refuse it, the harness gave {out:?}"
        );
    }
    // A status Argo CD does not know becomes Unknown; anything but a table is an error.
    assert_eq!(
        run_snippet("invalid", "return { status = \"Fine\" }", &obj),
        Ok(("Unknown".into(), "Lua returned an invalid health status".into()))
    );
    assert!(run_snippet("string", "return \"Healthy\"", &obj).is_err());
}

/// argocd-cm-patch.yaml as generated from the health.lua files.
fn cm_patch(checks: &[Check]) -> String {
    let mut out = String::from(
        "# Generated from manifests/argocd/resource_customizations/*/*/health.lua by\n\
         # `FLASHLAYER_UPDATE_GENERATED=1 cargo test -p flashlayer-operator --test argocd_health`; do not edit.\n\
         # The Flashlayer health checks for Argo CD, as argocd-cm keys. Merge them into your argocd-cm:\n\
         #\n\
         #   kubectl -n argocd patch configmap argocd-cm --patch-file manifests/argocd/argocd-cm-patch.yaml\n\
         #\n\
         # (with the argo-cd Helm chart, put the same keys under configs.cm). See manifests/argocd/README.md.\n\
         apiVersion: v1\n\
         kind: ConfigMap\n\
         metadata:\n  name: argocd-cm\n  namespace: argocd\n\
         data:\n",
    );
    for check in checks {
        let script = std::fs::read_to_string(check.script()).expect("health.lua");
        out.push_str(&format!(
            "  resource.customizations.health.{}_{}: |\n",
            check.group, check.kind
        ));
        for line in script.lines() {
            if !line.is_empty() {
                out.push_str("    ");
                out.push_str(line);
            }
            out.push('\n');
        }
    }
    out
}

#[test]
fn argocd_cm_patch_carries_the_scripts() {
    let checks = checks();
    let generated = cm_patch(&checks);
    let path = common::root().join(CM_PATCH);
    if std::env::var_os("FLASHLAYER_UPDATE_GENERATED").is_some() {
        std::fs::write(&path, &generated).expect("write argocd-cm-patch.yaml");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{CM_PATCH} is not what the health.lua files give: run \
         `FLASHLAYER_UPDATE_GENERATED=1 cargo test -p flashlayer-operator --test argocd_health`"
    );
    // What Argo CD reads back from the ConfigMap is each script, byte for byte.
    let cm: serde_yaml::Value = serde_yaml::from_str(&committed).expect("argocd-cm-patch.yaml is YAML");
    for check in &checks {
        let key = format!("resource.customizations.health.{}_{}", check.group, check.kind);
        let script = std::fs::read_to_string(check.script()).expect("health.lua");
        assert!(
            script.ends_with('\n') && !script.ends_with("\n\n"),
            "{key}: one final newline"
        );
        assert!(
            !script.lines().any(|l| l.ends_with([' ', '\t'])),
            "{key}: trailing whitespace"
        );
        assert_eq!(cm["data"][key.as_str()].as_str(), Some(script.as_str()), "{key}");
    }
}
