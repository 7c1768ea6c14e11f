//! The RTOS's latency distributions and their plot.
//!
//! Before each `latency n=...` line the RTOS prints `latency-hist q4 <bucket>:<count> ...`:
//! its samples counted in quarter-octave buckets of nanoseconds (bucket `4e + q` starts at
//! `2^e (1 + q/4)`; see `spumone_abi::latency`). The bench sums a row's rounds and
//! keeps the sum in the row, and `rtos-latency.png` shows every row's distribution as the
//! share of samples at or above each latency (log-log), which shows the tails the
//! percentiles summarize. The plot is drawn by gnuplot (Debian package `gnuplot-nox`).

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

pub use spumone_abi::latency::{BUCKETS, PREFIX};

/// Counts per bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    pub counts: Vec<u64>,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
        }
    }
}

/// The smallest latency (ns) bucket `b` holds.
pub fn bucket_floor_ns(b: usize) -> f64 {
    spumone_abi::latency::bucket_floor_ns(b) as f64
}

impl Histogram {
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn add(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// The sum of `parts`; `None` if there are none.
    pub fn sum<'a>(parts: impl IntoIterator<Item = &'a Histogram>) -> Option<Histogram> {
        let mut parts = parts.into_iter().peekable();
        parts.peek()?;
        let mut sum = Histogram::default();
        for p in parts {
            sum.add(p);
        }
        Some(sum)
    }

    /// `[[bucket, count], ...]` for the filled buckets.
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.filled()
                .map(|(b, c)| json!([b, c]))
                .collect::<Vec<_>>(),
        )
    }

    pub fn from_json(value: &Value) -> Result<Histogram, String> {
        let pairs = value
            .as_array()
            .ok_or_else(|| format!("a histogram is not an array: {value}"))?;
        let mut h = Histogram::default();
        for pair in pairs {
            let (b, c) = match pair.as_array().map(Vec::as_slice) {
                Some([b, c]) => (b.as_u64(), c.as_u64()),
                _ => (None, None),
            };
            let (Some(b), Some(c)) = (b, c) else {
                return Err(format!("a histogram entry is not [bucket, count]: {pair}"));
            };
            let slot = usize::try_from(b)
                .ok()
                .and_then(|b| h.counts.get_mut(b))
                .ok_or_else(|| format!("histogram bucket {b} is beyond {}", BUCKETS - 1))?;
            *slot += c;
        }
        Ok(h)
    }

    fn filled(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(b, &c)| (b, c))
    }

    /// (latency ns, share of samples at or above it) at each filled bucket's floor.
    pub fn ccdf(&self) -> Vec<(f64, f64)> {
        let total = self.total() as f64;
        let mut above = self.total();
        let mut points = Vec::new();
        for (b, c) in self.filled() {
            points.push((bucket_floor_ns(b), above as f64 / total));
            above -= c;
        }
        points
    }
}

/// Parses the text after the console prefix: `latency-hist q4 41:990 42:10`.
pub fn parse_line(text: &str) -> Result<Histogram, String> {
    let rest = text
        .strip_prefix(PREFIX)
        .ok_or_else(|| format!("not a `{PREFIX}` line: {text}"))?;
    let mut h = Histogram::default();
    for field in rest.split_whitespace() {
        let parsed = field
            .split_once(':')
            .and_then(|(b, c)| Some((b.parse::<usize>().ok()?, c.parse::<u64>().ok()?)));
        match parsed {
            Some((b, c)) if b < BUCKETS => h.counts[b] += c,
            _ => return Err(format!("bad histogram field `{field}` in: {text}")),
        }
    }
    Ok(h)
}

/// The histograms of the RTOS rounds whose `latency` line is in `lines[window]`: each is the
/// RTOS's line just before that round's (other consoles' lines may come between).
pub fn round_histograms(
    lines: &[String],
    window: std::ops::Range<usize>,
) -> Result<Vec<Histogram>, String> {
    let rtos = format!("{} ", crate::bench::RTOS_CONSOLE);
    let rtos_text = |l: &String| l.strip_prefix(&rtos).map(str::to_string);
    let mut hists = Vec::new();
    for i in window {
        let is_round = rtos_text(&lines[i]).is_some_and(|t| t.starts_with("latency "));
        if !is_round {
            continue;
        }
        let before = lines[..i].iter().rev().find_map(rtos_text);
        if let Some(text) = before.filter(|t| t.starts_with(PREFIX)) {
            hists.push(parse_line(&text)?);
        }
    }
    Ok(hists)
}

