//! Which backups a job keeps: the retention rules as one pure function.
//!
//! Backups must not outlive the data-retention policy (restoring an old
//! backup brings back rows the company has since deleted), yet a nightly
//! job must keep enough history to recover from a mistake noticed late.
//! The rules are the well-known bucket rules of restic, Borg and Proxmox
//! Backup Server: `keep_last` keeps the newest N complete backups; each of
//! `keep_hourly`, `keep_daily`, `keep_weekly` (ISO 8601 weeks),
//! `keep_monthly` and `keep_yearly` keeps the newest backup of each of
//! the N most recent such periods (UTC calendar periods) that hold one.
//! `max_age` is a hard expiry that wins over every keep rule. A job's last
//! complete backup is never removed by keep rules, only by `max_age`.
//! Incomplete backups (no manifest) go once older than the grace period,
//! which a caller sets no shorter than the job's `max_lifetime`, so a
//! backup still being written is never touched.
//!
//! [`decide`] takes the backups and the current time and returns a
//! verdict with its reasons for each; `prune` shows them and acts on them,
//! and the catalog uses [`Rules::expired`] to mark backups past `max_age`.

use std::time::Duration;

use time::{OffsetDateTime, UtcOffset};

/// How far ahead of `now` a backup's time may be (clocks differ a little)
/// before it counts as dated in the future.
const CLOCK_SKEW: time::Duration = time::Duration::minutes(10);

/// Whether a backup started at `at` is dated in the future at `now`: a
/// wrong clock, or a folder backup-cloud did not write. The rules leave
/// it alone and do not count it (it would take a keep slot forever).
pub fn is_future(at: OffsetDateTime, now: OffsetDateTime) -> bool {
    at > now + CLOCK_SKEW
}

/// A job's retention rules (`[retention]`, or the job's own table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rules {
    pub keep_last: u32,
    pub keep_hourly: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    pub keep_yearly: u32,
    /// Hard expiry: complete backups older than this are removed whatever
    /// the keep rules say. `None`: no expiry.
    pub max_age: Option<Duration>,
    /// Incomplete backups older than this are removed (with their open
    /// multipart uploads).
    pub incomplete_grace: Duration,
}

/// One backup as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backup {
    /// When it was started (its timestamp in the bucket's layout).
    pub at: OffsetDateTime,
    /// Whether its manifest exists.
    pub complete: bool,
}

/// What the rules say about one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Kept, for every rule that keeps it (never empty).
    Keep(Vec<String>),
    /// Removed, for this reason; `warning` when it is the job's last
    /// complete backup (only `max_age` removes that one).
    Remove { reason: String, warning: bool },
}

impl Verdict {
    /// Whether the backup is to be removed.
    pub fn removes(&self) -> bool {
        matches!(self, Verdict::Remove { .. })
    }
}

/// The calendar periods of the period rules, shortest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Period {
    const ALL: [Period; 5] = [
        Period::Hour,
        Period::Day,
        Period::Week,
        Period::Month,
        Period::Year,
    ];

    fn rule(self) -> &'static str {
        match self {
            Period::Hour => "hourly",
            Period::Day => "daily",
            Period::Week => "weekly",
            Period::Month => "monthly",
            Period::Year => "yearly",
        }
    }

    /// The UTC period `at` falls in, as a label that is equal exactly
    /// when the periods are (e.g. `2026-11-30`, `2026-W48`).
    fn label(self, at: OffsetDateTime) -> String {
        let at = at.to_offset(UtcOffset::UTC);
        match self {
            Period::Hour => format!("{} {:02}h", at.date(), at.hour()),
            Period::Day => at.date().to_string(),
            Period::Week => {
                let (year, week, _) = at.date().to_iso_week_date();
                format!("{year}-W{week:02}")
            }
            Period::Month => format!("{}-{:02}", at.year(), u8::from(at.month())),
            Period::Year => at.year().to_string(),
        }
    }
}

impl Rules {
    fn count(&self, period: Period) -> u32 {
        match period {
            Period::Hour => self.keep_hourly,
            Period::Day => self.keep_daily,
            Period::Week => self.keep_weekly,
            Period::Month => self.keep_monthly,
            Period::Year => self.keep_yearly,
        }
    }

    /// Whether any keep rule is set; without one every complete backup
    /// younger than `max_age` is kept.
    pub fn has_keep_rules(&self) -> bool {
        self.keep_last > 0 || Period::ALL.iter().any(|p| self.count(*p) > 0)
    }

    /// Whether a backup started at `at` is past `max_age` at `now`.
    pub fn expired(&self, at: OffsetDateTime, now: OffsetDateTime) -> bool {
        self.max_age.is_some_and(|max_age| {
            now - at > time::Duration::try_from(max_age).unwrap_or(time::Duration::MAX)
        })
    }
}

