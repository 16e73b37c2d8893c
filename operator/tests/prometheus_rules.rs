//! The chart's monitoring: the alert rules (charts/flashlayer/files/prometheus-rules.yaml) checked
//! and unit-tested by promtool, the Grafana dashboard (files/grafana-dashboard.json) checked for
//! valid PromQL and the panels it promises, both checked to use only metrics the operator
//! registers, and the chart rendering its ServiceMonitor, PrometheusRule and dashboard ConfigMap
//! from exactly those files (`helm lint --strict` with the toggles on and off).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flashlayer_operator::metrics::Metrics;
use serde::Deserialize;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

const CHART: &str = "charts/flashlayer";
const RULES: &str = "charts/flashlayer/files/prometheus-rules.yaml";
const RULE_TESTS: &str = "charts/flashlayer/tests/prometheus-rules.test.yaml";
const DASHBOARD: &str = "charts/flashlayer/files/grafana-dashboard.json";
/// The toggles of the three monitoring objects.
const ALL_ON: [&str; 6] = [
    "--set",
    "metrics.serviceMonitor.enabled=true",
    "--set",
    "metrics.prometheusRule.enabled=true",
    "--set",
    "metrics.grafanaDashboard.enabled=true",
];

fn promtool() -> PathBuf {
    common::tool(
        "promtool",
        "FLASHLAYER_PROMTOOL",
        "it ships in Debian's prometheus package; .ci/run extracts it to ~/.cache/flashlayer/bin \
         (apt-get download prometheus && dpkg-deb --fsys-tarfile prometheus_*.deb | tar -xO ./usr/bin/promtool)",
    )
}

fn helm() -> PathBuf {
    common::tool(
        "helm",
        "FLASHLAYER_HELM",
        "run `e2e/cluster build` (it builds helm into ~/.cache/flashlayer/bin)",
    )
}

fn run(program: &Path, args: &[&str], cwd: &Path) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn read(path: &str) -> String {
    std::fs::read_to_string(common::root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn rules() -> Yaml {
    serde_yaml::from_str(&read(RULES)).expect("the rules file is YAML")
}

fn dashboard() -> Json {
    serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON")
}

/// Every rule of the rules file.
fn rule_list(rules: &Yaml) -> Vec<&Yaml> {
    rules["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").iter())
        .collect()
}

/// Every PromQL expression of the dashboard: panel targets and template variable queries.
fn dashboard_exprs(dashboard: &Json) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?");
            out.push((
                format!("{title} ({})", target["refId"].as_str().unwrap_or("?")),
                target["expr"].as_str().expect("expr").to_owned(),
            ));
        }
    }
    for var in dashboard["templating"]["list"].as_array().expect("templating") {
        if let Some(q) = var["query"]["query"].as_str() {
            out.push((format!("variable {}", var["name"]), q.to_owned()));
        }
    }
    out
}

/// The `flashlayer_*` series names in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("flashlayer_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

#[test]
fn promtool_accepts_the_rules() {
    let out = run(&promtool(), &["check", "rules", RULES], &common::root());
    assert!(out.status.success(), "promtool check rules:\n{}", text(&out));
}

