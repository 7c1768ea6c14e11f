//! The plugin's decisions, as plain Rust: per-vCPU instruction counts, windows between marker
//! addresses, and spans, fed with the events the QEMU glue sees.
//!
//! Positions: a vCPU's *position* at an instruction is the number of instructions that vCPU
//! executed before it. A window's length is the end instruction's position minus the start
//! instruction's: the start counts, the end does not.
//!
//! Events:
//! - [`Tracker::tb`]: a translation block of `n` instructions starts on a vCPU outside the
//!   exact ranges; all `n` are counted at once (ahead of their execution);
//! - [`Tracker::insn`]: one instruction of an exactly counted block is about to execute;
//! - [`Tracker::marker_ahead`]: a marker instruction inside a block counted ahead, with how
//!   many of that block's counted instructions are at or after it.

use std::collections::{BTreeMap, HashMap};

use crate::args::{Config, WindowKind};
use crate::report::{KindReport, Report, SpanReport, VcpuReport, WindowReport};

/// Distinct window lengths a histogram keeps exactly; windows past that still count in
/// `windows`, `min`, `max`, `sum` and `mean`, but not in the percentiles (`overflow`).
pub const MAX_DISTINCT_LENGTHS: usize = 1 << 16;

/// Exact counts of each distinct window length.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    counts: BTreeMap<u64, u64>,
    samples: u64,
    overflow: u64,
}

impl Histogram {
    pub fn add(&mut self, length: u64) {
        if self.counts.len() >= MAX_DISTINCT_LENGTHS && !self.counts.contains_key(&length) {
            self.overflow += 1;
            return;
        }
        *self.counts.entry(length).or_insert(0) += 1;
        self.samples += 1;
    }

    /// Nearest-rank percentile (the RTOS's own definition); `None` when empty.
    pub fn percentile(&self, percent: u64) -> Option<u64> {
        if self.samples == 0 {
            return None;
        }
        let rank = (self.samples * percent).div_ceil(100).max(1);
        let mut seen = 0;
        for (&length, &count) in &self.counts {
            seen += count;
            if seen >= rank {
                return Some(length);
            }
        }
        self.counts.keys().next_back().copied()
    }

    /// Windows the percentiles cover.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Windows left out of the percentiles because the histogram was full.
    pub fn overflow(&self) -> u64 {
        self.overflow
    }
}

/// What one (kind, tag) has recorded.
#[derive(Debug, Clone, Default)]
struct Stats {
    windows: u64,
    distorted: u64,
    abandoned: u64,
    extra_entries: u64,
    descheduled: u64,
    min: Option<u64>,
    max: u64,
    sum: u64,
    hist: Histogram,
}

/// What an address means to one window kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    // The order is the order of processing at one address: a window ends before the next
    // opens, and a tag on a start instruction labels the window it opens.
    End,
    Disturb,
    Start,
    Tag(usize),
}

#[derive(Debug, Clone, Copy)]
struct Open {
    start: u64,
    /// [`Tracker::switches`] when it opened: any change means another vCPU ran meanwhile.
    switches: u64,
    tag: Option<usize>,
    extra: u64,
}

#[derive(Debug, Clone, Default)]
struct SpanCount {
    total: u64,
    longest: u64,
    current: u64,
}

#[derive(Debug, Clone, Default)]
struct Vcpu {
    count: u64,
    /// One slot per window kind.
    open: Vec<Option<Open>>,
    /// One per span.
    spans: Vec<SpanCount>,
    /// Some span has a stretch going (so a block outside must end it).
    in_span: bool,
}

/// How the glue should instrument an instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Instrument {
    /// Counted one by one: inside an exact range or a span.
    pub exact: bool,
    /// Some window kind uses its address.
    pub marker: bool,
    /// Inside some span.
    pub span: bool,
}

