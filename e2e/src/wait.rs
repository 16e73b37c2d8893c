//! Waiting for a condition with a deadline: poll, print what is seen whenever it changes, and
//! fail the test with the last state when time is up.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::log;

/// What one poll found.
#[derive(Debug)]
pub enum Check<T> {
    /// The condition holds; here is what the caller wanted.
    Done(T),
    /// Not yet; a short description of the current state (printed when it changes).
    Waiting(String),
}

/// How often `until` polls.
pub const POLL: Duration = Duration::from_millis(250);

/// Poll `probe` every [`POLL`] until it is `Done`, or panic after `timeout`.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Check<T>>,
{
    within(what, timeout, probe).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Like [`until`], but a timeout is an `Err` (for checks that should not stop the scenario).
pub async fn within<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Check<T>>,
{
    let start = Instant::now();
    let mut last = String::new();
    loop {
        match probe().await {
            Check::Done(value) => {
                log(format!("{what}: done after {:.1}s", start.elapsed().as_secs_f64()));
                return Ok(value);
            }
            Check::Waiting(state) => {
                if state != last {
                    log(format!("waiting for {what}: {state}"));
                    last = state;
                }
            }
        }
        if start.elapsed() >= timeout {
            let e = format!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
            log(&e);
            return Err(e);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Check that `probe` stays `Done` (the condition keeps holding) for `period`; panic when it
/// stops holding. Returns the last value.
pub async fn stays<T, F, Fut>(what: &str, period: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Check<T>>,
{
    let start = Instant::now();
    loop {
        match probe().await {
            Check::Done(value) if start.elapsed() >= period => {
                log(format!("{what}: held for {:.1}s", period.as_secs_f64()));
                return value;
            }
            Check::Done(_) => {}
            Check::Waiting(state) => panic!(
                "expected {what} to hold for {period:?}, but after {:.1}s: {state}",
                start.elapsed().as_secs_f64()
            ),
        }
        tokio::time::sleep(POLL).await;
    }
}
