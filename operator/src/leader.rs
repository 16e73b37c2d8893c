//! Leader election on a `coordination.k8s.io/v1` Lease, so only one operator replica reconciles
//! while the others stand by. [`decide`] is the pure rule; [`LeaderElector`] does the API calls.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;

/// Lease duration when the caller does not choose one; matches client-go's default.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// Renewal interval when the caller does not choose one.
pub const DEFAULT_RENEW_EVERY: Duration = Duration::from_secs(5);

/// Shortest pause between two attempts, so a lease that expires "now" cannot make us spin.
const MIN_RETRY: Duration = Duration::from_millis(50);

/// What a candidate should do with the lease as it currently reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// There is no lease yet.
    Create,
    /// We hold it: bump renewTime.
    Renew,
    /// Nobody holds it or the holder let it expire: take it.
    TakeOver,
    /// Someone else holds a live lease; it expires in `retry_after` at the earliest.
    Wait { retry_after: Duration },
}

/// Decides what `me` should do with `lease` at `now`.
///
/// The holder's own `leaseDurationSeconds` wins over ours, since it is the promise the holder made;
/// `lease_duration` is only the fallback when the field is missing. Expiry is judged against the
/// holder's renewTime with our clock, so the lease duration must comfortably exceed clock skew.
pub fn decide(lease: Option<&LeaseSpec>, me: &str, now: Timestamp, lease_duration: Duration) -> Decision {
    let Some(spec) = lease else {
        return Decision::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    if holder == me {
        return Decision::Renew;
    }
    let duration = spec
        .lease_duration_seconds
        .filter(|s| *s > 0)
        .map_or(lease_duration, |s| Duration::from_secs(s.unsigned_abs().into()));
    // A holder without any timestamp could never expire; treat the lease as abandoned.
    let Some(MicroTime(renewed)) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return Decision::TakeOver;
    };
    let Ok(expiry) = renewed.checked_add(duration) else {
        // Only reachable with a renewTime near the end of representable time: never expires.
        return Decision::Wait {
            retry_after: lease_duration,
        };
    };
    if expiry < now {
        return Decision::TakeOver;
    }
    Decision::Wait {
        retry_after: Duration::try_from(expiry.duration_since(now)).unwrap_or_default(),
    }
}

/// Why leader election failed or leadership was lost. `label()` is stable for metrics and logs.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lease API call failed: {0}")]
    Api(#[from] kube::Error),

    #[error("lease API call did not answer within {0:?}")]
    Timeout(Duration),

    #[error("leadership lost: the lease is now held by {holder:?}")]
    Lost { holder: String },

    #[error("could not renew the lease for {elapsed:?}: {last}")]
    RenewDeadline {
        elapsed: Duration,
        #[source]
        last: Box<LeaderError>,
    },
}

impl LeaderError {
    pub fn label(&self) -> &'static str {
        match self {
            LeaderError::Api(_) => "api",
            LeaderError::Timeout(_) => "timeout",
            LeaderError::Lost { .. } => "lost",
            LeaderError::RenewDeadline { .. } => "renew_deadline",
        }
    }

    /// Errors that retrying cannot fix (missing RBAC, a bad lease name or identity);
    /// failing loudly beats waiting forever as a silent standby.
    fn is_permanent(&self) -> bool {
        match self {
            LeaderError::Api(kube::Error::Api(status)) => {
                status.is_forbidden() || status.is_invalid() || status.code == 401
            }
            _ => false,
        }
    }

    fn is_conflict(&self) -> bool {
        matches!(self, LeaderError::Api(kube::Error::Api(status))
            if status.is_conflict() || status.is_already_exists())
    }
}

/// Outcome of one read-decide-write round.
#[derive(Debug)]
enum Attempt {
    Leader,
    Follower { holder: String, retry_after: Duration },
}

/// One candidate for the lease `name`.
#[derive(Debug)]
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
    renew_every: Duration,
    /// Start of the last successful write, which is the renewTime other candidates measure from.
    last_renewed: Mutex<Option<Instant>>,
}

