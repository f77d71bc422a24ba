//! `plan`'s estimate of how long a backup will take and what its instance
//! will cost, so an operator can size a job before running it.
//!
//! The model is deliberately simple and stated in the output: a fixed boot
//! overhead plus the dump's size over the pipeline's throughput, billed per
//! second at the instance type's hourly price.

use std::time::Duration;

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

/// The estimate for one job.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub duration: Duration,
    /// `None` when no price is known for the instance type.
    pub cost_usd: Option<f64>,
    pub hourly_price_usd: Option<f64>,
}

/// Estimates a backup of `bytes` on `instance_type`.
pub fn estimate(bytes: u64, instance_type: &str, price_override: Option<f64>) -> Estimate {
    let streaming = bytes as f64 / (ASSUMED_THROUGHPUT_MIB_S * 1024.0 * 1024.0);
    let duration = BOOT_OVERHEAD + Duration::from_secs_f64(streaming);
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terabyte_on_a_known_type() {
        let e = estimate(1024 * 1024 * 1024 * 1024, "m6id.large", None);
        // 1 TiB at 100 MiB/s ≈ 10486 s, plus boot.
        assert_eq!(e.duration.as_secs(), 180 + 10485);
        let cost = e.cost_usd.unwrap();
        assert!((cost - 0.1187 * (10665.76 / 3600.0)).abs() < 0.01, "{cost}");
    }

    #[test]
    fn unknown_types_have_no_cost_unless_priced() {
        assert_eq!(estimate(0, "x9.huge", None).cost_usd, None);
        let priced = estimate(0, "x9.huge", Some(3.6));
        assert!((priced.cost_usd.unwrap() - 0.18).abs() < 1e-9);
    }
}