#[test]
fn promtool_rule_tests_pass_and_cover_every_alert() {
    let tests_dir = common::root().join(RULE_TESTS);
    let dir = tests_dir.parent().expect("a directory");
    let file = tests_dir
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned();
    let out = run(&promtool(), &["test", "rules", &file], dir);
    assert!(out.status.success(), "promtool test rules:\n{}", text(&out));

    // Each alert has a case where it fires and one where it does not.
    let tests: Yaml = serde_yaml::from_str(&read(RULE_TESTS)).expect("the rule tests are YAML");
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for t in tests["tests"].as_sequence().expect("tests") {
        for a in t["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = a["alertname"].as_str().expect("alertname").to_owned();
            match a["exp_alerts"].as_sequence() {
                Some(e) if !e.is_empty() => fires.insert(name),
                _ => quiet.insert(name),
            };
        }
    }
    let rules = rules();
    let alerts: BTreeSet<String> = rule_list(&rules)
        .iter()
        .map(|r| r["alert"].as_str().expect("only alerting rules").to_owned())
        .collect();
    assert!(alerts.len() >= 5, "alerts: {alerts:?}");
    for alert in &alerts {
        assert!(fires.contains(alert), "{alert}: no promtool case where it fires");
        assert!(quiet.contains(alert), "{alert}: no promtool case where it stays quiet");
    }
    for a in rule_list(&rules) {
        let name = a["alert"].as_str().unwrap_or("?");
        assert!(a["labels"]["severity"].as_str().is_some(), "{name}: no severity");
        for key in ["summary", "description"] {
            assert!(a["annotations"][key].as_str().is_some(), "{name}: no {key}");
        }
    }
}

#[test]
fn rules_and_dashboard_use_only_metrics_the_operator_registers() {
    let registered: BTreeSet<String> = Metrics::new().expect("metrics").series_names().into_iter().collect();
    let mut used: Vec<(String, String)> = Vec::new();
    let rules = rules();
    for rule in rule_list(&rules) {
        let expr = rule["expr"].as_str().expect("expr");
        let name = rule["alert"].as_str().unwrap_or("?");
        used.extend(metric_names(expr).into_iter().map(|m| (format!("alert {name}"), m)));
    }
    for (what, expr) in dashboard_exprs(&dashboard()) {
        used.extend(metric_names(&expr).into_iter().map(|m| (format!("panel {what}"), m)));
    }
    assert!(used.len() > 20, "too few metric references found: {used:?}");
    let unknown: Vec<String> = used
        .iter()
        .filter(|(_, m)| !registered.contains(m))
        .map(|(w, m)| format!("{w}: {m}"))
        .collect();
    assert!(
        unknown.is_empty(),
        "series the operator does not register (see operator/src/metrics.rs):\n{}\nregistered: {registered:?}",
        unknown.join("\n")
    );
}

#[test]
fn the_metric_name_scan_finds_what_it_must() {
    assert_eq!(
        metric_names(r#"sum(rate(flashlayer_ttl_lag_seconds_bucket{x="flashlayer_no"}[5m])) / flashlayer_rollups"#),
        BTreeSet::from([
            "flashlayer_no".to_owned(),
            "flashlayer_rollups".to_owned(),
            "flashlayer_ttl_lag_seconds_bucket".to_owned(),
        ])
    );
}

#[test]
fn dashboard_queries_are_valid_promql() {
    // promtool has no offline query parser of its own; recording rules of the same expressions
    // (Grafana's variables replaced by what they stand for) go through its parser.
    let mut rules = Vec::new();
    for (i, (what, expr)) in dashboard_exprs(&dashboard()).into_iter().enumerate() {
        // A variable's `label_values(<selector>, <label>)` is Grafana's; its selector is PromQL.
        let expr = match expr.strip_prefix("label_values(").and_then(|e| e.strip_suffix(')')) {
            Some(args) => args
                .rsplit_once(',')
                .map(|(selector, _)| selector.to_owned())
                .unwrap_or(args.to_owned()),
            None => expr,
        };
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("$namespace", ".*")
            .replace("$rollup", ".*");
        assert!(!expr.contains('$'), "{what}: unknown variable in {expr}");
        rules.push(serde_json::json!({ "record": format!("dashboard:query_{i}"), "expr": expr }));
    }
    let file = std::env::temp_dir().join(format!("flashlayer-dashboard-{}.rules.yaml", std::process::id()));
    let doc = serde_json::json!({ "groups": [{ "name": "dashboard", "rules": rules }] });
    std::fs::write(&file, serde_yaml::to_string(&doc).expect("YAML")).expect("write rules");
    let out = run(
        &promtool(),
        &["check", "rules", &file.to_string_lossy()],
        &common::root(),
    );
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "dashboard queries:\n{}", text(&out));
}

