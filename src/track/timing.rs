//! How long trials ran, and stored times as people read them.

use chrono::{DateTime, Utc};

use super::TrialSummary;
use crate::contract::Status;

/// How long a trial ran: to its end, or to `now` while it runs.
pub fn duration(t: &TrialSummary, now: DateTime<Utc>) -> Option<chrono::Duration> {
    let at = |s: &Option<String>| {
        s.as_deref()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc))
    };
    let start = at(&t.started_at)?;
    let end = match at(&t.ended_at) {
        Some(end) if t.status != Status::Running => end,
        _ if t.status == Status::Running => now,
        _ => return None,
    };
    Some(end - start)
}

/// A stored RFC 3339 time as seconds since 1970 (what metric rows' wall times count).
pub fn seconds(stored: &str) -> Option<f64> {
    DateTime::parse_from_rfc3339(stored)
        .ok()
        .map(|d| d.timestamp_millis() as f64 / 1000.0)
}

/// `45s`, `3m04s`, `1h02m`, `2d03h`.
pub fn short_duration(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// `2026-12-06 23:10` (UTC) from a stored RFC 3339 time; the text itself if it is not one.
pub fn short_time(stored: &str) -> String {
    DateTime::parse_from_rfc3339(stored)
        .map(|d| d.with_timezone(&Utc).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|_| stored.to_string())
}
