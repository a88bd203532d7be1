//! Latency histograms and the one-line `RESULT` records that `bench/compare.sh` parses.

use hdrhistogram::Histogram;
use std::fmt::Write as _;
use std::time::Duration;

/// Latencies in microseconds, from 1 µs to 10 minutes, 3 significant digits.
pub struct Latencies(Histogram<u64>);

impl Latencies {
    pub fn new() -> Self {
        Latencies(Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds"))
    }

    pub fn record(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, 600_000_000);
        self.0.saturating_record(us);
    }

    pub fn merge(&mut self, other: &Latencies) {
        self.0.add(&other.0).expect("same histogram bounds");
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Quantile in milliseconds.
    pub fn q_ms(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.max() as f64 / 1000.0
    }

    pub fn mean_ms(&self) -> f64 {
        self.0.mean() / 1000.0
    }

    pub fn summary(&self) -> String {
        format!(
            "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms, mean {:.2} ms ({} samples)",
            self.q_ms(0.50),
            self.q_ms(0.90),
            self.q_ms(0.99),
            self.q_ms(0.999),
            self.max_ms(),
            self.mean_ms(),
            self.len()
        )
    }
}

/// `RESULT <name> key=value …`: one line per measurement, for scripts.
pub struct ResultLine {
    line: String,
}

impl ResultLine {
    pub fn new(name: &str) -> Self {
        ResultLine {
            line: format!("RESULT {name}"),
        }
    }

    pub fn field(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        let _ = write!(self.line, " {key}={value}");
        self
    }

    pub fn f(self, key: &str, value: f64) -> Self {
        let v = format!("{value:.2}");
        self.field(key, v)
    }

    pub fn latencies(self, l: &Latencies) -> Self {
        self.f("p50_ms", l.q_ms(0.50))
            .f("p99_ms", l.q_ms(0.99))
            .f("max_ms", l.max_ms())
    }

    pub fn print(self) {
        println!("{}", self.line);
    }
}

/// Microsecond-precise rate.
pub fn per_sec(count: u64, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s <= 0.0 {
        0.0
    } else {
        count as f64 / s
    }
}

/// CPU time (user + system) a process has used so far, from `/proc/PID/stat` (Linux only;
/// `None` elsewhere or when the process is gone). `pid` 0 means this process.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let path = if pid == 0 {
        "/proc/self/stat".to_string()
    } else {
        format!("/proc/{pid}/stat")
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after "pid (comm) ".
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux platform Rust targets in practice.
    Some(Duration::from_millis(ticks * 10))
}