/// The verdict on each of `backups` (in the same order) at `now`.
///
/// Ties (two backups at the same instant) are broken by position: the
/// later one in `backups` counts as newer, so the result never depends on
/// a sort's whims.
pub fn decide(rules: &Rules, backups: &[Backup], now: OffsetDateTime) -> Vec<Verdict> {
    let mut newest_first: Vec<usize> = (0..backups.len())
        .filter(|&i| backups[i].complete && !is_future(backups[i].at, now))
        .collect();
    newest_first.sort_by(|&a, &b| backups[b].at.cmp(&backups[a].at).then(b.cmp(&a)));
    let (expired, live): (Vec<usize>, Vec<usize>) = newest_first
        .iter()
        .partition(|&&i| rules.expired(backups[i].at, now));

    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); backups.len()];
    if rules.has_keep_rules() {
        for (n, &i) in live.iter().enumerate().take(rules.keep_last as usize) {
            reasons[i].push(format!("keep_last ({} of {})", n + 1, rules.keep_last));
        }
        for period in Period::ALL {
            let wanted = rules.count(period) as usize;
            let mut seen: Vec<String> = Vec::new();
            for &i in &live {
                if seen.len() == wanted {
                    break;
                }
                let label = period.label(backups[i].at);
                if seen.last() != Some(&label) {
                    reasons[i].push(format!("keep_{} ({label})", period.rule()));
                    seen.push(label);
                }
            }
        }
        if let Some(&newest) = live.first() {
            if live.iter().all(|&i| reasons[i].is_empty()) {
                reasons[newest].push("the job's only complete backup".to_owned());
            }
        }
    } else {
        let why = if rules.max_age.is_some() {
            "no keep rules: every backup younger than max_age is kept"
        } else {
            "no keep rules and no max_age: every backup is kept"
        };
        for &i in &live {
            reasons[i].push(why.to_owned());
        }
    }

    let grace = time::Duration::try_from(rules.incomplete_grace).unwrap_or(time::Duration::MAX);
    let last_complete = live.is_empty().then(|| expired.first().copied()).flatten();
    (0..backups.len())
        .map(|i| {
            let backup = backups[i];
            if is_future(backup.at, now) {
                return Verdict::Keep(vec![
                    "dated in the future: left alone (a wrong clock, or not written by backup-cloud)"
                        .to_owned(),
                ]);
            }
            if !backup.complete {
                return if now - backup.at > grace {
                    Verdict::Remove {
                        reason: format!(
                            "incomplete and older than incomplete_grace ({})",
                            shown(rules.incomplete_grace)
                        ),
                        warning: false,
                    }
                } else {
                    Verdict::Keep(vec![
                        "incomplete, within incomplete_grace (it may still be written)".to_owned(),
                    ])
                };
            }
            if expired.contains(&i) {
                return Verdict::Remove {
                    reason: format!(
                        "older than max_age ({})",
                        shown(rules.max_age.unwrap_or_default())
                    ),
                    warning: last_complete == Some(i),
                };
            }
            match std::mem::take(&mut reasons[i]) {
                kept if !kept.is_empty() => Verdict::Keep(kept),
                _ => Verdict::Remove {
                    reason: "kept by no rule".to_owned(),
                    warning: false,
                },
            }
        })
        .collect()
}