#[test]
fn dashboard_shows_what_it_promises() {
    let d = dashboard();
    assert_eq!(d["uid"], "flashlayer-overview");
    assert_eq!(d["title"], "Flashlayer");
    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for p in panels {
        let title = p["title"].as_str().expect("a title");
        assert!(
            ids.insert(p["id"].as_u64().expect("an id")),
            "{title}: duplicate panel id"
        );
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().expect("x"), g["w"].as_u64().expect("w"));
        assert!(
            x + w <= 24 && g["h"].as_u64().is_some() && g["y"].as_u64().is_some(),
            "{title}: gridPos {g}"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}: data source variable");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}: target data source");
        }
    }
    let variables: BTreeSet<&str> = d["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(variables, BTreeSet::from(["datasource", "namespace", "rollup"]));

    // The panels the chart documents: rollups by phase, launch and settlement latency, blocks and
    // finality per rollup, reconcile errors.
    let exprs: Vec<String> = dashboard_exprs(&d).into_iter().map(|(_, e)| e).collect();
    let shows = |needle: &str| exprs.iter().any(|e| e.contains(needle));
    for needle in [
        "sum by (phase) (flashlayer_rollups)",
        "flashlayer_launch_duration_seconds_bucket",
        "flashlayer_settlement_duration_seconds_bucket",
        "flashlayer_rollup_height",
        "flashlayer_rollup_finalized_height",
        "flashlayer_reconcile_errors_total",
    ] {
        assert!(shows(needle), "no panel queries {needle}");
    }
}

/// `helm template` of the chart with `args`: each rendered object, or helm's error.
fn render(args: &[&str]) -> Result<Vec<Yaml>, String> {
    let mut all = vec!["template", "flashlayer", CHART, "--namespace", "flashlayer-system"];
    all.extend_from_slice(args);
    let out = run(&helm(), &all, &common::root());
    if !out.status.success() {
        return Err(text(&out));
    }
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    Ok(serde_yaml::Deserializer::from_str(&stdout)
        .map(|doc| Yaml::deserialize(doc).expect("helm renders YAML"))
        .filter(|v| !v.is_null())
        .collect())
}

fn of_kind<'a>(objects: &'a [Yaml], kind: &str) -> Vec<&'a Yaml> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

