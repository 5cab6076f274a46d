//! Which scheduled backups to keep, with restic `forget` semantics: a backup
//! is kept when any rule keeps it, and the newest one always is.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::error::{Error, Result};

/// Validated retention rules (built only by [`Retention::new`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    keep_last: u32,
    keep_hourly: u32,
    keep_daily: u32,
    keep_weekly: u32,
    keep_monthly: u32,
    max_age: Option<Duration>,
}

impl Retention {
    /// A zero `max_age` counts as none.
    pub fn new(
        keep_last: u32,
        keep_hourly: u32,
        keep_daily: u32,
        keep_weekly: u32,
        keep_monthly: u32,
        max_age: Option<Duration>,
    ) -> Self {
        Retention {
            keep_last,
            keep_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
            max_age: max_age.filter(|d| !d.is_zero()),
        }
    }
    pub fn keep_last(&self) -> u32 {
        self.keep_last
    }
    pub fn keep_hourly(&self) -> u32 {
        self.keep_hourly
    }
    pub fn keep_daily(&self) -> u32 {
        self.keep_daily
    }
    pub fn keep_weekly(&self) -> u32 {
        self.keep_weekly
    }
    pub fn keep_monthly(&self) -> u32 {
        self.keep_monthly
    }
    pub fn max_age(&self) -> Option<Duration> {
        self.max_age
    }
    /// True when no rule is set: everything is kept.
    pub fn is_empty(&self) -> bool {
        *self == Retention::default()
    }
}

/// The units of a max age, largest first, and their sizes in seconds.
const UNITS: [char; 5] = ['w', 'd', 'h', 'm', 's'];
const UNIT_SECS: [u64; 5] = [604_800, 86_400, 3_600, 60, 1];

/// Parses a max age such as "36h", "7d", "2w", "90m" or "1d12h" (units w, d,
/// h, m, s, each at most once, largest first); "" means none.
pub fn parse_max_age(s: &str) -> Result<Option<Duration>> {
    let bad = |why: &str| Error::InvalidArgument(format!("max_age {s:?}: {why}"));
    let mut rest = s.trim();
    if rest.is_empty() {
        return Ok(None);
    }
    let (mut total, mut next_unit) = (0u64, 0usize);
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let unit = rest[digits..].chars().next();
        let index = unit.and_then(|u| UNITS.iter().position(|&x| x == u));
        let (Some(unit), Some(index), true) = (unit, index, digits > 0) else {
            return Err(bad(
                "use numbers with units w, d, h, m, s, like 7d or 1d12h",
            ));
        };
        if index < next_unit {
            return Err(bad("each unit at most once, largest first (like 1d12h)"));
        }
        next_unit = index + 1;
        total = rest[..digits]
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(UNIT_SECS[index])?.checked_add(total))
            .ok_or_else(|| bad("too large"))?;
        rest = &rest[digits + unit.len_utf8()..];
    }
    if total == 0 {
        return Err(bad("must be more than zero"));
    }
    Ok(Some(Duration::from_secs(total)))
}

/// Formats a duration in whole seconds as `parse_max_age` reads it, days
/// being the largest unit ("1d12h", "14d", "0s").
pub fn format_max_age(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in UNITS.into_iter().zip(UNIT_SECS).skip(1) {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// A backup that retention may delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub time: DateTime<Utc>,
}

/// Whether a backup is kept, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub name: String,
    pub time: DateTime<Utc>,
    pub keep: bool,
    pub reason: String,
}

