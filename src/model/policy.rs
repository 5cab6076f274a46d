//! Backup policies as callers give them ([`PolicyInput`], also their stored
//! form) and as the core accepts them ([`Policy`], and [`PolicyUpdate`] for
//! an update; built only by parsing).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::names::{validate_milvus_name, validate_name};
use super::repeats;
use super::requests::{BackupInput, BackupRequest, Caller, at_most};
use super::retention::{Retention, format_max_age, parse_max_age};
use super::schedule::{Schedule, check_template, render_name};
use super::{BackupName, CollectionRef};
use crate::error::{Error, Result};

/// How many upcoming slots a name template must tell apart.
const SLOTS_CHECKED: usize = 64;

/// The name template used when a policy gives none.
pub const DEFAULT_NAME_TEMPLATE: &str = "{policy}_{yyyyMMdd_HHmmss}";

/// The raw fields of a policy, as a wire carries them and as it is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyInput {
    pub name: String,
    pub schedule: String,
    pub time_zone: String,
    pub collection_names: Vec<String>,
    pub database_names: Vec<String>,
    pub all_collections: bool,
    pub incremental: bool,
    pub name_template: String,
    pub retention: RetentionInput,
    /// `None`: enabled.
    pub enabled: Option<bool>,
}

/// The raw retention rules; counts are signed so a negative one can be named.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionInput {
    pub keep_last: i64,
    pub keep_hourly: i64,
    pub keep_daily: i64,
    pub keep_weekly: i64,
    pub keep_monthly: i64,
    pub max_age: String,
}

/// What a policy backs up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every collection of every database.
    Everything,
    /// These collections and whole databases.
    Named {
        collections: Vec<CollectionRef>,
        databases: Vec<String>,
    },
}

impl Selection {
    /// The selection as one line, the same for the same selection whatever
    /// its order: `all`, or `collections=db.a,db.b;databases=x`.
    pub fn key(&self) -> String {
        match self {
            Selection::Everything => "all".to_string(),
            Selection::Named {
                collections,
                databases,
            } => {
                let mut c: Vec<String> = collections.iter().map(ToString::to_string).collect();
                let mut d = databases.clone();
                c.sort();
                c.dedup();
                d.sort();
                d.dedup();
                format!("collections={};databases={}", c.join(","), d.join(","))
            }
        }
    }
}

/// A valid policy.
#[derive(Debug, Clone)]
pub struct Policy {
    name: String,
    schedule: Schedule,
    selection: Selection,
    retention: Retention,
    template: String,
    /// The input with defaults filled in: what is stored and shown.
    input: PolicyInput,
}

fn count(field: &str, n: i64) -> Result<u32> {
    u32::try_from(n).map_err(|_| {
        Error::invalid(format!(
            "retention.{field} {n}: must be between 0 and {}",
            u32::MAX
        ))
    })
}

impl Policy {
    /// Checks every field of `input`; the error names the field and its
    /// value. `enabled` left unset means on.
    pub fn parse(input: PolicyInput) -> Result<Self> {
        let policy = Self::parse_fields(input)?;
        let first = policy.check_names()?;
        policy.check_repeats(first)?;
        Ok(policy)
    }

    /// A stored policy, checked when it was stored: its fields are parsed
    /// again, but its name template is not held to the next slots (a
    /// daylight-saving change may make two of them equal for an hour; those
    /// runs fail with ALREADY_EXISTS rather than stopping the policy).
    pub fn parse_stored(input: PolicyInput) -> Result<Self> {
        Self::parse_fields(input)
    }

