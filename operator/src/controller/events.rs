//! Kubernetes Events (`events.k8s.io/v1`) about the rollups: one create each, nothing kept.
//!
//! kube's `Recorder` keeps every Event it sent for six minutes, to fold repeats into a series.
//! Ours mark phase transitions, which do not repeat, and a thousand rollups launched or expiring
//! together made it hold thousands of Events that no later one would ever match.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

/// Normal or Warning, as `kubectl get events` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Normal,
    Warning,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Normal => "Normal",
            Kind::Warning => "Warning",
        }
    }
}

/// The API server refuses a longer note.
const NOTE_MAX: usize = 1024;

/// Publishes Events as one controller instance.
#[derive(Clone)]
pub struct Publisher {
    client: Client,
    controller: String,
    instance: String,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("controller", &self.controller)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        Self {
            client,
            controller: controller.to_owned(),
            instance: instance.to_owned(),
        }
    }

    /// Create one Event about `regarding`, in its namespace.
    pub async fn publish(&self, regarding: &ObjectReference, kind: Kind, reason: &str, note: &str) -> kube::Result<()> {
        let event = self.event(regarding, kind, reason, note, jiff::Timestamp::now());
        let ns = event.metadata.namespace.as_deref().unwrap_or("default");
        Api::<Event>::namespaced(self.client.clone(), ns)
            .create(&PostParams::default(), &event)
            .await
            .map(drop)
    }

    fn event(&self, regarding: &ObjectReference, kind: Kind, reason: &str, note: &str, now: jiff::Timestamp) -> Event {
        let object = regarding.name.as_deref().unwrap_or(&self.controller);
        Event {
            metadata: ObjectMeta {
                // Unique per object and instant, as client-go names them.
                name: Some(format!("{object}.{:x}", now.as_nanosecond())),
                namespace: regarding.namespace.clone(),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(kind.as_str().to_owned()),
            reason: Some(reason.to_owned()),
            action: Some("Reconcile".to_owned()),
            note: Some(truncate(note, NOTE_MAX).to_owned()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        }
    }
}

/// At most `max` bytes, cut at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publisher() -> Publisher {
        // Never sends: only `event` is exercised.
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let client = Client::try_from(config).expect("client");
        Publisher::new(client, "flashlayer-operator", "pod-a")
    }

    #[tokio::test]
    async fn an_event_names_its_object_reporter_and_instant() {
        let regarding = ObjectReference {
            api_version: Some("rollups.flashlayer.dev/v1alpha1".into()),
            kind: Some("FlashRollup".into()),
            name: Some("pr-42".into()),
            namespace: Some("team-a".into()),
            uid: Some("u-1".into()),
            ..ObjectReference::default()
        };
        let now: jiff::Timestamp = "2026-11-21T10:00:00Z".parse().expect("time");
        let e = publisher().event(&regarding, Kind::Warning, "Failed", "Running -> Failed: boom", now);
        assert_eq!(
            e.metadata.name.as_deref(),
            Some(format!("pr-42.{:x}", now.as_nanosecond()).as_str())
        );
        assert_eq!(e.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.reason.as_deref(), Some("Failed"));
        assert_eq!(e.note.as_deref(), Some("Running -> Failed: boom"));
        assert_eq!(e.regarding.as_ref(), Some(&regarding));
        assert_eq!(e.reporting_controller.as_deref(), Some("flashlayer-operator"));
        assert_eq!(e.reporting_instance.as_deref(), Some("pod-a"));
        assert_eq!(e.event_time, Some(MicroTime(now)));
        assert_eq!(e.action.as_deref(), Some("Reconcile"));
    }

    #[test]
    fn a_long_note_is_cut_where_a_character_ends() {
        let note = format!("{}é", "a".repeat(NOTE_MAX - 1));
        let cut = truncate(&note, NOTE_MAX);
        assert_eq!(cut.len(), NOTE_MAX - 1);
        assert_eq!(truncate("short", NOTE_MAX), "short");
    }
}
