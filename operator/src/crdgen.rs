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
    crds()
        .iter()
        .map(|c| format!("---\n{}", crd_yaml(c)))
        .collect()
}

/// File name of a CRD under `crds/`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}