impl LeaderElector {
    /// A candidate with the default timing (15s lease, renewed every 5s). `identity` must be
    /// unique per process, e.g. the pod name.
    pub fn new(api: Api<Lease>, name: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            api,
            name: name.into(),
            identity: identity.into(),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_every: DEFAULT_RENEW_EVERY,
            last_renewed: Mutex::new(None),
        }
    }

    /// Overrides the timing. The lease is rounded up to whole seconds (the Lease field's unit)
    /// and `renew_every` is capped at half of it so one failed renewal never loses the lease.
    pub fn with_timing(mut self, lease_duration: Duration, renew_every: Duration) -> Self {
        let secs = lease_duration
            .as_secs()
            .saturating_add(u64::from(lease_duration.subsec_nanos() > 0))
            .clamp(1, i32::MAX.unsigned_abs().into());
        self.lease_duration = Duration::from_secs(secs);
        self.renew_every = renew_every.clamp(MIN_RETRY, self.lease_duration / 2);
        self
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn lease_duration(&self) -> Duration {
        self.lease_duration
    }

    pub fn renew_every(&self) -> Duration {
        self.renew_every
    }

    /// Returns once this candidate holds the lease. Transient API errors are retried; permanent
    /// ones (RBAC, an invalid lease) are returned so the process exits with a clear message.
    pub async fn acquire(&self) -> Result<(), LeaderError> {
        let mut last_holder = String::new();
        loop {
            let pause = match self.attempt_with_timeout(false).await {
                Ok(Attempt::Leader) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
                    return Ok(());
                }
                Ok(Attempt::Follower { holder, retry_after }) => {
                    if holder != last_holder {
                        tracing::info!(lease = %self.name, %holder, "standing by; lease held by another replica");
                        last_holder = holder;
                    }
                    // Polling at least every renew_every notices a graceful release long before
                    // the lease would have expired.
                    retry_after.clamp(MIN_RETRY, self.renew_every)
                }
                Err(err) if err.is_conflict() => MIN_RETRY,
                Err(err) if err.is_permanent() => return Err(err),
                Err(err) => {
                    tracing::warn!(lease = %self.name, error = %err, "leader election attempt failed; retrying");
                    self.renew_every
                }
            };
            tokio::time::sleep(pause).await;
        }
    }

    /// Renews the lease until leadership is lost, and returns why. Call it after [`acquire`]
    /// and stop reconciling as soon as it returns.
    ///
    /// Gives up once renewal has failed for the lease duration minus one renewal interval: by
    /// the full lease duration a standby may already have taken over, and acting after that
    /// would mean two leaders.
    ///
    /// [`acquire`]: LeaderElector::acquire
    pub async fn renew_loop(&self) -> LeaderError {
        let deadline = self.lease_duration.saturating_sub(self.renew_every);
        let mut pause = self.renew_every;
        loop {
            tokio::time::sleep(pause).await;
            let last = match self.attempt_with_timeout(true).await {
                Ok(Attempt::Leader) => {
                    pause = self.renew_every;
                    continue;
                }
                Ok(Attempt::Follower { holder, .. }) => {
                    self.set_last_renewed(None);
                    return LeaderError::Lost { holder };
                }
                Err(err) => err,
            };
            let elapsed = self.last_renewed().map_or(deadline, |t| t.elapsed());
            if elapsed >= deadline {
                self.set_last_renewed(None);
                return LeaderError::RenewDeadline {
                    elapsed,
                    last: Box::new(last),
                };
            }
            tracing::warn!(lease = %self.name, error = %last, "lease renewal failed; retrying");
            // Retry sooner than the normal cadence: the deadline is only a couple of intervals.
            pause = (self.renew_every / 2).max(MIN_RETRY);
        }
    }

    /// Hands the lease back on graceful shutdown so a standby takes over at once instead of
    /// waiting for expiry. Best effort: on failure the lease simply expires.
    pub async fn release(&self) {
        let result = tokio::time::timeout(self.renew_every, self.release_inner()).await;
        match result {
            Ok(Ok(true)) => tracing::info!(lease = %self.name, "released leadership"),
            Ok(Ok(false)) => {}
            Ok(Err(err)) => {
                tracing::warn!(lease = %self.name, error = %err, "could not release the lease")
            }
            Err(_) => tracing::warn!(lease = %self.name, "releasing the lease timed out"),
        }
        self.set_last_renewed(None);
    }

    async fn release_inner(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(false);
        };
        let mut spec = lease.spec.take().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(false);
        }
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        lease.spec = Some(spec);
        // Replace carries the resourceVersion we read, so a release never clobbers a newer holder.
        self.api.replace(&self.name, &PostParams::default(), &lease).await?;
        Ok(true)
    }

    /// Bounds a round so a hung API call cannot outlive the renewal deadline.
    async fn attempt_with_timeout(&self, renewing: bool) -> Result<Attempt, LeaderError> {
        match tokio::time::timeout(self.renew_every, self.attempt(renewing)).await {
            Ok(result) => result,
            Err(_) => Err(LeaderError::Timeout(self.renew_every)),
        }
    }

    /// One read-decide-write round. While `renewing`, any lease we no longer hold means we lost
    /// it at some point, even if it has expired again since: someone else may have acted as
    /// leader in between, so we must not quietly take it back.
    async fn attempt(&self, renewing: bool) -> Result<Attempt, LeaderError> {
        let started = Instant::now();
        let current = self.api.get_opt(&self.name).await?;
        let now = Timestamp::now();
        // An existing Lease with no spec is treated as unheld rather than missing, since creating
        // it again would only conflict.
        let spec = current.as_ref().map(|lease| lease.spec.clone().unwrap_or_default());
        let decision = decide(spec.as_ref(), &self.identity, now, self.lease_duration);
        let holder = spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_default();

        if renewing && decision != Decision::Renew {
            return Ok(Attempt::Follower {
                holder,
                retry_after: self.lease_duration,
            });
        }

        let now_micro = Some(MicroTime(now));
        let duration_secs = i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX);
        match (decision, current) {
            (Decision::Wait { retry_after }, _) => {
                return Ok(Attempt::Follower { holder, retry_after });
            }
            (Decision::Create, _) | (_, None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(duration_secs),
                        acquire_time: now_micro.clone(),
                        renew_time: now_micro,
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                self.api.create(&PostParams::default(), &lease).await?;
            }
            (Decision::Renew, Some(mut lease)) => {
                let mut spec = spec.unwrap_or_default();
                spec.renew_time = now_micro;
                spec.lease_duration_seconds = Some(duration_secs);
                lease.spec = Some(spec);
                self.api.replace(&self.name, &PostParams::default(), &lease).await?;
            }
            (Decision::TakeOver, Some(mut lease)) => {
                let mut spec = spec.unwrap_or_default();
                spec.holder_identity = Some(self.identity.clone());
                spec.acquire_time = now_micro.clone();
                spec.renew_time = now_micro;
                spec.lease_duration_seconds = Some(duration_secs);
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
                lease.spec = Some(spec);
                // The metadata still holds the resourceVersion we read: if another candidate
                // wrote in between, this fails with 409 and exactly one of us wins.
                self.api.replace(&self.name, &PostParams::default(), &lease).await?;
                tracing::info!(lease = %self.name, previous = %holder, "took over the lease");
            }
        }
        self.set_last_renewed(Some(started));
        Ok(Attempt::Leader)
    }

    fn last_renewed(&self) -> Option<Instant> {
        *self.last_renewed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_last_renewed(&self, at: Option<Instant>) {
        *self.last_renewed.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use std::sync::Arc;

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::routing::{get, post};

    const ME: &str = "me";
    const OTHER: &str = "other";
    const OURS: Duration = Duration::from_secs(10);

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn spec(holder: Option<&str>, renew: Option<&str>, acquire: Option<&str>, duration: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            renew_time: renew.map(|t| MicroTime(ts(t))),
            acquire_time: acquire.map(|t| MicroTime(ts(t))),
            lease_duration_seconds: duration,
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decide_table() {
        let now = ts("2026-01-01T00:01:00Z");
        let wait = |s| Decision::Wait {
            retry_after: Duration::from_secs(s),
        };
        let cases: Vec<(&str, Option<LeaseSpec>, Decision)> = vec![
            ("no lease", None, Decision::Create),
            (
                "we hold a fresh lease",
                Some(spec(Some(ME), Some("2026-01-01T00:00:58Z"), None, Some(10))),
                Decision::Renew,
            ),
            (
                "we hold an expired lease",
                Some(spec(Some(ME), Some("2026-01-01T00:00:00Z"), None, Some(10))),
                Decision::Renew,
            ),
            (
                "holder missing",
                Some(spec(None, Some("2026-01-01T00:00:58Z"), None, Some(10))),
                Decision::TakeOver,
            ),
            (
                "holder released (empty)",
                Some(spec(Some(""), Some("2026-01-01T00:00:58Z"), None, Some(10))),
                Decision::TakeOver,
            ),
            (
                "other holds a fresh lease",
                Some(spec(Some(OTHER), Some("2026-01-01T00:00:58Z"), None, Some(10))),
                wait(8),
            ),
            (
                "other's lease expired",
                Some(spec(Some(OTHER), Some("2026-01-01T00:00:49Z"), None, Some(10))),
                Decision::TakeOver,
            ),
            (
                "other's lease expires exactly now",
                Some(spec(Some(OTHER), Some("2026-01-01T00:00:50Z"), None, Some(10))),
                wait(0),
            ),
            (
                "holder's longer duration wins over ours",
                Some(spec(Some(OTHER), Some("2026-01-01T00:00:40Z"), None, Some(30))),
                wait(10),
            ),
            (
                "missing duration falls back to ours",
                Some(spec(Some(OTHER), Some("2026-01-01T00:00:55Z"), None, None)),
                wait(5),
            ),
            (
                "non-positive duration falls back to ours",
                Some(spec(Some(OTHER), Some("2026-01-01T00:00:55Z"), None, Some(0))),
                wait(5),
            ),
            (
                "acquireTime used when renewTime is missing",
                Some(spec(Some(OTHER), None, Some("2026-01-01T00:00:59Z"), Some(10))),
                wait(9),
            ),
            (
                "holder without any time is abandoned",
                Some(spec(Some(OTHER), None, None, Some(10))),
                Decision::TakeOver,
            ),
        ];
        for (name, lease, expected) in cases {
            assert_eq!(decide(lease.as_ref(), ME, now, OURS), expected, "{name}");
        }
    }

    #[tokio::test]
    async fn timing_is_whole_seconds_and_renewal_at_most_half() {
        let (_, client) = start_fake();
        let e = elector(&client, ME).with_timing(Duration::from_millis(1500), Duration::from_secs(5));
        assert_eq!(e.lease_duration(), Duration::from_secs(2));
        assert_eq!(e.renew_every(), Duration::from_secs(1));
        let e = elector(&client, ME).with_timing(Duration::ZERO, Duration::ZERO);
        assert_eq!(e.lease_duration(), Duration::from_secs(1));
        assert_eq!(e.renew_every(), MIN_RETRY);
        assert_eq!(LeaderError::Lost { holder: "x".into() }.label(), "lost");
    }

    /// A minimal Lease API: get, create and replace with resourceVersion checks, which is all
    /// the optimistic concurrency the elector relies on.
    #[derive(Clone, Default)]
    struct FakeApi {
        lease: Arc<Mutex<Option<Lease>>>,
        /// When set, every get and replace answers with this status.
        fail_with: Arc<Mutex<Option<(StatusCode, &'static str)>>>,
    }

    impl FakeApi {
        fn stored(&self) -> Option<LeaseSpec> {
            self.lease.lock().unwrap().as_ref().and_then(|l| l.spec.clone())
        }

        /// Overwrites the lease behind the elector's back, as another replica would.
        fn overwrite(&self, f: impl FnOnce(&mut LeaseSpec)) {
            let mut guard = self.lease.lock().unwrap();
            let lease = guard.as_mut().unwrap();
            let mut spec = lease.spec.take().unwrap_or_default();
            f(&mut spec);
            lease.spec = Some(spec);
            bump(lease);
        }
    }

    fn bump(lease: &mut Lease) {
        let rv: u64 = lease
            .metadata
            .resource_version
            .as_deref()
            .unwrap_or("0")
            .parse()
            .unwrap();
        lease.metadata.resource_version = Some((rv + 1).to_string());
    }

    type Reply = (StatusCode, [(&'static str, &'static str); 1], String);

    fn reply(code: StatusCode, body: &impl serde::Serialize) -> Reply {
        (
            code,
            [("content-type", "application/json")],
            serde_json::to_string(body).unwrap(),
        )
    }

    fn status(code: StatusCode, reason: &str) -> Reply {
        let body = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": reason, "reason": reason, "code": code.as_u16(),
        });
        reply(code, &body)
    }

    async fn fake_get(State(api): State<FakeApi>, Path((_, _)): Path<(String, String)>) -> Reply {
        if let Some((code, reason)) = *api.fail_with.lock().unwrap() {
            return status(code, reason);
        }
        match api.lease.lock().unwrap().as_ref() {
            Some(lease) => reply(StatusCode::OK, lease),
            None => status(StatusCode::NOT_FOUND, "NotFound"),
        }
    }

    async fn fake_create(State(api): State<FakeApi>, body: Bytes) -> Reply {
        let mut lease: Lease = serde_json::from_slice(&body).unwrap();
        let mut stored = api.lease.lock().unwrap();
        if stored.is_some() {
            return status(StatusCode::CONFLICT, "AlreadyExists");
        }
        lease.metadata.resource_version = Some("1".into());
        *stored = Some(lease.clone());
        reply(StatusCode::CREATED, &lease)
    }

    async fn fake_replace(State(api): State<FakeApi>, Path((_, _)): Path<(String, String)>, body: Bytes) -> Reply {
        if let Some((code, reason)) = *api.fail_with.lock().unwrap() {
            return status(code, reason);
        }
        let mut lease: Lease = serde_json::from_slice(&body).unwrap();
        let mut stored = api.lease.lock().unwrap();
        let Some(current) = stored.as_ref() else {
            return status(StatusCode::NOT_FOUND, "NotFound");
        };
        if lease.metadata.resource_version != current.metadata.resource_version {
            return status(StatusCode::CONFLICT, "Conflict");
        }
        bump(&mut lease);
        *stored = Some(lease.clone());
        reply(StatusCode::OK, &lease)
    }

    /// Serves the fake in-process: axum's Router is a tower Service, so kube talks to it without
    /// sockets or TLS (kube's own connector would need a process-wide rustls provider).
    fn start_fake() -> (FakeApi, kube::Client) {
        let api = FakeApi::default();
        let app = Router::new()
            .route("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases", post(fake_create))
            .route(
                "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}",
                get(fake_get).put(fake_replace),
            )
            .with_state(api.clone());
        (api, kube::Client::new(app, "default"))
    }

    fn elector(client: &kube::Client, identity: &str) -> LeaderElector {
        LeaderElector::new(
            Api::namespaced(client.clone(), "default"),
            "flashlayer-operator",
            identity,
        )
        .with_timing(Duration::from_secs(2), Duration::from_millis(200))
    }

    #[tokio::test]
    async fn one_winner_then_handover_on_release() {
        let (fake, client) = start_fake();
        let a = Arc::new(elector(&client, "a"));
        let b = Arc::new(elector(&client, "b"));

        let (ra, rb) = tokio::join!(
            tokio::time::timeout(Duration::from_secs(1), a.acquire()),
            tokio::time::timeout(Duration::from_secs(1), b.acquire()),
        );
        assert!(ra.is_ok() != rb.is_ok(), "exactly one candidate must win");
        let (winner, loser) = if ra.is_ok() { (a, b) } else { (b, a) };
        assert_eq!(
            fake.stored().unwrap().holder_identity.as_deref(),
            Some(winner.identity())
        );

        // The loser keeps waiting while the winner renews.
        let renewing = {
            let winner = winner.clone();
            tokio::spawn(async move { winner.renew_loop().await })
        };
        let waiting = {
            let loser = loser.clone();
            tokio::spawn(async move { loser.acquire().await })
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!waiting.is_finished(), "standby must not win a renewed lease");
        renewing.abort();

        // A release hands over well before the 2s lease would have expired.
        winner.release().await;
        tokio::time::timeout(Duration::from_millis(800), waiting)
            .await
            .expect("standby takes over right after release")
            .unwrap()
            .unwrap();
        let spec = fake.stored().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some(loser.identity()));
        assert_eq!(spec.lease_transitions, Some(1));
    }

    #[tokio::test]
    async fn takes_over_an_expired_lease() {
        let (fake, client) = start_fake();
        let old = elector(&client, "old");
        old.acquire().await.unwrap();
        fake.overwrite(|s| {
            s.renew_time = Some(MicroTime(ts("2020-01-01T00:00:00Z")));
            s.lease_transitions = Some(4);
        });

        let new = elector(&client, "new");
        tokio::time::timeout(Duration::from_secs(1), new.acquire())
            .await
            .unwrap()
            .unwrap();
        let spec = fake.stored().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("new"));
        assert_eq!(spec.lease_transitions, Some(5));
    }

    #[tokio::test]
    async fn renew_loop_reports_another_holder() {
        let (fake, client) = start_fake();
        let e = elector(&client, "a");
        e.acquire().await.unwrap();
        fake.overwrite(|s| s.holder_identity = Some("intruder".into()));
        let err = tokio::time::timeout(Duration::from_secs(2), e.renew_loop())
            .await
            .unwrap();
        assert!(
            matches!(&err, LeaderError::Lost { holder } if holder == "intruder"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn renew_loop_gives_up_before_the_lease_expires() {
        let (fake, client) = start_fake();
        let e = elector(&client, "a");
        e.acquire().await.unwrap();
        let started = Instant::now();
        *fake.fail_with.lock().unwrap() = Some((StatusCode::INTERNAL_SERVER_ERROR, "InternalError"));
        let err = tokio::time::timeout(Duration::from_secs(3), e.renew_loop())
            .await
            .unwrap();
        assert_eq!(err.label(), "renew_deadline", "{err}");
        assert!(
            started.elapsed() < e.lease_duration(),
            "gave up after {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn acquire_fails_fast_without_rbac() {
        let (fake, client) = start_fake();
        *fake.fail_with.lock().unwrap() = Some((StatusCode::FORBIDDEN, "Forbidden"));
        let err = tokio::time::timeout(Duration::from_secs(1), elector(&client, "a").acquire())
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.label(), "api", "{err}");
    }
}
