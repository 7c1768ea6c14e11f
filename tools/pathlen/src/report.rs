//! The JSON report the plugin writes, and that xtask reads back.

use serde::{Deserialize, Serialize};

/// Everything a run recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Report {
    /// Instructions each vCPU executed.
    pub vcpus: Vec<VcpuReport>,
    /// One entry per (window kind, tag) that saw a window close or be abandoned.
    pub windows: Vec<WindowReport>,
    /// One entry per window kind.
    pub kinds: Vec<KindReport>,
    /// One entry per (span, vCPU).
    pub spans: Vec<SpanReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VcpuReport {
    pub vcpu: u32,
    pub instructions: u64,
}

/// The windows of one kind and tag; lengths in the vCPU's own instructions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct WindowReport {
    pub kind: String,
    /// The first tag hit inside the window; `None` if none was.
    pub tag: Option<String>,
    /// Windows closed.
    pub windows: u64,
    /// Closed windows during which another vCPU ran or a disturb address was hit.
    pub distorted: u64,
    /// Closed windows during which another vCPU ran (QEMU's round robin moved on).
    pub descheduled: u64,
    /// Disturb hits inside windows (closed or abandoned).
    pub extra_entries: u64,
    /// Windows a new start replaced before they closed.
    pub abandoned: u64,
    pub min: u64,
    pub max: u64,
    /// Integer mean (`sum / windows`).
    pub mean: u64,
    /// Nearest-rank percentiles over `percentile_windows` windows.
    pub p50: u64,
    pub p99: u64,
    pub sum: u64,
    /// Windows in the exact histogram behind p50/p99 (all of them unless it overflowed).
    pub percentile_windows: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindReport {
    pub kind: String,
    /// End addresses hit on a vCPU with no window of this kind open.
    pub unmatched_ends: u64,
    /// vCPUs with a window of this kind still open when the report was written.
    pub open_at_exit: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanReport {
    pub span: String,
    pub vcpu: u32,
    /// Instructions this vCPU executed inside the span.
    pub instructions: u64,
    /// The most instructions it executed inside the span in a row.
    pub longest_stretch: u64,
}

impl Report {
    /// The windows of `kind`, every tag together: counts summed, the extremes over all. The
    /// percentiles are those of the one tag that has windows; with several, they are not
    /// combined (0, and `percentile_windows` 0).
    pub fn kind_total(&self, kind: &str) -> WindowReport {
        let rows: Vec<&WindowReport> = self.windows.iter().filter(|w| w.kind == kind).collect();
        let closed: Vec<&&WindowReport> = rows.iter().filter(|w| w.windows > 0).collect();
        let mut total = WindowReport {
            kind: kind.to_string(),
            ..WindowReport::default()
        };
        for w in &rows {
            total.windows += w.windows;
            total.distorted += w.distorted;
            total.descheduled += w.descheduled;
            total.extra_entries += w.extra_entries;
            total.abandoned += w.abandoned;
            total.sum += w.sum;
            total.max = total.max.max(w.max);
        }
        total.min = closed.iter().map(|w| w.min).min().unwrap_or(0);
        total.mean = total.sum.checked_div(total.windows).unwrap_or(0);
        if let [only] = closed.as_slice() {
            total.p50 = only.p50;
            total.p99 = only.p99;
            total.percentile_windows = only.percentile_windows;
        }
        total
    }

    /// Instructions `vcpu` executed.
    pub fn instructions(&self, vcpu: u32) -> Option<u64> {
        self.vcpus
            .iter()
            .find(|v| v.vcpu == vcpu)
            .map(|v| v.instructions)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report has only plain fields") + "\n"
    }

    pub fn from_json(text: &str) -> Result<Report, String> {
        serde_json::from_str(text).map_err(|e| format!("not a spumone-pathlen report: {e}"))
    }
}