/// What `rules` keep and delete among the backups in `list` at `now`, newest
/// first (equal times by name descending). Hours, days, ISO weeks and months are taken in
/// `tz`; each keep_* rule keeps the newest backup of its n newest periods
/// that have backups.
pub fn decide(rules: &Retention, list: &[Candidate], now: DateTime<Utc>, tz: Tz) -> Vec<Decision> {
    let mut sorted: Vec<&Candidate> = list.iter().collect();
    sorted.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.name.cmp(&a.name)));
    // (rule, periods left, period label format, last period kept)
    let mut periods: [(&str, u32, &str, Option<String>); 4] = [
        ("keep_hourly", rules.keep_hourly, "%Y-%m-%d %Hh", None),
        ("keep_daily", rules.keep_daily, "%Y-%m-%d", None),
        ("keep_weekly", rules.keep_weekly, "%G-W%V", None),
        ("keep_monthly", rules.keep_monthly, "%Y-%m", None),
    ];
    let decide_one = |(index, backup): (usize, &Candidate)| {
        let mut reasons = Vec::new();
        if rules.is_empty() {
            reasons.push("no retention rule".to_string());
        }
        if index < rules.keep_last as usize {
            reasons.push(format!("keep_last {}", rules.keep_last));
        }
        let local = backup.time.with_timezone(&tz);
        for (rule, left, format, last) in &mut periods {
            let period = local.format(format).to_string();
            if *left > 0 && last.as_ref() != Some(&period) {
                reasons.push(format!("{rule}: newest of {period}"));
                *left -= 1;
                *last = Some(period);
            }
        }
        // A backup from the future is 0s old.
        let age = (now - backup.time).to_std().unwrap_or_default();
        if let Some(max) = rules.max_age.filter(|max| age <= *max) {
            let (max, age) = (format_max_age(max), format_max_age(age));
            reasons.push(format!("max_age {max}: {age} old"));
        }
        if index == 0 && reasons.is_empty() {
            reasons.push("the newest backup is never deleted".to_string());
        }
        let keep = !reasons.is_empty();
        if !keep {
            reasons.push("no rule keeps it".to_string());
        }
        Decision {
            name: backup.name.clone(),
            time: backup.time,
            keep,
            reason: reasons.join("; "),
        }
    };
    sorted.into_iter().enumerate().map(decide_one).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A time in 2026 written "MM-ddTHH:mm".
    fn time(t: &str) -> DateTime<Utc> {
        format!("2026-{t}:00Z").parse().unwrap()
    }

    /// 2026 times, oldest first: 11-20 is in W47, 11-29 a Sunday of W48, 11-30 a Monday.
    const TIMES: [&str; 7] = [
        "11-20T10:00",
        "11-29T08:00",
        "11-30T07:00",
        "11-30T20:00",
        "12-01T09:00",
        "12-01T13:05",
        "12-01T13:40",
    ];

    /// Decides at 12-02T12:00 over backups named by their time; gives the
    /// kept ones' names and reasons, newest first.
    fn kept(rules: &Retention, times: &[&str], tz: Tz) -> Vec<(String, String)> {
        let named = |t: &&str| Candidate {
            name: t.to_string(),
            time: time(t),
        };
        let list: Vec<_> = times.iter().map(named).collect();
        let mut all = decide(rules, &list, time("12-02T12:00"), tz);
        assert!(all.iter().all(|d| d.keep || d.reason == "no rule keeps it"));
        all.retain(|d| d.keep);
        all.into_iter().map(|d| (d.name, d.reason)).collect()
    }

    fn names(kept: &[(String, String)]) -> Vec<&str> {
        kept.iter().map(|(name, _)| name.as_str()).collect()
    }

    #[test]
    fn count_rules_keep_the_newest_of_each_period_in_tz() {
        let r = |l, h, d, w, m| Retention::new(l, h, d, w, m, None);
        // Periods without backups do not count (restic semantics).
        let cases: [(Retention, &[usize]); 5] = [
            (r(3, 0, 0, 0, 0), &[6, 5, 4]),
            (r(0, 2, 0, 0, 0), &[6, 4]),
            (r(0, 0, 3, 0, 0), &[6, 3, 1]),
            (r(0, 0, 0, 3, 0), &[6, 1, 0]),
            (r(0, 0, 0, 0, 5), &[6, 3]),
        ];
        for (rules, want) in cases {
            let want: Vec<_> = want.iter().map(|&i| TIMES[i]).collect();
            assert_eq!(names(&kept(&rules, &TIMES, Tz::UTC)), want, "{rules:?}");
        }
        let got = kept(&Retention::new(1, 1, 2, 1, 2, None), &TIMES, Tz::UTC);
        let want = [
            "keep_last 1; keep_hourly: newest of 2026-12-01 13h; keep_daily: newest of \
             2026-12-01; keep_weekly: newest of 2026-W49; keep_monthly: newest of 2026-12",
            "keep_daily: newest of 2026-11-30; keep_monthly: newest of 2026-11",
        ];
        assert_eq!(got.iter().map(|k| k.1.as_str()).collect::<Vec<_>>(), want);
        // Periods are taken in the time zone: 23:30 UTC is the next day in Berlin.
        let times = ["12-01T12:00", "12-01T23:30"];
        let daily = Retention::new(0, 0, 2, 0, 0, None);
        let utc = kept(&daily, &times, Tz::UTC);
        assert_eq!(names(&utc), [times[1]]);
        assert_eq!(utc[0].1, "keep_daily: newest of 2026-12-01");
        let berlin = kept(&daily, &times, Tz::Europe__Berlin);
        assert_eq!(berlin[0].1, "keep_daily: newest of 2026-12-02");
        assert_eq!(berlin[1].1, "keep_daily: newest of 2026-12-01");
    }

    #[test]
    fn empty_rules_empty_list_and_getters() {
        let all = kept(&Retention::default(), &TIMES, Tz::UTC);
        assert_eq!(all.len(), TIMES.len());
        assert!(all.iter().all(|(_, reason)| reason == "no retention rule"));
        assert!(kept(&Retention::new(1, 0, 0, 0, 0, None), &[], Tz::UTC).is_empty());
        let rules = Retention::new(1, 2, 3, 4, 5, Some(Duration::ZERO));
        let counts = [rules.keep_last(), rules.keep_hourly(), rules.keep_daily()];
        assert_eq!(counts, [1, 2, 3]);
        assert_eq!(rules.max_age(), None);
        assert!(!rules.is_empty() && Retention::new(0, 0, 0, 0, 0, None).is_empty());
    }

    #[test]
    fn max_age_and_never_the_newest() {
        let max_age = |secs| Retention::new(0, 0, 0, 0, 0, Some(Duration::from_secs(secs)));
        let got = kept(&max_age(7 * 86_400), &TIMES, Tz::UTC);
        assert_eq!(got.len(), 6);
        assert_eq!(got[4], (TIMES[2].into(), "max_age 7d: 2d5h old".into()));
        let got = kept(&max_age(3_600), &TIMES, Tz::UTC);
        assert_eq!(names(&got), [TIMES[6]]);
        assert_eq!(got[0].1, "the newest backup is never deleted");
        let future = kept(&max_age(60), &["12-03T00:00"], Tz::UTC);
        assert_eq!(future[0].1, "max_age 1m: 0s old");
    }

    #[test]
    fn ties_order_by_name_descending() {
        let t = time("12-01T00:00");
        let list = ["a", "c", "b"].map(|n| Candidate {
            name: n.to_string(),
            time: t,
        });
        let got = decide(&Retention::new(2, 0, 0, 0, 0, None), &list, t, Tz::UTC);
        let order: Vec<_> = got.iter().map(|d| (d.name.as_str(), d.keep)).collect();
        assert_eq!(order, [("c", true), ("b", true), ("a", false)]);
    }

    #[test]
    fn max_age_round_trips_and_refusals() {
        let cases = "36h=1d12h 7d=7d 2w=14d 90m=1h30m 1d12h=1d12h 1w2d3h4m5s=9d3h4m5s 45s=45s";
        for (text, formatted) in cases.split(' ').filter_map(|c| c.split_once('=')) {
            let d = parse_max_age(text).unwrap().unwrap();
            assert_eq!(format_max_age(d), formatted);
            assert_eq!(parse_max_age(formatted).unwrap(), Some(d));
        }
        assert_eq!(parse_max_age(" 7d ").unwrap(), parse_max_age("1w").unwrap());
        assert_eq!(parse_max_age("").unwrap(), None);
        assert_eq!(format_max_age(Duration::from_millis(61_900)), "1m1s");
        assert_eq!(format_max_age(Duration::ZERO), "0s");
        let bad = "0s 0d0h 7 d 7x 7D 1h1d 1d1d -1d 99999999999999999999d 9999999999999999w";
        for bad in bad.split(' ').chain(["7 d"]) {
            let Err(Error::InvalidArgument(msg)) = parse_max_age(bad) else {
                panic!("{bad} was accepted");
            };
            assert!(msg.starts_with(&format!("max_age \"{bad}\": ")), "{msg}");
        }
    }
}