    fn parse_fields(mut input: PolicyInput) -> Result<Self> {
        validate_name("policy name", &input.name)?;
        let schedule = Schedule::parse(&input.schedule, &input.time_zone)?;
        at_most("collection names", input.collection_names.len())?;
        at_most("database names", input.database_names.len())?;
        for db in &input.database_names {
            validate_milvus_name("database name", db)?;
        }
        let collections = input
            .collection_names
            .iter()
            .map(|c| CollectionRef::parse(c))
            .collect::<Result<Vec<_>>>()?;
        let selection = match (
            input.all_collections,
            collections.is_empty() && input.database_names.is_empty(),
        ) {
            (true, true) => Selection::Everything,
            (true, false) => {
                return Err(Error::invalid(
                    "selection: all_collections cannot be combined with collection_names or database_names",
                ));
            }
            (false, true) => {
                return Err(Error::invalid(
                    "selection is empty: give collection_names, database_names or all_collections",
                ));
            }
            (false, false) => Selection::Named {
                collections,
                databases: input.database_names.clone(),
            },
        };
        let r = &input.retention;
        let max_age = parse_max_age(&r.max_age)?;
        let retention = Retention::new(
            count("keep_last", r.keep_last)?,
            count("keep_hourly", r.keep_hourly)?,
            count("keep_daily", r.keep_daily)?,
            count("keep_weekly", r.keep_weekly)?,
            count("keep_monthly", r.keep_monthly)?,
            max_age,
        );
        input.retention.max_age = max_age.map(format_max_age).unwrap_or_default();
        if input.name_template.is_empty() {
            input.name_template = DEFAULT_NAME_TEMPLATE.to_string();
        }
        let template = input.name_template.replace("{policy}", &input.name);
        check_template(&template)?;
        Ok(Self {
            name: input.name.clone(),
            schedule,
            selection,
            retention,
            template,
            input,
        })
    }

    /// Refuses a template that gives an invalid backup name, or the same
    /// name to two of the next [`SLOTS_CHECKED`] slots; the first of them.
    fn check_names(&self) -> Result<DateTime<Utc>> {
        let shown = &self.input.name_template;
        let mut seen = std::collections::HashMap::new();
        let mut slot = Utc::now();
        for _ in 0..SLOTS_CHECKED {
            let Some(next) = self.schedule.next_after(slot) else {
                break;
            };
            slot = next;
            let name = self.render(slot).map_err(|e| {
                Error::invalid(format!(
                    "name_template {shown:?} gives no valid backup name: {e}"
                ))
            })?;
            // A repeated DST hour's second pass adds `_2` (see `render_name`).
            BackupName::parse(&format!("{}_2", name.as_str())).map_err(|e| {
                Error::invalid(format!(
                    "name_template {shown:?} gives names too long for the `_2` of a \
                     repeated DST hour: {e}"
                ))
            })?;
            if let Some(earlier) = seen.insert(name.as_str().to_string(), slot) {
                return Err(Error::invalid(format!(
                    "name_template {shown:?} gives the same name {:?} to the slots at {earlier} \
                     and {slot}; add finer date fields (such as ss)",
                    name.as_str()
                )));
            }
        }
        seen.values().min().copied().ok_or_else(|| {
            Error::invalid(format!(
                "schedule {:?} has no future slot",
                self.schedule.expression()
            ))
        })
    }

    /// Refuses a template that gives the name of slot `first` again while
    /// retention may still keep its backup: that later run would fail.
    fn check_repeats(&self, first: DateTime<Utc>) -> Result<()> {
        // A policy turned off makes no run (so one stored before this check
        // can still be turned off); it is checked when turned on. An update
        // that leaves `enabled` unset is checked with the stored policy's
        // (`PolicyUpdate::keeping_enabled`).
        if !self.enabled() {
            return Ok(());
        }
        let Some((period, said)) = repeats::repeat_period(&self.template)? else {
            return Ok(());
        };
        // An incremental policy's backups reuse what earlier ones stored,
        // in those backups' folders: a backup retention deleted keeps its
        // name taken for as long as a later one reuses its objects.
        let kept = match self.input.incremental {
            true => None,
            false => repeats::kept_for(&self.retention, &self.schedule, first, period),
        };
        if kept.is_some_and(|k| k < period) {
            return Ok(());
        }
        let kept = match kept {
            None if self.input.incremental => {
                "as long as later incremental backups reuse what it stored, which its delete \
                 leaves in its folder"
                    .to_string()
            }
            None => "for ever (no retention rule)".to_string(),
            Some(k) => format!("for {} or more", repeats::in_words(k)),
        };
        Err(Error::invalid(format!(
            "name_template {:?} has no year field: it gives a slot's name again after {said}, \
             while retention keeps its backup {kept}, so the later run would find the name \
             taken and fail; add {{yyyy}}",
            self.input.name_template
        )))
    }