/// The state of a run.
#[derive(Debug, Clone)]
pub struct Tracker {
    kinds: Vec<WindowKind>,
    spans: Vec<(String, u64, u64)>,
    exact: Vec<(u64, u64)>,
    roles: HashMap<u64, Vec<(usize, Role)>>,
    /// Marker addresses in a fixed order, so the glue can name one by a small index.
    markers: Vec<u64>,
    vcpus: Vec<Vcpu>,
    last_vcpu: Option<u32>,
    /// How often execution passed from one vCPU to another.
    switches: u64,
    stats: Vec<BTreeMap<Option<usize>, Stats>>,
    unmatched_ends: Vec<u64>,
}

impl Tracker {
    pub fn new(config: &Config) -> Tracker {
        let mut roles: HashMap<u64, Vec<(usize, Role)>> = HashMap::new();
        for (k, kind) in config.windows.iter().enumerate() {
            let mut add = |addr: u64, role: Role| roles.entry(addr).or_default().push((k, role));
            kind.starts.iter().for_each(|&a| add(a, Role::Start));
            kind.ends.iter().for_each(|&a| add(a, Role::End));
            kind.disturbs.iter().for_each(|&a| add(a, Role::Disturb));
            for (t, (_, addr)) in kind.tags.iter().enumerate() {
                add(*addr, Role::Tag(t));
            }
        }
        for list in roles.values_mut() {
            list.sort_by_key(|&(kind, role)| (role, kind));
        }
        let mut markers: Vec<u64> = roles.keys().copied().collect();
        markers.sort_unstable();
        Tracker {
            kinds: config.windows.clone(),
            spans: config
                .spans
                .iter()
                .map(|s| (s.name.clone(), s.lo, s.hi))
                .collect(),
            exact: config.exact.clone(),
            roles,
            markers,
            vcpus: Vec::new(),
            last_vcpu: None,
            switches: 0,
            stats: vec![BTreeMap::new(); config.windows.len()],
            unmatched_ends: vec![0; config.windows.len()],
        }
    }

    /// How to instrument the instruction at `addr`.
    pub fn instrument(&self, addr: u64) -> Instrument {
        let span = self
            .spans
            .iter()
            .any(|&(_, lo, hi)| (lo..hi).contains(&addr));
        let exact = span || self.exact.iter().any(|&(lo, hi)| (lo..hi).contains(&addr));
        Instrument {
            exact,
            marker: self.roles.contains_key(&addr),
            span,
        }
    }

    /// The index of marker `addr` in a fixed table, for [`Tracker::marker_addr`].
    pub fn marker_index(&self, addr: u64) -> Option<usize> {
        self.markers.binary_search(&addr).ok()
    }

    pub fn marker_addr(&self, index: usize) -> Option<u64> {
        self.markers.get(index).copied()
    }

    fn vcpu(&mut self, vcpu: u32) -> &mut Vcpu {
        let index = vcpu as usize;
        if self.vcpus.len() <= index {
            let fresh = Vcpu {
                open: vec![None; self.kinds.len()],
                spans: vec![SpanCount::default(); self.spans.len()],
                ..Vcpu::default()
            };
            self.vcpus.resize(index + 1, fresh);
        }
        &mut self.vcpus[index]
    }

    /// `vcpu` executes now: if another vCPU did last, every window open elsewhere was
    /// descheduled meanwhile.
    fn run_on(&mut self, vcpu: u32) {
        if self.last_vcpu != Some(vcpu) {
            self.last_vcpu = Some(vcpu);
            self.switches += 1;
        }
    }

    /// A block of `n` instructions outside the exact ranges starts on `vcpu`.
    pub fn tb(&mut self, vcpu: u32, n: u64) {
        self.run_on(vcpu);
        let v = self.vcpu(vcpu);
        v.count += n;
        if v.in_span {
            v.spans.iter_mut().for_each(|s| s.current = 0);
            v.in_span = false;
        }
    }

    /// One exactly counted instruction at `addr` is about to execute on `vcpu`.
    pub fn insn(&mut self, vcpu: u32, addr: u64) {
        let what = self.instrument(addr);
        self.insn_classified(vcpu, addr, what.marker, what.span);
    }