/// The gnuplot script drawing `series` from `data` (blocks separated by two blank lines, in
/// `series` order) into `png`.
pub fn gnuplot_script(titles: &[String], floor: f64, data: &Path, png: &Path) -> String {
    let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut script = String::new();
    let _ = writeln!(script, "set terminal png size 1100,700");
    let _ = writeln!(script, "set output \"{}\"", quote(&png.to_string_lossy()));
    let _ = writeln!(
        script,
        "set title \"RTOS dispatch latency: share of samples at or above each latency\""
    );
    let _ = writeln!(script, "set xlabel \"latency (ns)\"");
    let _ = writeln!(script, "set ylabel \"share of samples >= latency\"");
    let _ = writeln!(script, "set logscale xy");
    let _ = writeln!(script, "set yrange [{floor}:1.5]");
    let _ = writeln!(script, "set format x \"10^{{%L}}\"");
    let _ = writeln!(script, "set grid");
    let _ = writeln!(script, "set key outside right top");
    let data = quote(&data.to_string_lossy());
    let plots: Vec<String> = titles
        .iter()
        .enumerate()
        .map(|(i, t)| {
            format!(
                "\"{data}\" index {i} using 1:2 with steps linewidth 2 title \"{}\"",
                quote(t)
            )
        })
        .collect();
    let _ = writeln!(script, "plot {}", plots.join(", \\\n     "));
    script
}

/// The lowest share the plot shows: ten times below one sample of the largest row.
pub fn plot_floor(series: &[(String, Histogram)]) -> f64 {
    let most = series
        .iter()
        .map(|(_, h)| h.total())
        .max()
        .unwrap_or(1)
        .max(1);
    0.1 / most as f64
}

/// The data file for [`gnuplot_script`]: one block per series, two blank lines apart.
pub fn gnuplot_data(series: &[(String, Histogram)]) -> String {
    let mut data = String::new();
    for (i, (title, h)) in series.iter().enumerate() {
        if i > 0 {
            data.push_str("\n\n");
        }
        let _ = writeln!(data, "# {title}");
        let points = h.ccdf();
        for (x, y) in &points {
            let _ = writeln!(data, "{x} {y}");
        }
        // Close the last step at the next bucket's floor and drop to the plot's floor (no
        // sample is that late), so even a one-bucket row draws its edge.
        if let Some(&(x, y)) = points.last() {
            let next = x * 1.25;
            let _ = writeln!(data, "{next} {y}");
            let _ = writeln!(data, "{next} {}", plot_floor(series));
        }
    }
    data
}

