//! Fault injection for the exactly-once tests: named points in the settlement code where the
//! process can be made to die. Compiled in always, inert unless `FLASHLAYER_FAULT` names the
//! point (a comma-separated list is accepted). A person never sets it; the e2e suite does, to kill
//! the operator at an exact step and check that a restarted one settles exactly once.

use std::sync::OnceLock;

/// The environment variable that arms fault points.
pub const ENV: &str = "FLASHLAYER_FAULT";

/// Settlement intent recorded in status, transaction not sent yet.
pub const EXIT_BEFORE_SEND: &str = "exit-before-send";
/// Settlement transaction sent, its step (Confirming) not recorded yet.
pub const EXIT_AFTER_SEND: &str = "exit-after-send";
/// Receipt with enough confirmations seen, `Done` not recorded yet.
pub const EXIT_AFTER_RECEIPT: &str = "exit-after-receipt";
/// Registration intent recorded in status, `registerRollup` not sent yet.
pub const EXIT_BEFORE_REGISTER_SEND: &str = "exit-before-register-send";

/// Every point the code has.
pub const POINTS: [&str; 4] = [
    EXIT_BEFORE_SEND,
    EXIT_AFTER_SEND,
    EXIT_AFTER_RECEIPT,
    EXIT_BEFORE_REGISTER_SEND,
];

fn armed() -> &'static [String] {
    static ARMED: OnceLock<Vec<String>> = OnceLock::new();
    ARMED.get_or_init(|| parse(std::env::var(ENV).ok().as_deref()))
}

fn parse(value: Option<&str>) -> Vec<String> {
    let armed: Vec<String> = value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    for p in &armed {
        if !POINTS.contains(&p.as_str()) {
            tracing::warn!(point = %p, "{ENV} names an unknown fault point; it never fires");
        }
    }
    armed
}

/// Exit the process with status 1 here if `point` is armed; otherwise do nothing.
pub fn point(point: &'static str) {
    if armed().iter().any(|p| p == point) {
        tracing::error!(point, "fault injection: exiting at {point} ({ENV})");
        eprintln!("flashlayer-operator: fault injection: exit(1) at {point}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_list_and_ignores_blanks() {
        assert!(parse(None).is_empty());
        assert!(parse(Some("")).is_empty());
        assert_eq!(
            parse(Some(" exit-before-send, ,exit-after-receipt")),
            ["exit-before-send", "exit-after-receipt"]
        );
    }

    #[test]
    fn unarmed_points_do_nothing() {
        // The test process does not set the variable: reaching a point returns.
        for p in POINTS {
            point(p);
        }
    }
}