/// A duration as the config would write it: whole days as `30d`
/// (humantime would say `1month 4h 30m 36s`), whole hours as `26h`,
/// anything else as humantime.
pub fn shown(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs == 0 || duration.subsec_nanos() != 0 {
        humantime::format_duration(duration).to_string()
    } else if secs.is_multiple_of(86_400) {
        format!("{}d", secs / 86_400)
    } else if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else {
        humantime::format_duration(duration).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const DAY: Duration = Duration::from_secs(86_400);

    fn complete(at: OffsetDateTime) -> Backup {
        Backup { at, complete: true }
    }

    /// The indices `decide` keeps.
    fn kept(rules: &Rules, backups: &[Backup], now: OffsetDateTime) -> Vec<usize> {
        decide(rules, backups, now)
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.removes())
            .map(|(i, _)| i)
            .collect()
    }

    /// One backup a day at 01:30 UTC for `days` days up to `last`.
    fn nightly(last: OffsetDateTime, days: u32) -> Vec<Backup> {
        (0..days).rev().map(|d| complete(last - DAY * d)).collect()
    }

    #[test]
    fn without_rules_everything_complete_is_kept() {
        let now = datetime!(2026-12-01 12:00 UTC);
        let backups = nightly(datetime!(2026-12-01 01:30 UTC), 30);
        assert_eq!(kept(&Rules::default(), &backups, now).len(), 30);
    }

    #[test]
    fn keep_last_keeps_the_newest_complete_ones() {
        let now = datetime!(2026-12-01 12:00 UTC);
        let mut backups = nightly(datetime!(2026-12-01 01:30 UTC), 10);
        // an incomplete one between them does not count
        backups.push(Backup {
            at: datetime!(2026-12-01 03:00 UTC),
            complete: false,
        });
        let rules = Rules {
            keep_last: 3,
            incomplete_grace: 2 * DAY,
            ..Rules::default()
        };
        assert_eq!(kept(&rules, &backups, now), vec![7, 8, 9, 10]);
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day_and_skips_empty_days() {
        let now = datetime!(2026-12-01 12:00 UTC);
        let backups = [
            complete(datetime!(2026-11-28 01:00 UTC)),    // 0
            complete(datetime!(2026-11-28 23:59:59 UTC)), // 1: newest of the 28th
            // the 29th has none: it does not use up a period
            complete(datetime!(2026-11-30 00:00 UTC)), // 2
            complete(datetime!(2026-11-30 13:00 UTC)), // 3: newest of the 30th
            complete(datetime!(2026-12-01 00:00:01 UTC)), // 4: today
        ];
        let rules = Rules {
            keep_daily: 3,
            ..Rules::default()
        };
        assert_eq!(kept(&rules, &backups, now), vec![1, 3, 4]);
        let verdicts = decide(&rules, &backups, now);
        assert_eq!(
            verdicts[1],
            Verdict::Keep(vec!["keep_daily (2026-11-28)".into()])
        );
        assert_eq!(
            verdicts[0],
            Verdict::Remove {
                reason: "kept by no rule".into(),
                warning: false
            }
        );
    }

    #[test]
    fn weeks_are_iso_weeks_and_months_calendar_months() {
        let now = datetime!(2027-01-10 12:00 UTC);
        let backups = [
            // 2026-12-27 is a Sunday: ISO week 2026-W52; 2026-12-28 starts W53
            complete(datetime!(2026-12-27 10:00 UTC)), // 0
            complete(datetime!(2026-12-28 10:00 UTC)), // 1
            // 2027-01-03 is a Sunday: still ISO week 2026-W53
            complete(datetime!(2027-01-03 10:00 UTC)), // 2
            complete(datetime!(2027-01-04 10:00 UTC)), // 3: 2027-W01
        ];
        let weekly = Rules {
            keep_weekly: 3,
            ..Rules::default()
        };
        assert_eq!(kept(&weekly, &backups, now), vec![0, 2, 3]);
        let monthly = Rules {
            keep_monthly: 5,
            ..Rules::default()
        };
        // December's newest is the 28th; January's the 4th
        assert_eq!(kept(&monthly, &backups, now), vec![1, 3]);
        let yearly = Rules {
            keep_yearly: 1,
            ..Rules::default()
        };
        assert_eq!(kept(&yearly, &backups, now), vec![3]);
    }

    #[test]
    fn periods_are_utc_whatever_offset_the_time_carries() {
        let now = datetime!(2026-12-02 12:00 UTC);
        // 23:30 at -05:00 is 04:30 UTC the next day
        let backups = [
            complete(datetime!(2026-11-30 23:30 -5)), // 0: 2026-12-01 UTC
            complete(datetime!(2026-12-01 02:00 UTC)), // 1: same UTC day, newer
        ];
        let rules = Rules {
            keep_daily: 2,
            ..Rules::default()
        };
        assert_eq!(kept(&rules, &backups, now), vec![0]);
        let hourly = Rules {
            keep_hourly: 5,
            ..Rules::default()
        };
        assert_eq!(kept(&hourly, &backups, now), vec![0, 1]);
    }

    #[test]
    fn rules_add_up_and_say_why() {
        let now = datetime!(2026-12-01 12:00 UTC);
        let backups = nightly(datetime!(2026-12-01 01:30 UTC), 400);
        let rules = Rules {
            keep_daily: 7,
            keep_weekly: 4,
            keep_monthly: 12,
            keep_yearly: 2,
            ..Rules::default()
        };
        let verdicts = decide(&rules, &backups, now);
        let kept: Vec<&Backup> = backups
            .iter()
            .zip(&verdicts)
            .filter(|(_, v)| !v.removes())
            .map(|(b, _)| b)
            .collect();
        // keep_daily: Nov 25 – Dec 1; keep_weekly: Dec 1 (W49), then the
        // Sundays ending W48 (Nov 29, kept already), W47 and W46; keep_monthly: the newest of each
        // month, Dec 2026 back to Jan 2026; keep_yearly: Dec 1 and
        // 2025-12-31. Nothing from before 2025-12-31 survives.
        let dates: Vec<String> = kept.iter().map(|b| b.at.date().to_string()).collect();
        assert_eq!(
            dates,
            [
                "2025-12-31",
                "2026-01-31",
                "2026-02-28",
                "2026-03-31",
                "2026-04-30",
                "2026-05-31",
                "2026-06-30",
                "2026-07-31",
                "2026-08-31",
                "2026-09-30",
                "2026-10-31",
                "2026-11-15",
                "2026-11-22",
                "2026-11-25",
                "2026-11-26",
                "2026-11-27",
                "2026-11-28",
                "2026-11-29",
                "2026-11-30",
                "2026-12-01",
            ]
        );
        let last = verdicts.last().unwrap();
        assert_eq!(
            last,
            &Verdict::Keep(vec![
                "keep_daily (2026-12-01)".into(),
                "keep_weekly (2026-W49)".into(),
                "keep_monthly (2026-12)".into(),
                "keep_yearly (2026)".into(),
            ])
        );
    }

    #[test]
    fn max_age_wins_over_every_keep_rule() {
        let now = datetime!(2026-12-01 12:00 UTC);
        let backups = nightly(datetime!(2026-12-01 01:30 UTC), 100);
        let rules = Rules {
            keep_last: 100,
            keep_yearly: 10,
            max_age: Some(30 * DAY),
            ..Rules::default()
        };
        let verdicts = decide(&rules, &backups, now);
        let kept = verdicts.iter().filter(|v| !v.removes()).count();
        // 2026-11-01 01:30 is 30 days 10.5 hours old: gone; 11-02 stays
        assert_eq!(kept, 30);
        assert_eq!(
            verdicts[0],
            Verdict::Remove {
                reason: "older than max_age (30d)".into(),
                warning: false
            }
        );
    }

    #[test]
    fn the_last_complete_backup_goes_only_by_max_age_and_then_with_a_warning() {
        let now = datetime!(2026-12-01 12:00 UTC);
        let old = complete(datetime!(2026-01-01 00:00 UTC));
        let rules = Rules {
            keep_hourly: 1,
            keep_daily: 0,
            ..Rules::default()
        };
        assert_eq!(kept(&rules, &[old], now), vec![0]);
        let expiring = Rules {
            max_age: Some(100 * DAY),
            ..rules
        };
        assert_eq!(
            decide(&expiring, &[old, old], now),
            vec![
                Verdict::Remove {
                    reason: "older than max_age (100d)".into(),
                    warning: false
                },
                Verdict::Remove {
                    reason: "older than max_age (100d)".into(),
                    warning: true
                },
            ]
        );
    }

    #[test]
    fn backups_dated_in_the_future_are_left_alone_and_take_no_slot() {
        let now = datetime!(2026-12-01 12:00 UTC);
        let backups = [
            complete(datetime!(2026-11-30 01:00 UTC)),
            complete(datetime!(2030-01-01 00:00 UTC)),
            Backup {
                at: datetime!(2029-01-01 00:00 UTC),
                complete: false,
            },
            // within the clock skew: an ordinary backup
            complete(now + Duration::from_secs(60)),
        ];
        let rules = Rules {
            keep_last: 1,
            max_age: Some(DAY),
            ..Rules::default()
        };
        let verdicts = decide(&rules, &backups, now);
        assert!(verdicts[0].removes(), "{verdicts:?}");
        assert!(
            matches!(&verdicts[1], Verdict::Keep(r) if r[0].starts_with("dated in the future"))
        );
        assert!(
            matches!(&verdicts[2], Verdict::Keep(r) if r[0].starts_with("dated in the future"))
        );
        assert!(matches!(&verdicts[3], Verdict::Keep(r) if r[0].starts_with("keep_last")));
    }

    #[test]
    fn ties_are_broken_by_position() {
        let now = datetime!(2026-12-01 12:00 UTC);
        let at = datetime!(2026-11-30 01:00 UTC);
        let rules = Rules {
            keep_last: 1,
            ..Rules::default()
        };
        assert_eq!(kept(&rules, &[complete(at), complete(at)], now), vec![1]);
    }

    #[test]
    fn incomplete_backups_go_after_the_grace_period() {
        let now = datetime!(2026-12-01 12:00 UTC);
        let rules = Rules {
            keep_last: 1,
            incomplete_grace: 2 * DAY,
            ..Rules::default()
        };
        let backups = [
            Backup {
                at: now - 2 * DAY - Duration::from_secs(1),
                complete: false,
            },
            Backup {
                at: now - 2 * DAY + Duration::from_secs(1),
                complete: false,
            },
        ];
        let verdicts = decide(&rules, &backups, now);
        assert!(verdicts[0].removes());
        assert!(!verdicts[1].removes());
        // an incomplete backup is never what keeps the rules satisfied
        assert!(!decide(&rules, &backups[1..], now)[0].removes());
    }
}