/// Whether gnuplot runs here; as root on Debian/Ubuntu it is installed when missing.
fn ensure_gnuplot() -> Result<bool> {
    let works = || {
        Command::new("gnuplot")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if works() {
        return Ok(true);
    }
    if !(crate::linux::is_root() && Path::new("/etc/debian_version").exists()) {
        return Ok(false);
    }
    println!("bench: apt-get install gnuplot-nox (for the latency plot)");
    let install = |args: &[&str]| {
        crate::setup::apt_get()
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    };
    let package = [
        "-q",
        "install",
        "-y",
        "--no-install-recommends",
        "gnuplot-nox",
    ];
    if !install(&package) {
        install(&["-q", "update"]);
        install(&package);
    }
    Ok(works())
}

/// Draws `series` into `png` with gnuplot. `Ok(false)` (and a note) if gnuplot is missing.
pub fn plot(series: &[(String, Histogram)], png: &Path) -> Result<bool> {
    if series.is_empty() {
        bail!("no row has a latency histogram to plot");
    }
    if !ensure_gnuplot()? {
        println!("bench: no plot: gnuplot is missing (install the package gnuplot-nox)");
        return Ok(false);
    }
    let data_path = png.with_extension("dat");
    let script_path = png.with_extension("gp");
    fs::write(&data_path, gnuplot_data(series))
        .with_context(|| format!("writing {}", data_path.display()))?;
    let titles: Vec<String> = series.iter().map(|(t, _)| t.clone()).collect();
    let script = gnuplot_script(&titles, plot_floor(series), &data_path, png);
    fs::write(&script_path, script)
        .with_context(|| format!("writing {}", script_path.display()))?;
    let status = Command::new("gnuplot")
        .arg(&script_path)
        .status()
        .context("starting gnuplot")?;
    if !status.success() {
        bail!("gnuplot failed ({status}) on {}", script_path.display());
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_floors_match_the_rtos_buckets() {
        // The RTOS puts 1344 ns in bucket 41 and 1536 ns in 42 (its own tests).
        assert_eq!(bucket_floor_ns(41), 1280.0);
        assert_eq!(bucket_floor_ns(42), 1536.0);
        assert_eq!(bucket_floor_ns(8), 4.0);
        assert_eq!(bucket_floor_ns(11), 7.0);
        assert_eq!(bucket_floor_ns(3), 3.0);
        assert!(bucket_floor_ns(127) < u32::MAX as f64);
        assert!(bucket_floor_ns(127) > 3.0e9);
    }

    #[test]
    fn lines_parse_and_bad_ones_say_why() {
        let h = parse_line("latency-hist q4 41:990 42:10").unwrap();
        assert_eq!(h.total(), 1000);
        assert_eq!((h.counts[41], h.counts[42]), (990, 10));
        assert_eq!(parse_line("latency-hist q4").unwrap().total(), 0);
        for (bad, why) in [
            ("latency n=1", "not a `latency-hist q4` line"),
            ("latency-hist q4 41", "bad histogram field `41`"),
            ("latency-hist q4 128:1", "bad histogram field `128:1`"),
            ("latency-hist q4 4x:1", "bad histogram field"),
        ] {
            let e = parse_line(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn rounds_sum_and_survive_json() {
        let lines: Vec<String> = [
            "[rtos] latency-hist q4 41:2",
            "[rtos] latency n=2 min=1 mean=1 p50=1 p99=1 max=1 misses=0",
            "[rtos] latency-hist q4 41:1 90:1",
            "[linux] latency-hist q4 99:1",
            "[hv] between",
            "[rtos] latency n=2 min=1 mean=1 p50=1 p99=1 max=1 misses=0",
            "[rtos] latency-hist q4 50:7",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let rounds = round_histograms(&lines, 0..lines.len()).unwrap();
        assert_eq!(
            rounds.len(),
            2,
            "the Linux line is not the RTOS's, the last has no round"
        );
        // A window holding a round's line but not its histogram's still finds it.
        let second = round_histograms(&lines, 4..6).unwrap();
        assert_eq!(second, vec![rounds[1].clone()]);
        assert_eq!(second[0].counts[90], 1);
        assert!(round_histograms(&lines, 0..1).unwrap().is_empty());
        let sum = Histogram::sum(&rounds).unwrap();
        assert_eq!((sum.counts[41], sum.counts[90], sum.total()), (3, 1, 4));
        assert_eq!(Histogram::from_json(&sum.to_json()).unwrap(), sum);
        assert_eq!(sum.to_json(), json!([[41, 3], [90, 1]]));
        assert!(Histogram::from_json(&json!([[200, 1]])).is_err());
        assert!(Histogram::from_json(&json!([[1]])).is_err());
        assert_eq!(Histogram::sum(&[]), None);
    }

    #[test]
    fn the_ccdf_falls_from_one_to_the_last_buckets_share() {
        let h = parse_line("latency-hist q4 41:3 42:0 90:1").unwrap();
        assert_eq!(h.ccdf(), vec![(1280.0, 1.0), (bucket_floor_ns(90), 0.25)]);
    }

    #[test]
    fn the_script_plots_one_block_per_series() {
        let a = parse_line("latency-hist q4 41:10").unwrap();
        let b = parse_line("latency-hist q4 41:5 80:5").unwrap();
        let series = vec![
            ("rtos (icount)".to_string(), a),
            ("shared \"x\"".to_string(), b),
        ];
        let data = gnuplot_data(&series);
        assert_eq!(data.matches("\n\n\n").count(), 1, "{data}");
        assert!(
            data.starts_with("# rtos (icount)\n1280 1\n1600 1\n1600 0.01\n"),
            "{data}"
        );
        let titles: Vec<String> = series.iter().map(|(t, _)| t.clone()).collect();
        assert_eq!(plot_floor(&series), 0.01);
        let script = gnuplot_script(&titles, 0.01, Path::new("d.dat"), Path::new("p.png"));
        assert!(script.contains("set yrange [0.01:1.5]"), "{script}");
        assert!(script.contains("set output \"p.png\""), "{script}");
        assert!(script.contains("index 0 using 1:2"), "{script}");
        assert!(script.contains("index 1 using 1:2"), "{script}");
        assert!(script.contains("title \"shared \\\"x\\\"\""), "{script}");
    }
}