#[test]
fn chart_renders_the_monitoring_objects_from_the_files() {
    let off = render(&[]).expect("helm template with the defaults");
    for kind in ["ServiceMonitor", "PrometheusRule"] {
        assert!(of_kind(&off, kind).is_empty(), "{kind} rendered while off");
    }
    assert!(
        off.iter()
            .all(|o| o["metadata"]["labels"]["grafana_dashboard"].is_null()),
        "dashboard rendered while off"
    );

    let on = render(&ALL_ON).expect("helm template with monitoring on");
    // The PrometheusRule holds the very file promtool tests.
    let rule = of_kind(&on, "PrometheusRule");
    assert_eq!(rule.len(), 1);
    assert_eq!(rule[0]["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule[0]["spec"], rules(), "PrometheusRule spec differs from {RULES}");

    // The dashboard ConfigMap, for the Grafana sidecar, holds the very JSON file.
    let dashboards: Vec<&Yaml> = of_kind(&on, "ConfigMap")
        .into_iter()
        .filter(|c| c["metadata"]["labels"]["grafana_dashboard"] == "1")
        .collect();
    assert_eq!(dashboards.len(), 1, "one ConfigMap labelled grafana_dashboard: \"1\"");
    let json = dashboards[0]["data"]["flashlayer.json"]
        .as_str()
        .expect("data flashlayer.json");
    assert_eq!(
        serde_json::from_str::<Json>(json).expect("the ConfigMap holds JSON"),
        dashboard(),
        "dashboard ConfigMap differs from {DASHBOARD}"
    );

    // The ServiceMonitor selects the metrics Service and scrapes its port, keeping the rollups'
    // namespace label.
    let monitor = of_kind(&on, "ServiceMonitor");
    assert_eq!(monitor.len(), 1);
    let service = of_kind(&on, "Service");
    assert_eq!(service.len(), 1, "the metrics Service");
    let labels = service[0]["metadata"]["labels"].as_mapping().expect("Service labels");
    let selector = monitor[0]["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("selector");
    for (k, v) in selector {
        assert_eq!(
            labels.get(k),
            Some(v),
            "the ServiceMonitor selects {k:?}={v:?}, the Service lacks it"
        );
    }
    assert_eq!(
        monitor[0]["spec"]["namespaceSelector"]["matchNames"][0],
        service[0]["metadata"]["namespace"]
    );
    let endpoint = &monitor[0]["spec"]["endpoints"][0];
    let port = endpoint["port"].as_str().expect("port name");
    assert!(
        service[0]["spec"]["ports"]
            .as_sequence()
            .expect("ports")
            .iter()
            .any(|p| p["name"] == port),
        "the Service has no port {port}"
    );
    assert_eq!(endpoint["honorLabels"], true);
    assert_eq!(endpoint["interval"], "30s");

    // Namespaces and labels of the three objects follow the values.
    let placed = render(
        &[
            &ALL_ON[..],
            &[
                "--set",
                "metrics.serviceMonitor.namespace=monitoring",
                "--set",
                "metrics.serviceMonitor.labels.release=kps",
                "--set",
                "metrics.prometheusRule.namespace=monitoring",
                "--set",
                "metrics.prometheusRule.labels.release=kps",
                "--set",
                "metrics.grafanaDashboard.namespace=grafana",
                "--set",
                "metrics.serviceMonitor.interval=",
            ],
        ]
        .concat(),
    )
    .expect("helm template with placement values");
    for (kind, ns) in [("ServiceMonitor", "monitoring"), ("PrometheusRule", "monitoring")] {
        let o = of_kind(&placed, kind)[0];
        assert_eq!(o["metadata"]["namespace"], ns, "{kind} namespace");
        assert_eq!(o["metadata"]["labels"]["release"], "kps", "{kind} labels");
    }
    assert!(
        of_kind(&placed, "ServiceMonitor")[0]["spec"]["endpoints"][0]["interval"].is_null(),
        "an empty interval leaves Prometheus's default"
    );
    assert!(
        placed
            .iter()
            .any(|o| o["kind"] == "ConfigMap" && o["metadata"]["namespace"] == "grafana"),
        "dashboard ConfigMap namespace"
    );
}

#[test]
fn chart_refuses_what_cannot_work() {
    let err = render(&[
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.service.enabled=false",
    ])
    .expect_err("a ServiceMonitor without the Service it scrapes");
    assert!(
        err.contains("metrics.serviceMonitor.enabled needs metrics.service.enabled"),
        "{err}"
    );
    // values.schema.json knows the new keys, and nothing else.
    let err = render(&["--set", "metrics.prometheusRule.enable=true"]).expect_err("a misspelt key");
    assert!(err.contains("enable"), "{err}");
    let err = render(&["--set", "metrics.serviceMonitor.interval=30 seconds"]).expect_err("a bad duration");
    assert!(err.contains("interval"), "{err}");
}

#[test]
fn helm_lint_strict_passes_with_monitoring_on_and_off() {
    for args in [&[][..], &ALL_ON[..]] {
        let mut all = vec!["lint", "--strict", CHART];
        all.extend_from_slice(args);
        let out = run(&helm(), &all, &common::root());
        assert!(out.status.success(), "helm lint --strict {args:?}:\n{}", text(&out));
    }
}
