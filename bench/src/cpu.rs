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
    let secs = last.at.duration_since(first.at).as_secs_f64().max(1e-9);
    let busy = |a: &Sample, b: &Sample| {
        let all = b.machine.0.saturating_sub(a.machine.0) as f64;
        let idle = b.machine.1.saturating_sub(a.machine.1) as f64;
        if all > 0.0 { 1.0 - idle / all } else { 0.0 }
    };
    let saturated = samples.windows(2).filter(|w| busy(&w[0], &w[1]) >= 0.95).count();
    let cores = |name: &str, a: &Sample, b: &Sample, dt: f64| {
        let t = |s: &Sample| s.by_name.get(name).copied().unwrap_or(0);
        t(b).saturating_sub(t(a)) as f64 / TICKS / dt
    };
    let busy_cores = |a: &Sample, b: &Sample, dt: f64| {
        let all = b.machine.0.saturating_sub(a.machine.0);
        let idle = b.machine.1.saturating_sub(a.machine.1);
        all.saturating_sub(idle) as f64 / TICKS / dt
    };
    let other = |a: &Sample, b: &Sample, dt: f64| {
        (busy_cores(a, b, dt) - WATCHED.iter().map(|n| cores(n, a, b, dt)).sum::<f64>()).max(0.0)
    };
    let dt = |w: &[Sample]| w[1].at.duration_since(w[0].at).as_secs_f64().max(1e-9);
    let mut used: Vec<String> = WATCHED
        .iter()
        .map(|n| {
            let peak = samples
                .windows(2)
                .map(|w| cores(n, &w[0], &w[1], dt(w)))
                .fold(0.0, f64::max);
            format!("{n} {:.2} ({peak:.2})", cores(n, first, last, secs))
        })
        .collect();
    let peak = samples
        .windows(2)
        .map(|w| other(&w[0], &w[1], dt(w)))
        .fold(0.0, f64::max);
    used.push(format!("other {:.2} ({peak:.2})", other(first, last, secs)));
    format!(
        "cpu over {secs:.0}s: machine busy {:.0}%, saturated (>= 95%) {saturated} of {} seconds; cores used, mean \
         (busiest second): {}",
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