    /// [`Tracker::insn`] with the lookups done at translation time.
    pub fn insn_classified(&mut self, vcpu: u32, addr: u64, marker: bool, span: bool) {
        self.run_on(vcpu);
        if marker {
            let at = self.vcpu(vcpu).count;
            self.hit(vcpu, addr, at);
        }
        if span || self.vcpu(vcpu).in_span {
            self.count_spans(vcpu, addr);
        }
        self.vcpu(vcpu).count += 1;
    }

    /// A marker at `addr` inside a block counted ahead: `ahead` of the block's counted
    /// instructions are this one and those after it.
    pub fn marker_ahead(&mut self, vcpu: u32, addr: u64, ahead: u64) {
        self.run_on(vcpu);
        let at = self.vcpu(vcpu).count.saturating_sub(ahead);
        self.hit(vcpu, addr, at);
    }

    fn count_spans(&mut self, vcpu: u32, addr: u64) {
        self.vcpu(vcpu);
        let v = &mut self.vcpus[vcpu as usize];
        let mut inside = false;
        for (s, &(_, lo, hi)) in v.spans.iter_mut().zip(&self.spans) {
            if (lo..hi).contains(&addr) {
                s.current += 1;
                s.total += 1;
                s.longest = s.longest.max(s.current);
                inside = true;
            } else {
                s.current = 0;
            }
        }
        v.in_span = inside;
    }

    /// The marker at `addr` executes on `vcpu` at position `at`.
    fn hit(&mut self, vcpu: u32, addr: u64, at: u64) {
        let Some(roles) = self.roles.get(&addr).cloned() else {
            return;
        };
        let switches = self.switches;
        for (k, role) in roles {
            if !self.kinds[k].applies_to(vcpu) {
                continue;
            }
            let slot = self.vcpu(vcpu).open[k];
            match (role, slot) {
                (Role::End, Some(open)) => {
                    self.vcpu(vcpu).open[k] = None;
                    let descheduled = open.switches != switches;
                    let stats = self.stats[k].entry(open.tag).or_default();
                    let length = at.saturating_sub(open.start);
                    stats.windows += 1;
                    stats.extra_entries += open.extra;
                    stats.descheduled += u64::from(descheduled);
                    stats.distorted += u64::from(descheduled || open.extra > 0);
                    stats.min = Some(stats.min.map_or(length, |m| m.min(length)));
                    stats.max = stats.max.max(length);
                    stats.sum += length;
                    stats.hist.add(length);
                }
                (Role::End, None) => self.unmatched_ends[k] += 1,
                (Role::Disturb, Some(_)) => {
                    if let Some(open) = self.vcpu(vcpu).open[k].as_mut() {
                        open.extra += 1;
                    }
                }
                (Role::Start, previous) => {
                    let mut baseline = switches;
                    if let Some(old) = previous {
                        let stats = self.stats[k].entry(old.tag).or_default();
                        stats.abandoned += 1;
                        stats.extra_entries += old.extra;
                        // A re-entry after QEMU descheduled the vCPU (its timer re-armed in the
                        // handler, a firing already due when it came back) continues the chain
                        // the sample measures: the new window stays descheduled.
                        if old.switches != switches {
                            baseline = old.switches;
                        }
                    }
                    self.vcpu(vcpu).open[k] = Some(Open {
                        start: at,
                        switches: baseline,
                        tag: None,
                        extra: 0,
                    });
                }
                (Role::Tag(t), Some(_)) => {
                    if let Some(open) = self.vcpu(vcpu).open[k].as_mut() {
                        open.tag.get_or_insert(t);
                    }
                }
                (Role::Disturb | Role::Tag(_), None) => {}
            }
        }
    }

    /// Instructions `vcpu` has executed so far.
    pub fn count(&self, vcpu: u32) -> u64 {
        self.vcpus.get(vcpu as usize).map_or(0, |v| v.count)
    }

