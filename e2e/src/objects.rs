//! Reading FlashRollups and AVSOperators as a client sees them: untyped JSON through the API
//! (the tests do not link the operator's own types), with small accessors for the fields used.

use jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};
use serde_json::Value;

/// The FlashRollup resource.
pub const FLASHROLLUP: (&str, &str) = ("FlashRollup", "flashrollups");
/// The AVSOperator resource.
pub const AVSOPERATOR: (&str, &str) = ("AVSOperator", "avsoperators");

/// A namespaced API of one of the two custom resources.
pub fn custom_api(client: &Client, ns: &str, (kind, plural): (&str, &str)) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("rollups.flashlayer.dev", "v1alpha1", kind);
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk_with_plural(&gvk, plural))
}

/// Get one object as JSON; `None` when it does not exist.
pub async fn get_json(api: &Api<DynamicObject>, name: &str) -> Result<Option<Value>, String> {
    match api.get_opt(name).await {
        Ok(Some(o)) => serde_json::to_value(o).map(Some).map_err(|e| e.to_string()),
        Ok(None) => Ok(None),
        Err(e) => Err(format!("get {name}: {e}")),
    }
}

/// The string at a JSON pointer (`/status/phase`), if any.
pub fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// The integer at a JSON pointer, if any.
pub fn u64_at(v: &Value, pointer: &str) -> Option<u64> {
    v.pointer(pointer).and_then(Value::as_u64)
}

/// The timestamp (RFC 3339) at a JSON pointer, if any.
pub fn time_at(v: &Value, pointer: &str) -> Option<Timestamp> {
    str_at(v, pointer).and_then(|s| s.parse().ok())
}

/// `status.phase`, or "" before the operator wrote one.
pub fn phase(v: &Value) -> &str {
    str_at(v, "/status/phase").unwrap_or("")
}

/// The condition of this type in `status.conditions`.
pub fn condition<'a>(v: &'a Value, type_: &str) -> Option<&'a Value> {
    v.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// `(status, reason)` of a condition, e.g. `("False", "WaitingForOperators")`.
pub fn condition_state(v: &Value, type_: &str) -> Option<(String, String)> {
    let c = condition(v, type_)?;
    Some((
        c["status"].as_str().unwrap_or("").to_owned(),
        c["reason"].as_str().unwrap_or("").to_owned(),
    ))
}

/// Names in `status.assignedOperators`, in order.
pub fn assigned_operators(v: &Value) -> Vec<String> {
    v.pointer("/status/assignedOperators")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|o| o["name"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// `metadata.finalizers`.
pub fn finalizers(v: &Value) -> Vec<String> {
    v.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}