    fn render(&self, slot: DateTime<Utc>) -> Result<BackupName> {
        BackupName::parse(&render_name(
            &self.template,
            slot,
            self.schedule.time_zone(),
        )?)
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When it runs.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// What it backs up.
    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// Which of its backups it keeps.
    pub fn retention(&self) -> &Retention {
        &self.retention
    }

    /// Whether its schedule runs.
    pub fn enabled(&self) -> bool {
        self.input.enabled.unwrap_or(true)
    }

    /// The input with its defaults filled in, as stored and shown.
    pub fn input(&self) -> &PolicyInput {
        &self.input
    }

    /// The name of the backup made for `slot`.
    pub fn backup_name(&self, slot: DateTime<Utc>) -> Result<BackupName> {
        self.render(slot)
    }

    /// The backup request of the run for `slot`, named `name`.
    pub fn backup_request(&self, name: &BackupName, caller: Caller) -> Result<BackupRequest> {
        let (collections, databases) = match &self.selection {
            Selection::Everything => (Vec::new(), Vec::new()),
            Selection::Named {
                collections,
                databases,
            } => (
                collections
                    .iter()
                    .map(|c| format!("{}.{}", c.db(), c.name()))
                    .collect(),
                databases.clone(),
            ),
        };
        BackupRequest::parse(BackupInput {
            name: name.as_str().to_string(),
            collections,
            databases,
            meta_only: false,
            incremental: Some(self.input.incremental),
            caller,
            generated_name: false,
        })
    }
}

/// A policy as an update gives it: checked as [`Policy::parse`] checks one,
/// except when it leaves `enabled` unset, which keeps what the stored policy
/// has: whether it is on is not known until that is read, so the one check
/// that only a policy turned on needs (a name template that names a slot
/// again while retention may keep its backup) waits for
/// [`Self::keeping_enabled`].
#[derive(Debug, Clone)]
pub struct PolicyUpdate {
    policy: Policy,
    /// The first slot the name template's repeats are checked from, while
    /// that check waits for the stored policy's `enabled`.
    repeats_from: Option<DateTime<Utc>>,
}

impl PolicyUpdate {
    /// Checks every field of `input`; the error names the field and its value.
    pub fn parse(input: PolicyInput) -> Result<Self> {
        let policy = Policy::parse_fields(input)?;
        let first = policy.check_names()?;
        let repeats_from = if policy.input.enabled.is_some() {
            policy.check_repeats(first)?;
            None
        } else {
            Some(first)
        };
        Ok(Self {
            policy,
            repeats_from,
        })
    }

    /// The name of the policy it replaces.
    pub fn name(&self) -> &str {
        self.policy.name()
    }

