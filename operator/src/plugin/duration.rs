//! Durations as people type and read them: parsing the `extend` argument, writing a ttl the
//! CRD's pattern accepts, and short human forms ("4m12s", "3h5m", "2d1h") for ages and time left.

use std::time::Duration;

use jiff::SignedDuration;

use super::error::PluginError;

/// Units accepted on the command line, longest spelling first so that `ms` is not read as `m`.
const UNITS: [(&str, u128); 5] = [
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

/// Parse a positive duration such as `90s`, `30m`, `2h`, `1h30m`, `1.5h` or `2d`, to the
/// millisecond. Written here rather than borrowed from `kube::core::Duration`, whose parser
/// panics on overflow and accepts negative values.
pub fn parse(input: &str) -> Result<Duration, PluginError> {
    let bad = || {
        PluginError::Usage(format!(
            "invalid duration \"{input}\": use a positive duration such as 90s, 30m, 2h, 1h30m or 2d"
        ))
    };
    let mut rest = input.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total_ms: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(f) => {
                let len = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
                if len == 0 {
                    return Err(bad());
                }
                f.split_at(len)
            }
            None => ("", after),
        };
        // A bare "." or ".5" without digits before it, and numbers too long to mean anything.
        if int.is_empty() || int.len() > 12 || frac.len() > 12 {
            return Err(bad());
        }
        let (unit, unit_ms) = UNITS
            .iter()
            .find(|(u, _)| after.starts_with(u))
            .copied()
            .ok_or_else(bad)?;
        let whole: u128 = int.parse().map_err(|_| bad())?;
        let mut ms = whole * unit_ms;
        if !frac.is_empty() {
            let digits: u128 = frac.parse().map_err(|_| bad())?;
            let scale = 10u128.pow(frac.len() as u32);
            ms += digits * unit_ms / scale;
        }
        total_ms = total_ms.checked_add(ms).ok_or_else(bad)?;
        rest = &after[unit.len()..];
    }
    if total_ms == 0 {
        return Err(bad());
    }
    u64::try_from(total_ms).map(Duration::from_millis).map_err(|_| bad())
}

/// A duration in the Go form the CRD's ttl pattern accepts (`15m`, `1h30m`, `1m30s`, `1s500ms`),
/// with zero components left out so that it reads as a person would write it.
pub fn go(d: Duration) -> String {
    let total_ms = d.as_millis();
    if total_ms == 0 {
        return "0s".to_owned();
    }
    let (h, m, s, ms) = (
        total_ms / 3_600_000,
        total_ms / 60_000 % 60,
        total_ms / 1_000 % 60,
        total_ms % 1_000,
    );
    let mut out = String::new();
    for (value, unit) in [(h, "h"), (m, "m"), (s, "s"), (ms, "ms")] {
        if value > 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    out
}

/// A short human form of the magnitude of `d`: the two largest units, whole seconds at most
/// (`42s`, `4m12s`, `3h5m`, `2d1h`, `10m`).
pub fn human(d: SignedDuration) -> String {
    let secs = d.as_secs().unsigned_abs();
    let pair = |big: u64, big_unit: &str, small: u64, small_unit: &str| {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit}{small}{small_unit}")
        }
    };
    match secs {
        0..60 => format!("{secs}s"),
        60..3_600 => pair(secs / 60, "m", secs % 60, "s"),
        3_600..86_400 => pair(secs / 3_600, "h", secs / 60 % 60, "m"),
        _ => pair(secs / 86_400, "d", secs / 3_600 % 24, "h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_people_type() {
        let cases = [
            ("90s", 90_000),
            ("30m", 1_800_000),
            ("2h", 7_200_000),
            ("1h30m", 5_400_000),
            ("1.5h", 5_400_000),
            ("2d", 172_800_000),
            ("500ms", 500),
            ("1m30s250ms", 90_250),
            (" 5m ", 300_000),
            ("0.25s", 250),
        ];
        for (input, ms) in cases {
            assert_eq!(parse(input).map(|d| d.as_millis()).ok(), Some(ms), "parse({input:?})");
        }
    }

    #[test]
    fn refuses_what_is_not_a_positive_duration() {
        for input in [
            "",
            "5",
            "m",
            "5x",
            "-5m",
            "+5m",
            "0s",
            "0m0s",
            ".5m",
            "5.m",
            "5.m5",
            "1e3s",
            "5 m",
            "1mm",
            "99999999999999h",
        ] {
            let err = parse(input).expect_err(input).to_string();
            assert_eq!(
                err,
                format!("invalid duration \"{input}\": use a positive duration such as 90s, 30m, 2h, 1h30m or 2d"),
                "parse({input:?})"
            );
        }
    }

    #[test]
    fn go_form_leaves_zero_components_out() {
        let cases = [
            (Duration::from_secs(900), "15m"),
            (Duration::from_secs(5_400), "1h30m"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_millis(1_500), "1s500ms"),
            (Duration::from_secs(3_600 * 720), "720h"),
            (Duration::from_secs(3_601), "1h1s"),
            (Duration::ZERO, "0s"),
        ];
        for (d, want) in cases {
            assert_eq!(go(d), want, "go({d:?})");
        }
    }

    #[test]
    fn go_form_parses_back_to_the_same_duration() {
        for ms in [1_u64, 999, 1_000, 61_001, 3_599_999, 2_592_000_000] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse(&go(d)).ok(), Some(d), "{}", go(d));
            let kube: kube::core::Duration = go(d).parse().expect("kube parses the Go form");
            assert_eq!(Duration::from(kube), d, "kube reads {}", go(d));
        }
    }

    #[test]
    fn human_form_keeps_the_two_largest_units() {
        let cases = [
            (0, "0s"),
            (42, "42s"),
            (-42, "42s"),
            (60, "1m"),
            (252, "4m12s"),
            (3_600, "1h"),
            (3_600 + 5 * 60 + 59, "1h5m"),
            (86_400, "1d"),
            (86_400 * 2 + 3_600 + 59, "2d1h"),
        ];
        for (secs, want) in cases {
            assert_eq!(human(SignedDuration::from_secs(secs)), want, "human({secs}s)");
        }
    }
}
