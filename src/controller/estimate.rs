//! `plan`'s estimate of how long a backup will take and what its instance
//! will cost, so an operator can size a job before running it.
//!
//! The model is deliberately simple and stated in the output: a boot
//! overhead plus the dump's size over the pipeline's throughput, billed per
//! second at the instance type's hourly price. Both figures come from the
//! job's last backup when it has one, else from assumptions. `plan` and
//! `run` refuse a job whose estimate outlives its `max_lifetime`: the
//! dead-man would end it first and the night would be lost.

use std::time::Duration;

use crate::schema::Manifest;

/// Time from RunInstances to the agent streaming (boot, package install).
pub const BOOT_OVERHEAD: Duration = Duration::from_secs(180);

/// Assumed end-to-end pipeline throughput; see the README's performance
/// section for measured figures.
pub const ASSUMED_THROUGHPUT_MIB_S: f64 = 100.0;

/// Approximate us-east-1 on-demand Linux list prices (USD/hour) for the
/// instance types most suited to backups; `instance.hourly_price_usd`
/// overrides them.
const PRICES: &[(&str, f64)] = &[
    ("t3.micro", 0.0104),
    ("t3.large", 0.0832),
    ("m6i.large", 0.096),
    ("m6i.xlarge", 0.192),
    ("m6id.large", 0.1187),
    ("m6id.xlarge", 0.2373),
    ("m6id.2xlarge", 0.4746),
    ("m7i.large", 0.1008),
    ("c6id.large", 0.1008),
    ("c6id.xlarge", 0.2016),
    ("r6id.large", 0.1512),
];

/// What a job's last complete backup measured, from its manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// From the launch to the dump's start: boot, set-up, preparing.
    pub boot: Duration,
    /// Plaintext bytes per second from the dump's start to the manifest.
    pub bytes_per_second: f64,
}

impl Measured {
    /// `None` for a manifest without the dump's start time, or whose
    /// times do not make a positive rate.
    /// Older manifests without the dump's start give the whole run as
    /// the streaming time and no boot.
    pub fn from_manifest(manifest: &Manifest) -> Option<Measured> {
        let dump_started = manifest.dump_started_at.unwrap_or(manifest.started_at);
        let boot = Duration::try_from(dump_started - manifest.started_at).ok()?;
        let streaming = Duration::try_from(manifest.finished_at - dump_started).ok()?;
        let bytes = manifest
            .objects
            .iter()
            .fold(0u64, |sum, o| sum.saturating_add(o.plaintext_bytes));
        let bytes_per_second = bytes as f64 / streaming.as_secs_f64().max(1.0);
        (bytes_per_second > 0.0).then_some(Measured {
            boot,
            bytes_per_second,
        })
    }
}

/// The estimate for one job.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub duration: Duration,
    /// `None` when no price is known for the instance type.
    pub cost_usd: Option<f64>,
    pub hourly_price_usd: Option<f64>,
    /// How the duration was reached, for the reader.
    pub basis: String,
}

impl Estimate {
    /// Whether a job that may live `max_lifetime` is expected to finish.
    pub fn fits(&self, max_lifetime: Duration) -> bool {
        self.duration <= max_lifetime
    }
}

/// Estimates a backup of `bytes` on `instance_type`, at the rate the
/// job's last backup `measured` where there is one.
pub fn estimate(
    bytes: u64,
    instance_type: &str,
    price_override: Option<f64>,
    measured: Option<&Measured>,
) -> Estimate {
    let (boot, rate, basis) = match measured {
        Some(m) => (
            m.boot,
            m.bytes_per_second,
            format!(
                "{} boot + {:.1} MiB/s, measured by the last backup",
                humantime::format_duration(Duration::from_secs(m.boot.as_secs())),
                m.bytes_per_second / MIB
            ),
        ),
        None => (
            BOOT_OVERHEAD,
            ASSUMED_THROUGHPUT_MIB_S * MIB,
            format!(
                "{} boot + {ASSUMED_THROUGHPUT_MIB_S} MiB/s assumed",
                humantime::format_duration(BOOT_OVERHEAD)
            ),
        ),
    };
    // saturating: a tiny last backup and a huge --database-size, or a
    // manifest's odd times, must not panic
    let streaming = Duration::try_from_secs_f64(bytes as f64 / rate).unwrap_or(Duration::MAX);
    let duration = boot.saturating_add(streaming);
    let hourly_price_usd = price_override.or_else(|| {
        PRICES
            .iter()
            .find(|(name, _)| *name == instance_type)
            .map(|(_, price)| *price)
    });
    // EC2 bills Linux per second with a one-minute minimum.
    let billed_hours = duration.max(Duration::from_secs(60)).as_secs_f64() / 3600.0;
    Estimate {
        duration,
        cost_usd: hourly_price_usd.map(|p| p * billed_hours),
        hourly_price_usd,
        basis,
    }
}

