//! Whether a policy's name template gives a slot's name again while the
//! backup of that name may still be kept: the later run would find its name
//! taken and fail (ALREADY_EXISTS, not retried).

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::retention::Retention;
use super::schedule::{Schedule, render_name};
use crate::error::Result;

/// Slots walked at most to find how long `keep_last` and its kind keep a
/// backup; beyond, the time is scaled from those walked.
const SLOTS_WALKED: u32 = 100_000;

/// The shortest time after which `template` (its `{policy}` filled in) can
/// give a name again, and how it is said: `None` when it names the year.
/// A template of no date field repeats at once (the next 64 slots are
/// checked for that).
pub fn repeat_period(template: &str) -> Result<Option<(Duration, &'static str)>> {
    let base = Utc.with_ymd_and_hms(2001, 1, 1, 0, 0, 0).unwrap();
    let name = |t: DateTime<Utc>| render_name(template, t, chrono_tz::Tz::UTC);
    let first = name(base)?;
    let differs = |t: DateTime<Utc>| name(t).map(|n| n != first);
    let fields = [
        (Utc.with_ymd_and_hms(2002, 1, 1, 0, 0, 0).unwrap(), None),
        (
            Utc.with_ymd_and_hms(2001, 2, 1, 0, 0, 0).unwrap(),
            Some((Duration::days(365), "a year")),
        ),
        (
            base + Duration::days(1),
            Some((Duration::days(28), "a month")),
        ),
        (
            base + Duration::hours(1),
            Some((Duration::days(1), "a day")),
        ),
        (
            base + Duration::minutes(1),
            Some((Duration::hours(1), "an hour")),
        ),
        (
            base + Duration::seconds(1),
            Some((Duration::minutes(1), "a minute")),
        ),
    ];
    // The coarsest field the template has decides.
    for (changed, period) in fields {
        if differs(changed)? {
            return Ok(period);
        }
    }
    Ok(Some((Duration::zero(), "the next slot")))
}

/// How long `retention` may keep the backup of slot `from` of `schedule`,
/// as far as `limit` (a longer time is given as `limit`); `None`: for ever
/// (no rule). `keep_last n` keeps it until the run of the `n`-th next slot;
/// a rule of `n` hours, days, weeks or months keeps the newest backup of
/// each of the `n` latest periods with backups: the last one of a period
/// until a backup of the period `n` later is made, at most `n - 1` periods
/// and two slot gaps on, and `n` slots on when the slots are further apart.
pub fn kept_for(
    retention: &Retention,
    schedule: &Schedule,
    from: DateTime<Utc>,
    limit: Duration,
) -> Option<Duration> {
    if retention.is_empty() {
        return None;
    }
    let rules = [
        (retention.keep_last(), Duration::zero()),
        (retention.keep_hourly(), Duration::hours(1)),
        (retention.keep_daily(), Duration::days(1)),
        (retention.keep_weekly(), Duration::weeks(1)),
        (retention.keep_monthly(), Duration::days(31)),
    ];
    let mut longest = retention
        .max_age()
        .and_then(|d| Duration::from_std(d).ok())
        .unwrap_or_default();
    let gap = slots_ahead(schedule, from, 1, limit);
    for (n, period) in rules.into_iter().filter(|(n, _)| *n > 0) {
        let periods = (period.checked_mul(n as i32 - 1))
            .and_then(|p| p.checked_add(&(gap + gap)))
            .unwrap_or(limit);
        longest = longest
            .max(periods)
            .max(slots_ahead(schedule, from, n, limit));
    }
    Some(longest.min(limit))
}

/// The time from `from` to its `n`-th next slot, as far as `limit`.
fn slots_ahead(schedule: &Schedule, from: DateTime<Utc>, n: u32, limit: Duration) -> Duration {
    let mut at = from;
    for walked in 1..=n.min(SLOTS_WALKED) {
        let Some(next) = schedule.next_after(at) else {
            return at - from;
        };
        at = next;
        if at - from >= limit {
            return limit;
        }
        if walked == SLOTS_WALKED {
            let scaled = (at - from).num_seconds() as f64 * f64::from(n) / f64::from(walked);
            return Duration::seconds(scaled.min(limit.num_seconds() as f64) as i64);
        }
    }
    at - from
}

/// "3 days", "5 hours": `d` in its largest whole unit.
pub fn in_words(d: Duration) -> String {
    let (n, unit) = match d {
        d if d.num_days() >= 1 => (d.num_days(), "day"),
        d if d.num_hours() >= 1 => (d.num_hours(), "hour"),
        d if d.num_minutes() >= 1 => (d.num_minutes(), "minute"),
        d => (d.num_seconds(), "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}
