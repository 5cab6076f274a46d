//! When a backup policy fires: a cron expression evaluated in a time zone,
//! and the backup name rendered for each slot.

use chrono::offset::LocalResult;
use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::error::{Error, Result};

/// A validated schedule: a cron expression of 5 fields (minute precision) or
/// 6 (leading seconds field), evaluated in a time zone.
#[derive(Clone)]
pub struct Schedule {
    cron: Cron,
    expression: String,
    tz: Tz,
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Schedule({:?} in {})", self.expression, self.tz.name())
    }
}

impl Schedule {
    /// Parses `cron` (5 or 6 whitespace-separated fields) in time zone `tz`
    /// ("" or "UTC" means UTC, otherwise an IANA name such as "Europe/Berlin").
    /// An expression that can never match (like "0 0 30 2 *") is refused.
    pub fn parse(cron: &str, tz: &str) -> Result<Schedule> {
        let tz = parse_time_zone(tz)?;
        let expression = cron.trim();
        let bad = |why: String| Error::InvalidArgument(format!("schedule {expression:?}: {why}"));
        let fields = expression.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(bad(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week) \
                 or 6 (a leading seconds field; no year field), got {fields}"
            )));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(expression).map_err(|e| bad(e.to_string()))?;
        // Without a year field a pattern matches within 28 years or never.
        if cron
            .find_next_occurrence(&DateTime::UNIX_EPOCH, true)
            .is_err()
        {
            return Err(bad("it never matches".to_string()));
        }
        let expression = expression.to_string();
        Ok(Schedule {
            cron,
            expression,
            tz,
        })
    }

    /// The expression as given (trimmed).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone the expression is evaluated in.
    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// The IANA name of the time zone ("UTC" when none was given).
    pub fn time_zone_name(&self) -> &str {
        self.tz.name()
    }

    /// The newest occurrence `t` with `after < t <= now`: the latest due slot.
    pub fn latest_due(&self, after: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if now <= after {
            return None;
        }
        let local = now.with_timezone(&self.tz);
        let slot = self.cron.find_previous_occurrence(&local, true).ok()?;
        let slot = slot.with_timezone(&Utc);
        (after < slot && slot <= now).then_some(slot)
    }

    /// The first occurrence strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.tz);
        let slot = self.cron.find_next_occurrence(&local, false).ok()?;
        Some(slot.with_timezone(&Utc)).filter(|slot| *slot > t)
    }
}

/// Parses a time zone: "" or "UTC" is UTC, otherwise an IANA name.
pub fn parse_time_zone(tz: &str) -> Result<Tz> {
    if tz.is_empty() || tz == "UTC" {
        return Ok(Tz::UTC);
    }
    tz.parse()
        .map_err(|_| Error::InvalidArgument(format!("time_zone {tz:?}: unknown IANA time zone")))
}

/// Renders a backup name template for the slot at `t` in time zone `tz`.
/// Braces hold a date pattern of yyyy, yy, MM, dd, HH, mm, ss and non-letters
/// (`nightly_{yyyyMMdd_HHmm}` gives `nightly_20261202_1305`); text outside
/// braces is copied. In the hour repeated when the clocks go back, the
/// second pass's name ends with `_2`.
pub fn render_name(template: &str, t: DateTime<Utc>, tz: Tz) -> Result<String> {
    let bad = |why: String| Error::InvalidArgument(format!("name_template {template:?}: {why}"));
    let local = t.with_timezone(&tz);
    let mut out = String::with_capacity(template.len() + 8);
    let mut chars = template.chars().peekable();
    // Some(empty so far) while inside braces.
    let mut open: Option<bool> = None;
    while let Some(c) = chars.next() {
        match (c, open) {
            ('{', None) => open = Some(true),
            ('{', Some(_)) => return Err(bad("nested '{'".to_string())),
            ('}', None) => return Err(bad("'}' without '{'".to_string())),
            ('}', Some(true)) => return Err(bad("empty '{}'".to_string())),
            ('}', Some(false)) => open = None,
            (c, None) => out.push(c),
            (c, Some(_)) => {
                open = Some(false);
                if !c.is_alphabetic() {
                    out.push(c);
                    continue;
                }
                let mut run = c.to_string();
                while chars.next_if_eq(&c).is_some() {
                    run.push(c);
                }
                let value = match run.as_str() {
                    "yyyy" => format!("{:04}", local.year()),
                    "yy" => format!("{:02}", local.year().rem_euclid(100)),
                    "MM" => format!("{:02}", local.month()),
                    "dd" => format!("{:02}", local.day()),
                    "HH" => format!("{:02}", local.hour()),
                    "mm" => format!("{:02}", local.minute()),
                    "ss" => format!("{:02}", local.second()),
                    _ => {
                        return Err(bad(format!(
                            "unknown date pattern {run:?} (use yyyy, yy, MM, dd, HH, mm, ss)"
                        )));
                    }
                };
                out.push_str(&value);
            }
        }
    }
    if open.is_some() {
        return Err(bad("'{' is never closed".to_string()));
    }
    // The second pass of an hour repeated when the clocks go back reads the
    // same as the first: it gets `_2`, so two slots never share a name.
    if let LocalResult::Ambiguous(_, later) = tz.from_local_datetime(&local.naive_local())
        && later == local
    {
        out.push_str("_2");
    }
    Ok(out)
}

