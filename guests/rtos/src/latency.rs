//! The dispatch-latency probe's settings and statistics.
//!
//! A cyclic handler fires every period; the task it releases notes the counter when it runs.
//! Latency = that counter − the firing's programmed deadline. A miss is a latency above the
//! period (or a firing the handler had to skip or could not hand over).

use core::fmt;

/// Samples kept when nothing else is asked.
pub const DEFAULT_SAMPLES: u32 = 10_000;
/// Cyclic period when nothing else is asked.
pub const DEFAULT_PERIOD_US: u32 = 1_000;
/// Room for exact samples (4 bytes each, in a static buffer).
pub const MAX_SAMPLES: u32 = 100_000;

/// Boot argument bits [31:8]: number of samples, if not 0.
pub const BOOT_ARG_SAMPLES_SHIFT: u32 = 8;
/// Boot argument bits [47:32]: period in microseconds, if not 0.
pub const BOOT_ARG_PERIOD_SHIFT: u32 = 32;

/// Parses a decimal build-time setting; a bad value stops the build (const evaluation).
pub const fn parse_setting(value: Option<&str>, default: u32) -> u32 {
    let Some(text) = value else {
        return default;
    };
    let bytes = text.as_bytes();
    assert!(!bytes.is_empty(), "latency setting is empty");
    let mut result: u64 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let digit = bytes[i];
        assert!(
            digit.is_ascii_digit(),
            "latency setting is not a decimal number"
        );
        result = result * 10 + (digit - b'0') as u64;
        assert!(result <= u32::MAX as u64, "latency setting too large");
        i += 1;
    }
    result as u32
}

/// What the probe does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencyConfig {
    /// Samples to take, `1..=MAX_SAMPLES`.
    pub samples: u32,
    /// Cyclic period in microseconds, at least 1.
    pub period_us: u32,
}

impl LatencyConfig {
    /// The build-time settings (`RTOS_LATENCY_SAMPLES`, `RTOS_LATENCY_PERIOD_US`).
    pub const BUILD: LatencyConfig = LatencyConfig {
        samples: parse_setting(option_env!("RTOS_LATENCY_SAMPLES"), DEFAULT_SAMPLES),
        period_us: parse_setting(option_env!("RTOS_LATENCY_PERIOD_US"), DEFAULT_PERIOD_US),
    };

    /// `base` overridden by the non-zero fields of the boot argument, then clamped to what
    /// the probe can hold.
    pub fn from_boot_arg(base: LatencyConfig, boot_arg: u64) -> LatencyConfig {
        let samples = ((boot_arg >> BOOT_ARG_SAMPLES_SHIFT) & 0xff_ffff) as u32;
        let period = ((boot_arg >> BOOT_ARG_PERIOD_SHIFT) & 0xffff) as u32;
        let pick = |arg: u32, base: u32| if arg != 0 { arg } else { base };
        LatencyConfig {
            samples: pick(samples, base.samples).clamp(1, MAX_SAMPLES),
            period_us: pick(period, base.period_us).max(1),
        }
    }

    pub fn period_ns(&self) -> u64 {
        u64::from(self.period_us) * 1_000
    }
}

/// Counter ticks to nanoseconds at `freq_hz`, saturating at `u32::MAX` (4.29 s).
pub fn ticks_to_ns(ticks: u64, freq_hz: u64) -> u32 {
    if freq_hz == 0 {
        return u32::MAX;
    }
    let ns = u128::from(ticks) * 1_000_000_000 / u128::from(freq_hz);
    u32::try_from(ns).unwrap_or(u32::MAX)
}

/// The reported line, `latency n=... misses=...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub n: usize,
    pub min: u32,
    pub mean: u32,
    pub p50: u32,
    pub p99: u32,
    pub max: u32,
    pub misses: u64,
}