    /// The policy to store in place of one whose `enabled` is `stored`:
    /// with that `enabled` when the update left it unset. Then the check
    /// that waited runs: refused, as [`Policy::parse`] refuses it, when the
    /// policy is on and its name template names a slot again while
    /// retention may keep its backup.
    pub fn keeping_enabled(&self, stored: Option<bool>) -> Result<Policy> {
        let mut policy = self.policy.clone();
        if policy.input.enabled.is_none() {
            policy.input.enabled = stored;
        }
        if let Some(first) = self.repeats_from {
            policy.check_repeats(first)?;
        }
        Ok(policy)
    }
}

/// A policy checked in full (one leaving `enabled` unset as on) is an
/// update with nothing left to check.
impl From<Policy> for PolicyUpdate {
    fn from(policy: Policy) -> Self {
        Self {
            policy,
            repeats_from: None,
        }
    }
}

/// The name of a stored policy, checked like a backup name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicyName(String);

impl PolicyName {
    /// The one check of a policy name given alone.
    pub fn parse(name: &str) -> Result<Self> {
        validate_name("policy name", name)?;
        Ok(Self(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(f: impl FnOnce(&mut PolicyInput)) -> Result<Policy> {
        let mut i = PolicyInput {
            name: "nightly".into(),
            schedule: "0 3 * * *".into(),
            all_collections: true,
            ..Default::default()
        };
        f(&mut i);
        Policy::parse(i)
    }

    fn refused(f: impl FnOnce(&mut PolicyInput), needle: &str) {
        match input(f) {
            Err(Error::InvalidArgument(m)) => assert!(m.contains(needle), "{m:?} lacks {needle:?}"),
            other => panic!("expected INVALID_ARGUMENT naming {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_policy_fills_its_defaults() {
        let p = input(|i| i.retention.max_age = "36h".into()).unwrap();
        assert!(p.enabled());
        assert_eq!(p.input().name_template, DEFAULT_NAME_TEMPLATE);
        assert_eq!(p.input().retention.max_age, "1d12h");
        let slot = "2026-12-02T03:00:00Z".parse().unwrap();
        assert_eq!(
            p.backup_name(slot).unwrap().as_str(),
            "nightly_20261202_030000"
        );
        assert_eq!(p.selection(), &Selection::Everything);
    }

    /// A name that fits only without the `_2` of a repeated DST hour's
    /// second pass is refused up front, not once a year at that hour.
    #[test]
    fn names_leave_room_for_the_repeated_hours_suffix() {
        // "nightly_" + 111 + "_20261202" = 128 characters; 130 with `_2`.
        let long = format!("{{policy}}_{}_{{yyyyMMdd}}", "x".repeat(111));
        refused(|i| i.name_template = long, "`_2`");
        let fits = format!("{{policy}}_{}_{{yyyyMMdd}}", "x".repeat(109));
        input(|i| i.name_template = fits).unwrap();
    }

    /// A template without the year names a slot again a year (a month, a
    /// day...) later: refused when retention may keep that backup so long
    /// (the later run would fail ALREADY_EXISTS, not retried), kept when
    /// retention deletes it before.
    #[test]
    fn a_template_repeating_while_its_backups_are_kept_is_refused() {
        let with = |template: &str, schedule: &str, keep: fn(&mut RetentionInput)| {
            input(|i| {
                i.name_template = template.into();
                i.schedule = schedule.into();
                keep(&mut i.retention);
            })
        };
        let refused = |r: Result<Policy>, needle: &str| match r {
            Err(Error::InvalidArgument(m)) => {
                assert!(m.contains("name_template") && m.contains(needle), "{m}")
            }
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        };
        // Daily, a year apart: kept past a year by keep_monthly 13 (the last
        // backup of a month until one of the 13th month after), or for ever.
        refused(
            with("{policy}_{MMdd}", "0 3 * * *", |r| r.keep_monthly = 13),
            "a year",
        );
        refused(with("{policy}_{MMdd}", "0 3 * * *", |_| {}), "for ever");
        // keep_monthly 12 deletes it a month before its name comes again.
        with("{policy}_{MMdd}", "0 3 * * *", |r| r.keep_monthly = 12).unwrap();
        // Hourly, a month apart: keep_daily 28 or keep_weekly 4 delete in time.
        with("{policy}_{ddHH}", "0 * * * *", |r| r.keep_daily = 28).unwrap();
        with("{policy}_{ddHH}", "0 * * * *", |r| r.keep_weekly = 4).unwrap();
        // Turned off, it makes no run: stored as it is (checked once turned on).
        input(|i| {
            i.name_template = "{policy}_{MMdd}".into();
            i.enabled = Some(false);
        })
        .unwrap();
        // Hourly, a month apart: keep_daily 40 keeps 40 days.
        refused(
            with("{policy}_{ddHH}", "0 * * * *", |r| r.keep_daily = 40),
            "a month",
        );
        refused(
            with("{policy}_{ddHH}", "0 * * * *", |r| r.max_age = "30d".into()),
            "a month",
        );
        // Deleted in time: allowed.
        with("{policy}_{MMdd}", "0 3 * * *", |r| r.keep_daily = 30).unwrap();
        with("{policy}_{ddHH}", "0 * * * *", |r| r.keep_last = 48).unwrap();
        with("{policy}_{yyMMdd}", "0 3 * * *", |_| {}).unwrap();
        // keep_last counts slots: weekly, 60 of them are over a year.
        refused(
            with("{policy}_{MMdd}", "0 3 * * 1", |r| r.keep_last = 60),
            "a year",
        );
        with("{policy}_{MMdd}", "0 3 * * 1", |r| r.keep_last = 40).unwrap();
    }

    /// An update that leaves `enabled` unset keeps the stored policy's, and
    /// is checked with it: a template naming a slot again while retention
    /// keeps its backup is accepted while the stored policy is off (it
    /// stays off), refused when it is on. A create leaving it unset is on.
    #[test]
    fn an_update_leaving_enabled_unset_is_checked_with_the_stored_one() {
        fn is_refused<T: std::fmt::Debug>(r: Result<T>, needle: &str) {
            match r {
                Err(Error::InvalidArgument(m)) => {
                    assert!(m.contains("name_template") && m.contains(needle), "{m}")
                }
                other => panic!("expected INVALID_ARGUMENT naming {needle:?}, got {other:?}"),
            }
        }
        let yearless = |enabled: Option<bool>| PolicyInput {
            name: "nightly".into(),
            schedule: "0 3 * * *".into(),
            all_collections: true,
            name_template: "{policy}_{MMdd}".into(),
            enabled,
            ..Default::default()
        };
        is_refused(Policy::parse(yearless(None)), "for ever");
        // An incremental one, whatever its retention: a deleted backup's
        // name stays taken while later ones reuse its objects.
        let incremental = PolicyInput {
            incremental: true,
            retention: crate::model::RetentionInput {
                keep_daily: 7,
                ..Default::default()
            },
            ..yearless(None)
        };
        is_refused(Policy::parse(incremental.clone()), "reuse what it stored");
        assert!(
            Policy::parse(PolicyInput {
                incremental: false,
                ..incremental.clone()
            })
            .is_ok()
        );
        assert!(
            Policy::parse(PolicyInput {
                name_template: "{policy}_{yyyyMMdd}".into(),
                ..incremental
            })
            .is_ok()
        );
        let update = PolicyUpdate::parse(yearless(None)).unwrap();
        let off = update.keeping_enabled(Some(false)).unwrap();
        assert!(!off.enabled());
        assert_eq!(off.input().enabled, Some(false));
        is_refused(update.keeping_enabled(Some(true)), "for ever");
        is_refused(update.keeping_enabled(None), "for ever");
        // Turned on or off by the update itself: checked at once, as a create.
        is_refused(PolicyUpdate::parse(yearless(Some(true))), "for ever");
        let turned_off = PolicyUpdate::parse(yearless(Some(false))).unwrap();
        let kept = turned_off.keeping_enabled(Some(true)).unwrap();
        assert_eq!(kept.input().enabled, Some(false));
        // The other checks of the template do not wait.
        let mut same = yearless(None);
        same.schedule = "0 * * * *".into();
        is_refused(PolicyUpdate::parse(same), "the same name");
        // A policy checked in full leaves nothing to check, and keeps the
        // stored `enabled` too.
        let full = PolicyUpdate::from(input(|_| {}).unwrap());
        let kept = full.keeping_enabled(Some(false)).unwrap();
        assert_eq!(kept.input().enabled, Some(false));
    }

    #[test]
    fn bad_fields_are_refused_by_name() {
        refused(|i| i.schedule = "61 * * * *".into(), "61 * * * *");
        refused(|i| i.time_zone = "Mars/Base".into(), "Mars/Base");
        refused(|i| i.all_collections = false, "selection is empty");
        refused(|i| i.retention.keep_daily = -1, "retention.keep_daily -1");
        refused(|i| i.retention.max_age = "7 days".into(), "max_age");
        refused(|i| i.name = "bad-name".into(), "policy name");
        refused(
            |i| i.collection_names = vec!["a".into()],
            "all_collections cannot be combined",
        );
        refused(
            |i| {
                i.schedule = "0 * * * *".into();
                i.name_template = "daily_{yyyyMMdd}".into();
            },
            "the same name",
        );
        refused(|i| i.name_template = "x_{HHQ}".into(), "x_{HHQ}");
    }
}
