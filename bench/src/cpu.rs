//! Where the machine's cores went over a window: each second, the CPU time of the cluster's
//! processes and the operator (from /proc), so that a latency figure comes with what the two
//! cores were busy with while it was measured.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Process names (`/proc/<pid>/comm`, 15 bytes at most) reported on their own; "other" is the
/// machine's busy time less theirs (processes that come and go included).
const WATCHED: &[&str] = &[
    "etcd",
    "kube-apiserver",
    "kube-controller",
    "kube-scheduler",
    "kwok",
    "flashlayer-oper",
    "flashlayer-benc",
];

/// Clock ticks per second of /proc's CPU times (USER_HZ: 100 on every Linux this runs on).
const TICKS: f64 = 100.0;

struct Sample {
    at: Instant,
    /// Whole machine, from /proc/stat: (all ticks, idle + iowait ticks).
    machine: (u64, u64),
    /// utime + stime ticks by process name.
    by_name: BTreeMap<String, u64>,
}

/// Samples once a second on a thread of its own until [`CpuWatch::finish`].
pub struct CpuWatch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Sample>>,
}

impl CpuWatch {
    pub fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut samples = vec![sample()];
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                samples.push(sample());
            }
            samples
        });
        Self { stop, thread }
    }

    /// One line: how busy the machine was, and the cores each process used on average.
    pub fn finish(self) -> String {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.thread.join().unwrap_or_default();
        summarize(&samples)
    }
}

fn summarize(samples: &[Sample]) -> String {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return "cpu: no samples".into();
    };
    let secs = |a: &Sample, b: &Sample| b.at.duration_since(a.at).as_secs_f64().max(1e-9);
    // Machine ticks between two samples, all and idle (summed over every core).
    let ticks = |a: &Sample, b: &Sample| {
        let all = b.machine.0.saturating_sub(a.machine.0);
        (all, b.machine.1.saturating_sub(a.machine.1).min(all))
    };
    let busy = |a: &Sample, b: &Sample| {
        let (all, idle) = ticks(a, b);
        if all > 0 { 1.0 - idle as f64 / all as f64 } else { 0.0 }
    };
    let cores = |name: &str, a: &Sample, b: &Sample| {
        let t = |s: &Sample| s.by_name.get(name).copied().unwrap_or(0);
        t(b).saturating_sub(t(a)) as f64 / TICKS / secs(a, b)
    };
    let other = |a: &Sample, b: &Sample| {
        let (all, idle) = ticks(a, b);
        let machine = (all - idle) as f64 / TICKS / secs(a, b);
        (machine - WATCHED.iter().map(|n| cores(n, a, b)).sum::<f64>()).max(0.0)
    };
    // Over the whole window, and its busiest second.
    let mean_and_peak = |f: &dyn Fn(&Sample, &Sample) -> f64| {
        let peak = samples.windows(2).map(|w| f(&w[0], &w[1])).fold(0.0, f64::max);
        format!("{:.2} ({peak:.2})", f(first, last))
    };
    let mut used: Vec<String> = WATCHED
        .iter()
        .map(|n| format!("{n} {}", mean_and_peak(&|a, b| cores(n, a, b))))
        .collect();
    used.push(format!("other {}", mean_and_peak(&other)));
    let saturated = samples.windows(2).filter(|w| busy(&w[0], &w[1]) >= 0.95).count();
    format!(
        "cpu over {:.0}s: machine busy {:.0}%, saturated (>= 95%) {saturated} of {} seconds; cores used, mean \
         (busiest second): {}",
        secs(first, last),
        busy(first, last) * 100.0,
        samples.len().saturating_sub(1),
        used.join(", ")
    )
}

fn sample() -> Sample {
    let machine = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let line = s.lines().next()?.strip_prefix("cpu ")?.to_owned();
            let v: Vec<u64> = line.split_whitespace().filter_map(|f| f.parse().ok()).collect();
            // user nice system idle iowait irq softirq steal (guest time is inside user).
            let all = v.iter().take(8).sum();
            Some((all, v.get(3)? + v.get(4)?))
        })
        .unwrap_or((0, 0));
    let mut by_name = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let path = entry.path();
        if !entry.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("stat")),
        ) else {
            continue;
        };
        // The name in stat is in parentheses and may hold spaces: count fields after its end.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        // Fields 14 and 15 of stat (utime, stime) are the 12th and 13th after the name.
        let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let comm = comm.trim();
        if WATCHED.contains(&comm) {
            *by_name.entry(comm.to_owned()).or_default() += ticks;
        }
    }
    Sample {
        at: Instant::now(),
        machine,
        by_name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_are_counted_per_process_and_the_rest_is_other() {
        let t0 = Instant::now();
        let at = |secs: u64, machine: (u64, u64), etcd: u64| Sample {
            at: t0 + Duration::from_secs(secs),
            machine,
            by_name: BTreeMap::from([("etcd".to_owned(), etcd)]),
        };
        // Two cores over 2 s = 400 ticks. First second: 200 ticks, all busy (etcd 100);
        // second: 200 ticks, 100 idle (etcd 50).
        let samples = [at(0, (0, 0), 0), at(1, (200, 0), 100), at(2, (400, 100), 150)];
        let line = summarize(&samples);
        assert!(
            line.starts_with("cpu over 2s: machine busy 75%, saturated (>= 95%) 1 of 2 seconds"),
            "{line}"
        );
        assert!(line.contains("etcd 0.75 (1.00)"), "{line}");
        assert!(line.contains("other 0.75 (1.00)"), "{line}");
    }
}