    /// Everything recorded so far.
    pub fn report(&self) -> Report {
        let mut windows = Vec::new();
        for (k, kind) in self.kinds.iter().enumerate() {
            for (tag, s) in &self.stats[k] {
                windows.push(WindowReport {
                    kind: kind.name.clone(),
                    tag: tag.map(|t| kind.tags[t].0.clone()),
                    windows: s.windows,
                    distorted: s.distorted,
                    descheduled: s.descheduled,
                    extra_entries: s.extra_entries,
                    abandoned: s.abandoned,
                    min: s.min.unwrap_or(0),
                    max: s.max,
                    mean: s.sum.checked_div(s.windows).unwrap_or(0),
                    p50: s.hist.percentile(50).unwrap_or(0),
                    p99: s.hist.percentile(99).unwrap_or(0),
                    sum: s.sum,
                    percentile_windows: s.hist.samples(),
                });
            }
        }
        let kinds = self
            .kinds
            .iter()
            .enumerate()
            .map(|(k, kind)| KindReport {
                kind: kind.name.clone(),
                unmatched_ends: self.unmatched_ends[k],
                open_at_exit: self.vcpus.iter().filter(|v| v.open[k].is_some()).count() as u64,
            })
            .collect();
        let mut spans = Vec::new();
        for (s, (name, _, _)) in self.spans.iter().enumerate() {
            for (i, v) in self.vcpus.iter().enumerate() {
                spans.push(SpanReport {
                    span: name.clone(),
                    vcpu: i as u32,
                    instructions: v.spans[s].total,
                    longest_stretch: v.spans[s].longest,
                });
            }
        }
        Report {
            vcpus: self
                .vcpus
                .iter()
                .enumerate()
                .map(|(i, v)| VcpuReport {
                    vcpu: i as u32,
                    instructions: v.count,
                })
                .collect(),
            windows,
            kinds,
            spans,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Span;

    const START: u64 = 0x1000;
    const END: u64 = 0x2000;
    const TAG_A: u64 = 0x3000;
    const TAG_B: u64 = 0x3100;
    const DISTURB: u64 = 0x4000;

    fn config() -> Config {
        Config {
            out: "report.json".into(),
            flush_secs: 0,
            exact: vec![(0x1000, 0x5000)],
            spans: vec![Span {
                name: "spin".into(),
                lo: 0x6000,
                hi: 0x6010,
            }],
            windows: vec![WindowKind {
                name: "irq".into(),
                starts: vec![START],
                ends: vec![END],
                tags: vec![("a".into(), TAG_A), ("b".into(), TAG_B)],
                disturbs: vec![DISTURB],
                vcpus: None,
            }],
        }
    }

    /// `n` exactly counted instructions on `vcpu` at a plain address.
    fn plain(t: &mut Tracker, vcpu: u32, n: u64) {
        for _ in 0..n {
            t.insn(vcpu, 0x1800);
        }
    }

    fn only(report: &Report) -> &WindowReport {
        assert_eq!(report.windows.len(), 1, "{report:?}");
        &report.windows[0]
    }

    #[test]
    fn a_window_counts_from_its_start_up_to_not_including_its_end() {
        let mut t = Tracker::new(&config());
        plain(&mut t, 0, 5);
        t.insn(0, START);
        plain(&mut t, 0, 9);
        t.insn(0, END);
        let r = t.report();
        let w = only(&r);
        assert_eq!((w.windows, w.min, w.max, w.sum), (1, 10, 10, 10));
        assert_eq!((w.distorted, w.abandoned, w.tag.as_deref()), (0, 0, None));
        assert_eq!(r.instructions(0), Some(16));
        assert_eq!(r.kinds[0].open_at_exit, 0);
    }

    #[test]
    fn blocks_counted_ahead_place_a_marker_by_its_index() {
        let mut t = Tracker::new(&config());
        // A block of 8 whose 4th instruction (index 3) is the start: 5 are at or after it.
        t.tb(0, 8);
        t.marker_ahead(0, START, 5);
        t.tb(0, 6);
        // The end is the first of a block of 2.
        t.tb(0, 2);
        t.marker_ahead(0, END, 2);
        // Start at position 3, end at position 14.
        assert_eq!(only(&t.report()).max, 11);
        assert_eq!(t.count(0), 16);
    }

    #[test]
    fn a_new_start_abandons_the_open_window() {
        let mut t = Tracker::new(&config());
        t.insn(0, START);
        plain(&mut t, 0, 3);
        t.insn(0, START);
        plain(&mut t, 0, 2);
        t.insn(0, END);
        let r = t.report();
        let w = only(&r);
        assert_eq!((w.windows, w.abandoned, w.max), (1, 1, 3));
    }

    #[test]
    fn another_vcpu_running_inside_the_window_distorts_it() {
        let mut t = Tracker::new(&config());
        t.insn(0, START);
        t.tb(1, 100);
        plain(&mut t, 0, 4);
        t.insn(0, END);
        // Vcpu 1 ran before this one opened: not a distortion.
        t.insn(0, START);
        t.insn(0, END);
        let r = t.report();
        let w = only(&r);
        assert_eq!((w.windows, w.distorted, w.descheduled), (2, 1, 1));
        // The other vCPU's instructions are not the window's.
        assert_eq!(w.max, 5);
        assert_eq!(r.instructions(1), Some(100));
    }

    #[test]
    fn a_re_entry_after_a_deschedule_carries_the_distortion() {
        let mut t = Tracker::new(&config());
        // Abandoned without a deschedule: the next window is clean.
        t.insn(0, START);
        t.insn(0, START);
        t.insn(0, END);
        // Descheduled, then entered again before the end: the window that closes is the
        // tail of a distorted chain.
        t.insn(0, START);
        t.tb(1, 50);
        t.insn(0, START);
        plain(&mut t, 0, 2);
        t.insn(0, END);
        let r = t.report();
        let w = only(&r);
        assert_eq!((w.windows, w.abandoned), (2, 2));
        assert_eq!((w.distorted, w.descheduled), (1, 1));
        assert_eq!(w.max, 3, "the length is the last entry's own path");
    }

    #[test]
    fn a_disturb_address_inside_a_window_distorts_it_and_counts_entries() {
        let mut t = Tracker::new(&config());
        t.insn(0, DISTURB); // no window open: nothing
        t.insn(0, START);
        t.insn(0, DISTURB);
        t.insn(0, DISTURB);
        t.insn(0, END);
        let r = t.report();
        let w = only(&r);
        assert_eq!((w.distorted, w.descheduled, w.extra_entries), (1, 0, 2));
    }

    #[test]
    fn the_first_tag_hit_labels_the_window() {
        let mut t = Tracker::new(&config());
        t.insn(0, TAG_A); // outside a window: nothing
        t.insn(0, START);
        t.insn(0, TAG_B);
        t.insn(0, TAG_A);
        t.insn(0, END);
        t.insn(0, START);
        t.insn(0, TAG_A);
        t.insn(0, END);
        t.insn(0, START);
        t.insn(0, END);
        let r = t.report();
        let tags: Vec<(Option<&str>, u64, u64)> = r
            .windows
            .iter()
            .map(|w| (w.tag.as_deref(), w.windows, w.max))
            .collect();
        assert_eq!(tags, [(None, 1, 1), (Some("a"), 1, 2), (Some("b"), 1, 3)]);
        let total = r.kind_total("irq");
        assert_eq!(
            (total.windows, total.min, total.max, total.sum),
            (3, 1, 3, 6)
        );
        assert_eq!(total.p50, 0, "percentiles of several tags are not combined");
    }

    #[test]
    fn windows_are_per_vcpu_and_an_end_without_a_start_is_counted() {
        let mut cfg = config();
        cfg.windows[0].vcpus = Some(vec![1]);
        let mut t = Tracker::new(&cfg);
        t.insn(0, START);
        t.insn(0, END);
        let r = t.report();
        assert!(r.windows.is_empty(), "vCPU 0 is not watched: {r:?}");
        assert_eq!(r.kinds[0].unmatched_ends, 0);
        t.insn(1, END);
        t.insn(1, START);
        t.insn(1, START);
        let r = t.report();
        assert_eq!(r.kinds[0].unmatched_ends, 1);
        assert_eq!(r.kinds[0].open_at_exit, 1);
        assert_eq!(only(&r).abandoned, 1);
    }

    #[test]
    fn an_address_that_ends_one_window_and_starts_the_next() {
        let mut cfg = config();
        cfg.windows[0].starts.push(END);
        let mut t = Tracker::new(&cfg);
        t.insn(0, START);
        t.insn(0, END);
        plain(&mut t, 0, 2);
        t.insn(0, END);
        let r = t.report();
        let w = only(&r);
        assert_eq!((w.windows, w.abandoned, w.min, w.max), (2, 0, 1, 3));
    }

    #[test]
    fn spans_count_totals_and_the_longest_unbroken_stretch() {
        let mut t = Tracker::new(&config());
        for _ in 0..3 {
            t.insn(0, 0x6000);
        }
        t.insn(0, 0x1800); // outside: the stretch ends
        for _ in 0..5 {
            t.insn(0, 0x6004);
            t.tb(1, 7); // another vCPU between: the stretch goes on
        }
        t.tb(0, 4); // a block outside ends it too
        t.insn(0, 0x600c);
        let r = t.report();
        let spin: Vec<(u32, u64, u64)> = r
            .spans
            .iter()
            .map(|s| (s.vcpu, s.instructions, s.longest_stretch))
            .collect();
        assert_eq!(spin, [(0, 9, 5), (1, 0, 0)]);
        assert!(t.instrument(0x6000).span && t.instrument(0x6000).exact);
        assert!(!t.instrument(0x600c + 4).span);
    }

    #[test]
    fn instrumentation_follows_the_ranges_and_markers() {
        let t = Tracker::new(&config());
        let start = t.instrument(START);
        assert!(start.exact && start.marker && !start.span);
        let linux = t.instrument(0xffff_8000_0800_0000);
        assert_eq!(linux, Instrument::default());
        let end = t.marker_index(END).unwrap();
        assert_eq!(t.marker_addr(end), Some(END));
        assert_eq!(t.marker_index(0x1804), None);
    }

    #[test]
    fn percentiles_are_nearest_rank_over_exact_counts() {
        let mut h = Histogram::default();
        assert_eq!(h.percentile(50), None);
        for length in 1..=100 {
            h.add(length);
        }
        assert_eq!((h.percentile(50), h.percentile(99)), (Some(50), Some(99)));
        h.add(1000);
        h.add(1000);
        assert_eq!(h.percentile(99), Some(1000));
        assert_eq!(h.percentile(100), Some(1000));
        assert_eq!((h.samples(), h.overflow()), (102, 0));
    }

    #[test]
    fn a_full_histogram_counts_new_lengths_as_overflow() {
        let mut h = Histogram::default();
        for length in 0..MAX_DISTINCT_LENGTHS as u64 {
            h.add(length);
        }
        h.add(7);
        h.add(u64::MAX);
        assert_eq!(h.samples(), MAX_DISTINCT_LENGTHS as u64 + 1);
        assert_eq!(h.overflow(), 1);
    }

    #[test]
    fn the_report_round_trips_through_json() {
        let mut t = Tracker::new(&config());
        t.insn(0, START);
        t.insn(0, END);
        let r = t.report();
        assert_eq!(Report::from_json(&r.to_json()).unwrap(), r);
        assert!(Report::from_json("{}")
            .unwrap_err()
            .contains("not a spumone-pathlen report"));
    }
}
