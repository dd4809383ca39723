//! Time as the deploy driver sees it: every sleep, poll and deadline goes
//! through [`Clock`], so tests can run a whole deploy on a virtual clock
//! ([`crate::fake_fleet::VirtualClock`]) without waiting.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync {
    /// Wall-clock time (the lock's `since`, the audit record's `started`).
    fn now(&self) -> SystemTime;
    /// Monotonic time since an arbitrary start (deadlines, durations).
    fn elapsed(&self) -> Duration;
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send;
}

/// The real clock.
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock { start: Instant::now() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await
    }
}

/// Seconds since 1970 of a wall-clock time.
pub fn epoch_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub fn epoch() -> u64 {
    epoch_of(SystemTime::now())
}

/// `2026-11-18T11:06:40Z`.
pub fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// `20261118T110640Z`: sorts by time, fits in an object key.
pub fn compact_time(secs: u64) -> String {
    rfc3339(secs).replace(['-', ':'], "")
}

/// `10m`, `1m30s`, `2h`, `500ms`: the units of the file's durations.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s >= 60 && s % 60 == 0 {
        format!("{}m", s / 60)
    } else if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else if s == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(compact_time(1_795_000_000), "20261118T110640Z");
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(Duration::from_secs(120)), "2m");
        assert_eq!(human_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(human_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(human_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(human_duration(Duration::from_secs(6)), "6s");
    }
}
