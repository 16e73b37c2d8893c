//! Generation of the CustomResourceDefinition YAML from the Rust types. The output is committed
//! under `crds/` and in the Helm chart, and tests fail when either drifts from the types.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::api::{AVSOperator, FlashRollup};

/// The CRDs, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![FlashRollup::crd(), AVSOperator::crd()]
}

/// One CRD as a YAML document (without the leading `---`).
pub fn crd_yaml(crd: &CustomResourceDefinition) -> String {
    // Serializing a typed CRD cannot fail: it holds only strings, numbers, maps and lists.
    serde_yaml::to_string(crd).unwrap_or_else(|e| panic!("CRD serializes to YAML: {e}"))
}

/// All CRDs as one multi-document YAML stream, as `flashlayer-operator crd` prints it.
pub fn all_yaml() -> String {
    crds().iter().map(|c| format!("---\n{}", crd_yaml(c))).collect()
}

/// File name of a CRD under `crds/`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// Header of every generated file.
const HEADER: &str = "# Generated from the Rust types by `make generate`; do not edit by hand.\n";

/// The CRD files under `crds/`, as (path relative to the repository root, content).
pub fn crd_files() -> Vec<(String, String)> {
    crds()
        .iter()
        .map(|c| (format!("crds/{}", file_name(c)), format!("{HEADER}{}", crd_yaml(c))))
        .collect()
}

/// The chart's CRD template: the same CRDs, installed only when `crds.install` is true, kept by
/// `helm uninstall` and never pruned by Argo CD (deleting a CRD would delete every rollup with it;
/// Argo CD does not honour Helm's keep policy).
pub fn chart_crds_template() -> (String, String) {
    let mut out = format!("{HEADER}{{{{- if .Values.crds.install }}}}\n");
    for mut crd in crds() {
        let annotations = crd.metadata.annotations.get_or_insert_default();
        annotations.insert("helm.sh/resource-policy".into(), "keep".into());
        annotations.insert("argocd.argoproj.io/sync-options".into(), "Prune=false".into());
        out.push_str("---\n");
        out.push_str(&crd_yaml(&crd));
    }
    out.push_str("{{- end }}\n");
    ("charts/flashlayer/templates/crds.yaml".into(), out)
}

/// Every file generated without external tools.
pub fn generated_files() -> Vec<(String, String)> {
    let mut files = crd_files();
    files.push(chart_crds_template());
    files
}

/// The files under `root` that differ from what is generated (missing ones included).
pub fn drifted(root: &std::path::Path, files: &[(String, String)]) -> Vec<String> {
    files
        .iter()
        .filter(|(path, content)| std::fs::read_to_string(root.join(path)).ok().as_deref() != Some(content.as_str()))
        .map(|(path, _)| path.clone())
        .collect()
}