/// The nearest-rank percentile of sorted, non-empty `sorted`.
fn percentile(sorted: &[u32], percent: usize) -> u32 {
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// Sorts `samples` (ns) and summarizes them. `extra_misses` counts firings that produced no
/// sample (skipped periods, hand-over failures); a sample above `period_ns` is a miss too.
pub fn summarize(samples: &mut [u32], period_ns: u64, extra_misses: u64) -> Summary {
    samples.sort_unstable();
    let n = samples.len();
    if n == 0 {
        return Summary {
            n,
            min: 0,
            mean: 0,
            p50: 0,
            p99: 0,
            max: 0,
            misses: extra_misses,
        };
    }
    let sum: u64 = samples.iter().map(|&s| u64::from(s)).sum();
    let late = samples
        .iter()
        .filter(|&&s| u64::from(s) > period_ns)
        .count() as u64;
    Summary {
        n,
        min: samples[0],
        mean: (sum / n as u64) as u32,
        p50: percentile(samples, 50),
        p99: percentile(samples, 99),
        max: samples[n - 1],
        misses: late + extra_misses,
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "latency n={} min={} mean={} p50={} p99={} max={} misses={}",
            self.n, self.min, self.mean, self.p50, self.p99, self.max, self.misses
        )
    }
}

/// The histogram line's buckets (quarter octaves of nanoseconds, `spumone_abi::latency`).
pub use spumone_abi::latency::{bucket as hist_bucket, BUCKETS as HIST_BUCKETS};

/// The bucket counts of a round, printed as `latency-hist q4 <bucket>:<count> ...` (buckets
/// with samples only) just before the round's `latency` line, so the host can plot the whole
/// distribution, not just its percentiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Histogram {
    pub counts: [u32; HIST_BUCKETS],
}

impl Histogram {
    pub fn of(samples: &[u32]) -> Histogram {
        let mut counts = [0; HIST_BUCKETS];
        for &s in samples {
            counts[hist_bucket(s)] += 1;
        }
        Histogram { counts }
    }
}