const MIB: f64 = 1024.0 * 1024.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terabyte_on_a_known_type() {
        let e = estimate(1024 * 1024 * 1024 * 1024, "m6id.large", None, None);
        // 1 TiB at 100 MiB/s ≈ 10486 s, plus boot.
        assert_eq!(e.duration.as_secs(), 180 + 10485);
        let cost = e.cost_usd.unwrap();
        assert!((cost - 0.1187 * (10665.76 / 3600.0)).abs() < 0.01, "{cost}");
    }

    #[test]
    fn unknown_types_have_no_cost_unless_priced() {
        assert_eq!(estimate(0, "x9.huge", None, None).cost_usd, None);
        let priced = estimate(0, "x9.huge", Some(3.6), None);
        assert!((priced.cost_usd.unwrap() - 0.18).abs() < 1e-9);
    }

    #[test]
    fn the_last_backups_rate_is_used_and_a_plan_must_fit_its_lifetime() {
        let measured = Measured {
            boot: Duration::from_secs(60),
            bytes_per_second: 10.0 * MIB,
        };
        let e = estimate(36_000 * MIB as u64, "m6id.large", None, Some(&measured));
        assert_eq!(e.duration, Duration::from_secs(60 + 3600));
        assert!(e.basis.contains("10.0 MiB/s, measured"), "{}", e.basis);
        assert!(e.fits(Duration::from_secs(3660)));
        assert!(!e.fits(Duration::from_secs(3659)));
        // the case: 2 TiB on assumptions against a 30-minute dead-man
        let two_tib = estimate(2 << 40, "t3.micro", None, None);
        assert!(!two_tib.fits(Duration::from_secs(1800)));
        assert!(two_tib.basis.contains("assumed"), "{}", two_tib.basis);
    }

    #[test]
    fn a_manifest_gives_its_boot_and_rate() {
        let manifest: Manifest = serde_json::from_value(serde_json::json!({
            "schema_version": 1, "job_name": "j", "job_id": "j-1", "engine": "postgres",
            "format": "pg_dump-custom", "database": "d",
            "objects": [{"key": "k", "size": 1, "sha256": "00", "plaintext_bytes": 600 * 1024 * 1024}],
            "recipients": [], "tool_versions": {"agent": "a", "dump_tool": "p", "gpgme": "g", "server": "s"},
            "ami_id": "ami-1", "instance_type": "t3.micro",
            "started_at": "2026-11-30T00:00:00Z", "dump_started_at": "2026-11-30T00:01:30Z",
            "finished_at": "2026-11-30T00:11:30Z"
        }))
        .unwrap();
        let measured = Measured::from_manifest(&manifest).unwrap();
        assert_eq!(measured.boot, Duration::from_secs(90));
        assert!((measured.bytes_per_second - MIB).abs() < 1e-6);
        // without the dump's start: the whole run, no boot
        let mut older = manifest.clone();
        older.dump_started_at = None;
        let measured = Measured::from_manifest(&older).unwrap();
        assert_eq!(measured.boot, Duration::ZERO);
        assert!((measured.bytes_per_second - 600.0 * MIB / 690.0).abs() < 1e-3);
        // a byte a second against an exabyte: saturates, no panic
        let slow = Measured {
            boot: Duration::MAX,
            bytes_per_second: 1e-300,
        };
        assert_eq!(
            estimate(u64::MAX, "t3.micro", None, Some(&slow)).duration,
            Duration::MAX
        );
    }
}