/// Checks a name template without a time, so a bad one is refused up front.
pub fn check_template(template: &str) -> Result<()> {
    render_name(template, DateTime::UNIX_EPOCH, Tz::UTC).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// Berlin's clocks go back at 01:00 UTC on 2026-10-25: 02:00 local
    /// comes twice. The two passes get different names, and the hours
    /// around them none of the suffix.
    #[test]
    fn the_repeated_hour_at_the_fall_back_names_its_second_pass_apart() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let t = "p_{yyyyMMdd_HHmmss}";
        let name = |s: &str| render_name(t, at(s), berlin).unwrap();
        assert_eq!(name("2026-10-25T00:00:00Z"), "p_20261025_020000");
        assert_eq!(name("2026-10-25T01:00:00Z"), "p_20261025_020000_2");
        assert_eq!(name("2026-10-25T01:30:00Z"), "p_20261025_023000_2");
        assert_eq!(name("2026-10-24T23:30:00Z"), "p_20261025_013000");
        assert_eq!(name("2026-10-25T02:00:00Z"), "p_20261025_030000");
        // Spring forward skips an hour: nothing repeats, nothing added.
        assert_eq!(name("2026-03-29T01:00:00Z"), "p_20260329_030000");
        assert_eq!(
            render_name(t, at("2026-10-25T01:00:00Z"), Tz::UTC).unwrap(),
            "p_20261025_010000"
        );
    }

    fn refusal<T: std::fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(Error::InvalidArgument(msg)) => msg,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn parses_five_and_six_fields() {
        let daily = Schedule::parse(" 0 3 * * * ", "").unwrap();
        assert_eq!(daily.expression(), "0 3 * * *");
        assert_eq!(
            (daily.time_zone(), daily.time_zone_name()),
            (Tz::UTC, "UTC")
        );
        let next = daily.next_after(at("2026-01-01T03:00:00Z"));
        assert_eq!(next, Some(at("2026-01-02T03:00:00Z")));
        let every5s = Schedule::parse("*/5 * * * * *", "UTC").unwrap();
        let next = every5s.next_after(at("2026-01-01T12:00:00.500Z"));
        assert_eq!(next, Some(at("2026-01-01T12:00:05Z")));
        let due = every5s.latest_due(at("2026-01-01T12:00:00Z"), at("2026-01-01T12:00:09.9Z"));
        assert_eq!(due, Some(at("2026-01-01T12:00:05Z")));
        assert!(Schedule::parse("0 0 * * MON-FRI", "").is_ok());
    }

    #[test]
    fn refuses_bad_expressions_naming_them() {
        for expr in "61 * * * *|* * *|a b c d e|0 0 0 1 1 * 2030||0 0 30 2 *".split('|') {
            let msg = refusal(Schedule::parse(expr, "UTC"));
            assert!(msg.starts_with(&format!("schedule \"{expr}\": ")), "{msg}");
        }
        let msg = refusal(Schedule::parse("0 0 0 1 1 * 2030", ""));
        assert!(msg.contains("got 7"), "{msg}");
    }

    #[test]
    fn time_zones() {
        let berlin = Schedule::parse("0 3 * * *", "Europe/Berlin").unwrap();
        assert_eq!(berlin.time_zone_name(), "Europe/Berlin");
        let msg = refusal(Schedule::parse("0 3 * * *", "Mars/Base"));
        assert_eq!(msg, "time_zone \"Mars/Base\": unknown IANA time zone");
        // In winter Berlin is UTC+1.
        let next = berlin.next_after(at("2026-12-01T00:00:00Z"));
        assert_eq!(next, Some(at("2026-12-01T02:00:00Z")));
    }

    #[test]
    fn latest_due_bounds() {
        let hourly = Schedule::parse("0 * * * *", "").unwrap();
        let t = |hm: &str| at(&format!("2026-05-01T{hm}:00Z"));
        let due = |after, now| hourly.latest_due(t(after), t(now));
        assert_eq!(due("10:00", "12:30"), Some(t("12:00")));
        assert_eq!(due("11:00", "12:00"), Some(t("12:00")));
        assert_eq!(due("12:00", "12:59"), None);
        assert_eq!(due("13:00", "12:00"), None);
    }

    #[test]
    fn latest_due_far_in_the_past_is_fast() {
        let every5s = Schedule::parse("*/5 * * * * *", "Europe/Berlin").unwrap();
        let now = at("2026-06-15T08:00:07.250Z");
        let started = Instant::now();
        let due = every5s.latest_due(at("2026-01-01T00:00:00Z"), now);
        let elapsed = started.elapsed();
        assert_eq!(due, Some(at("2026-06-15T08:00:05Z")));
        assert!(elapsed.as_millis() < 500, "{elapsed:?}");
    }

    #[test]
    fn daylight_saving_in_berlin() {
        let t = |s: &str| at(&format!("2026-{s}:00Z"));
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST, so 02:30 does not exist;
        // croner runs a fixed-time job at the first instant after the gap.
        let s = Schedule::parse("0 30 2 * * *", "Europe/Berlin").unwrap();
        let gap = t("03-29T01:00");
        assert_eq!(s.next_after(t("03-28T12:00")), Some(gap));
        assert_eq!(s.next_after(gap), Some(t("03-30T00:30")));
        assert_eq!(s.latest_due(t("03-28T12:00"), t("03-29T06:00")), Some(gap));
        assert_eq!(s.latest_due(t("03-28T12:00"), gap), Some(gap));
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice
        // and a fixed-time job runs once, at the first.
        let first = t("10-25T00:30");
        assert_eq!(s.next_after(t("10-24T12:00")), Some(first));
        assert_eq!(s.next_after(first), Some(t("10-26T01:30")));
        assert_eq!(s.latest_due(first, t("10-25T12:00")), None);
        assert_eq!(
            s.latest_due(t("10-24T12:00"), t("10-25T01:45")),
            Some(first)
        );
        // An interval job runs in both passes of the repeated hour.
        let half_hourly = Schedule::parse("30 * * * *", "Europe/Berlin").unwrap();
        assert_eq!(half_hourly.next_after(first), Some(t("10-25T01:30")));
        let due = half_hourly.latest_due(first, t("10-25T01:45"));
        assert_eq!(due, Some(t("10-25T01:30")));
    }

    #[test]
    fn renders_names() {
        let cases = [
            ("nightly_{yyyyMMdd_HHmm}", Tz::UTC, "nightly_20261202_1305"),
            (
                "nightly_{yyyyMMdd_HHmm}",
                Tz::Europe__Berlin,
                "nightly_20261202_1405",
            ),
            (
                "b_{yy}_{MM}_{dd}_{HHmmss}",
                Tz::Asia__Tokyo,
                "b_26_12_02_220509",
            ),
            ("plain", Tz::UTC, "plain"),
        ];
        for (template, tz, want) in cases {
            let t = at("2026-12-02T13:05:09Z");
            assert_eq!(render_name(template, t, tz).unwrap(), want);
        }
        let new_year = at("2026-12-31T23:30:00Z");
        let name = render_name("{yyyy_MM_dd}", new_year, Tz::Europe__Berlin);
        assert_eq!(name.unwrap(), "2027_01_01");
    }

    #[test]
    fn refuses_bad_templates_naming_them() {
        assert!(check_template("nightly_{yyyyMMdd}_x").is_ok());
        for tpl in "x{foo} x{yyyy x}y x{} {yyy} {{yyyy}} {MMMM} {yyyyé}".split(' ') {
            let msg = refusal(check_template(tpl));
            let named = format!("name_template \"{tpl}\": ");
            assert!(msg.starts_with(&named), "{msg}");
        }
        assert!(refusal(check_template("x{foo}")).contains("\"f\""));
    }
}