impl fmt::Display for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", spumone_abi::latency::PREFIX)?;
        for (bucket, &count) in self.counts.iter().enumerate().filter(|(_, &c)| c > 0) {
            write!(f, " {bucket}:{count}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: LatencyConfig = LatencyConfig {
        samples: 10_000,
        period_us: 1_000,
    };

    #[test]
    fn settings_parse_or_default() {
        assert_eq!(parse_setting(None, 7), 7);
        assert_eq!(parse_setting(Some("0"), 7), 0);
        assert_eq!(parse_setting(Some("250"), 7), 250);
        assert_eq!(parse_setting(Some("4294967295"), 7), u32::MAX);
    }

    #[test]
    #[should_panic(expected = "not a decimal")]
    fn settings_reject_junk() {
        parse_setting(Some("1e3"), 7);
    }

    #[test]
    #[should_panic(expected = "too large")]
    fn settings_reject_overflow() {
        parse_setting(Some("4294967296"), 7);
    }

    #[test]
    fn boot_arg_zero_keeps_the_build_settings() {
        assert_eq!(LatencyConfig::from_boot_arg(BASE, 0), BASE);
        // Bits 0 and 1 are other switches.
        assert_eq!(LatencyConfig::from_boot_arg(BASE, 0b11), BASE);
    }

    #[test]
    fn boot_arg_fields_override() {
        let arg = (500 << BOOT_ARG_SAMPLES_SHIFT) | (250u64 << BOOT_ARG_PERIOD_SHIFT) | 1;
        let config = LatencyConfig::from_boot_arg(BASE, arg);
        assert_eq!(
            config,
            LatencyConfig {
                samples: 500,
                period_us: 250
            }
        );
        assert_eq!(config.period_ns(), 250_000);
        let only_period = LatencyConfig::from_boot_arg(BASE, 2000u64 << BOOT_ARG_PERIOD_SHIFT);
        assert_eq!(only_period.samples, 10_000);
        assert_eq!(only_period.period_us, 2000);
    }

    #[test]
    fn boot_arg_samples_are_clamped_to_the_buffer() {
        let arg = 0xff_ffffu64 << BOOT_ARG_SAMPLES_SHIFT;
        assert_eq!(LatencyConfig::from_boot_arg(BASE, arg).samples, MAX_SAMPLES);
        let tiny = LatencyConfig {
            samples: 0,
            period_us: 0,
        };
        let config = LatencyConfig::from_boot_arg(tiny, 0);
        assert_eq!((config.samples, config.period_us), (1, 1));
    }

    #[test]
    fn ticks_convert_at_the_counter_frequency() {
        assert_eq!(ticks_to_ns(0, 62_500_000), 0);
        assert_eq!(ticks_to_ns(1, 62_500_000), 16);
        assert_eq!(ticks_to_ns(62_500, 62_500_000), 1_000_000);
        assert_eq!(ticks_to_ns(1, 1_000_000_000), 1);
        assert_eq!(ticks_to_ns(u64::MAX, 1), u32::MAX);
        assert_eq!(ticks_to_ns(5, 0), u32::MAX);
    }

    #[test]
    fn summary_of_known_samples() {
        let mut samples: Vec<u32> = (1..=100).rev().collect();
        let summary = summarize(&mut samples, 1_000, 0);
        assert_eq!(
            summary,
            Summary {
                n: 100,
                min: 1,
                mean: 50,
                p50: 50,
                p99: 99,
                max: 100,
                misses: 0
            }
        );
        assert_eq!(
            summary.to_string(),
            "latency n=100 min=1 mean=50 p50=50 p99=99 max=100 misses=0"
        );
    }

    #[test]
    fn misses_count_late_samples_and_lost_firings() {
        let mut samples = [900, 1_000, 1_001, 5_000];
        let summary = summarize(&mut samples, 1_000, 3);
        assert_eq!(summary.misses, 2 + 3);
        assert_eq!((summary.min, summary.max), (900, 5_000));
        assert_eq!(summary.mean, (900 + 1_000 + 1_001 + 5_000) / 4);
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut one = [42];
        let s = summarize(&mut one, 1_000, 0);
        assert_eq!((s.p50, s.p99, s.min, s.max), (42, 42, 42, 42));
        // 1000 samples 0..999: p99 is the 990th smallest.
        let mut many: Vec<u32> = (0..1000).collect();
        let s = summarize(&mut many, 10_000, 0);
        assert_eq!((s.p50, s.p99), (499, 989));
        // A single outlier in 100 shows at max but not at p99.
        let mut spiky = vec![10u32; 99];
        spiky.push(1_000_000);
        let s = summarize(&mut spiky, 1_000, 0);
        assert_eq!((s.p99, s.max, s.misses), (10, 1_000_000, 1));
    }

    #[test]
    fn empty_summary_keeps_misses() {
        let s = summarize(&mut [], 1_000, 4);
        assert_eq!((s.n, s.max, s.misses), (0, 0, 4));
    }

    #[test]
    fn histogram_buckets_are_quarter_octaves() {
        assert_eq!(hist_bucket(0), 0);
        assert_eq!(hist_bucket(3), 3);
        // 4 = 2^2: bucket 8; 5 is in [4, 5): bucket 9 starts at 5.
        assert_eq!(hist_bucket(4), 8);
        assert_eq!(hist_bucket(5), 9);
        assert_eq!(hist_bucket(7), 11);
        // 1344 = 2^10 * 1.3125: quarter 1 of octave 10.
        assert_eq!(hist_bucket(1344), 41);
        assert_eq!(hist_bucket(1535), 41);
        assert_eq!(hist_bucket(1536), 42);
        assert_eq!(hist_bucket(u32::MAX), 127);
    }

    #[test]
    fn histogram_line_lists_only_filled_buckets() {
        let h = Histogram::of(&[1344, 1344, 1536, 3_000_000]);
        let mut line = heapless::String::<256>::new();
        core::fmt::write(&mut line, format_args!("{h}")).unwrap();
        assert_eq!(line.as_str(), "latency-hist q4 41:2 42:1 85:1");
        assert_eq!(h.counts.iter().sum::<u32>(), 4);
    }
}
