//! The path-length plugin (`tools/pathlen`) on real runs under `-icount`: it must agree with
//! what the RTOS prints where QEMU models the path exactly (one busy vCPU), and flag the
//! windows QEMU's round robin distorts where it does not (a spinning neighbour).

use spumone_tests::{expect_clean_poweroff, fail};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use xtask::bench::{find_latency, LatencyStats, RTOS_CONSOLE};
use xtask::firmware::{self, BuildOptions, LatencySettings};
use xtask::pathlen::{PathSummary, Report, HV_EXIT, HV_IRQ_RTOS, RTOS_IRQ};
use xtask::paths::target_dir;
use xtask::run::{self, RunOptions, RunOutcome};
use xtask::scenario;

/// The generic timer counts at 62.5 MHz under QEMU `virt`: the RTOS's latencies are whole
/// 16 ns ticks, where the plugin counts single instructions (nanoseconds under `-icount`).
const TICK_NS: u64 = 16;

/// A short probe: the windows of a few hundred samples say all there is to say.
fn short_probe() -> LatencySettings {
    LatencySettings::new(500, 1000).unwrap()
}

/// Whether a printed latency `l` (ns) can be a path of `p` instructions read through the
/// 16 ns counter: L = 16 × ⌊(P + d) / 16⌋ with d, the instructions from the deadline to the
/// vector entry, 0 or 1 (see the native test).
fn within_a_tick(l: u64, p: u64) -> bool {
    p < l + TICK_NS && l <= p + 1
}

/// One QEMU at a time, as the suite's own boots.
static QEMU_TURN: Mutex<()> = Mutex::new(());

/// Boots `name` under `-icount` with the plugin and the RTOS's probe built for `probe`. The
/// images are built into a directory of these tests' own: the suite's prebuilt images have the
/// suite's probe, and the other tests boot those.
fn boot_measured(name: &str, probe: LatencySettings) -> RunOutcome {
    let scenario = scenario::lookup(name).unwrap_or_else(|e| panic!("{e:#}"));
    let dir = target_dir().join("images-pathlen").join(name);
    let build = BuildOptions {
        latency: probe,
        ..BuildOptions::default()
    };
    let _turn = QEMU_TURN.lock().unwrap_or_else(PoisonError::into_inner);
    let firmware = firmware::build_into(scenario, &build, &dir)
        .unwrap_or_else(|e| panic!("scenario {name} could not be built: {e:#}"));
    let mut options = RunOptions::new(scenario);
    options.echo = false;
    options.icount = true;
    options.pathlen = true;
    options.latency = probe;
    run::launch(&firmware, &options)
        .unwrap_or_else(|e| panic!("scenario {name} could not be run: {e:#}"))
}

/// The RTOS's one `latency` line, checked against the probe it was built with.
#[track_caller]
fn printed(run: &RunOutcome, probe: LatencySettings) -> LatencyStats {
    match find_latency(&run.lines, RTOS_CONSOLE)
        .and_then(|s| s.check(u64::from(probe.samples)).map(|()| s))
    {
        Ok(stats) => stats,
        Err(e) => fail(run, &format!("latency line: {e}")),
    }
}

#[track_caller]
fn report(run: &RunOutcome) -> &Report {
    match &run.pathlen {
        Some(report) => report,
        None => fail(run, "the run loaded the plugin but has no report"),
    }
}

fn show(run: &RunOutcome, kind: &str) -> String {
    let t = report(run).kind_total(kind);
    format!(
        "{kind}: {} windows ({} distorted, {} descheduled, {} extra entries, {} abandoned), \
         min {} p50 {} p99 {} max {}",
        t.windows,
        t.distorted,
        t.descheduled,
        t.extra_entries,
        t.abandoned,
        t.min,
        t.p50,
        t.p99,
        t.max
    )
}

/// `rtos-native` (`-smp 1`): one window per sample, none distorted, and the printed maximum
/// latency L equals the longest path P to within a counter tick. Why not exactly: the RTOS
/// reads a 16 ns counter, so L = 16 × ⌊(P + d) / 16⌋, where d is the instructions between the
/// programmed deadline and the vector entry (under `-icount` QEMU stops the vCPU at the
/// deadline, so d is 0 or 1); hence P + d − 15 ≤ L ≤ P + d.
#[test]
fn the_native_rtos_path_is_its_printed_latency() {
    let probe = short_probe();
    let run = boot_measured("rtos-native", probe);
    expect_clean_poweroff(&run, Duration::from_secs(60));
    let printed = printed(&run, probe);
    let path = PathSummary::of(report(&run));
    println!("{}", show(&run, RTOS_IRQ));
    println!("printed: {printed:?}");
    let samples = u64::from(probe.samples);
    // Every sample is a window; a firing while the round's line prints adds a few.
    if !(samples..=samples + 10).contains(&path.windows) {
        fail(
            &run,
            &format!("{} windows closed for {samples} samples", path.windows),
        );
    }
    if path.distorted_windows != 0 {
        fail(&run, "a window was distorted on a one-core machine");
    }
    let (l, p) = (printed.max_ns, path.max);
    if !within_a_tick(l, p) {
        fail(
            &run,
            &format!("printed max {l} ns against a longest path of {p} instructions"),
        );
    }
}

/// `rtos` (the RTOS under spumone on core 0): the forwarded path from spumone's EL2 IRQ vector
/// to the RTOS's timestamp closes for every sample, undistorted, and is longer than the
/// RTOS's own part of it.
#[test]
fn the_path_from_spumones_irq_vector_to_the_rtos_task_closes_undistorted() {
    let probe = short_probe();
    let run = boot_measured("rtos", probe);
    expect_clean_poweroff(&run, Duration::from_secs(90));
    let printed = printed(&run, probe);
    for kind in [HV_IRQ_RTOS, RTOS_IRQ, HV_EXIT] {
        println!("{}", show(&run, kind));
    }
    println!("printed: {printed:?}");
    let forwarded = report(&run).kind_total(HV_IRQ_RTOS);
    let own = report(&run).kind_total(RTOS_IRQ);
    let samples = u64::from(probe.samples);
    if forwarded.windows < samples {
        fail(
            &run,
            &format!(
                "{} forwarded windows for {samples} samples",
                forwarded.windows
            ),
        );
    }
    if forwarded.distorted != 0 || own.distorted != 0 {
        fail(
            &run,
            "a window was distorted with the RTOS alone under spumone",
        );
    }
    if forwarded.min <= own.max {
        fail(
            &run,
            "the forwarded path is not longer than the RTOS's own part",
        );
    }
    if !within_a_tick(printed.max_ns, forwarded.max) {
        fail(
            &run,
            &format!(
                "printed max {} ns against a longest forwarded path of {}",
                printed.max_ns, forwarded.max
            ),
        );
    }
}

/// `rtos-native-busy` (2 vCPUs, one spinning): the RTOS's core idles while the spinner runs
/// whole round-robin slices, so its interrupts come late and the firings it missed come back
/// to back: its handler re-arms the timer (which ends its slice), the spinner runs, and the
/// RTOS enters its vector again before the task's timestamp. The plugin flags those windows
/// as descheduled; the path itself stays the one-core path, the printed latency does not.
#[test]
fn a_spinning_neighbour_distorts_the_windows() {
    let probe = LatencySettings::new(20, 1000).unwrap();
    let run = boot_measured("rtos-native-busy", probe);
    expect_clean_poweroff(&run, Duration::from_secs(600));
    let printed = printed(&run, probe);
    println!("{}", show(&run, RTOS_IRQ));
    println!("printed: {printed:?}");
    let path = report(&run).kind_total(RTOS_IRQ);
    if path.windows == 0 || path.descheduled == 0 || path.abandoned == 0 {
        fail(&run, "expected windows descheduled by the round robin");
    }
    // The RTOS waits whole slices; its own path does not grow with them.
    if printed.max_ns < 100 * path.max {
        fail(
            &run,
            "the printed latency is not a QEMU slice beside the path",
        );
    }
}

/// `rtos` with the profile's attribution: every exit gets a reason, the reasons' exits and
/// instructions add up to the `hv-exit` windows, the RTOS's timer interrupts are `timer-irq`
/// on its vCPU at the forwarding cost the fast path has, its console writes are `hvc`, and
/// its redistributor set-up is `gicr-mmio`.
#[test]
fn the_profile_attributes_the_rtos_exits_to_their_reasons() {
    use xtask::profile::{Profile, UNATTRIBUTED};
    let probe = short_probe();
    let run = boot_measured("rtos", probe);
    expect_clean_poweroff(&run, Duration::from_secs(90));
    let report = report(&run);
    let profile = Profile::of(report, 0);
    for r in &profile.reasons {
        println!("{}: {} exits, mean {}", r.reason, r.exits, r.mean());
    }
    let total = report.kind_total(HV_EXIT);
    if profile.exit_totals() != (total.windows, total.sum) {
        fail(
            &run,
            &format!(
                "the reasons add up to {:?}, the hv-exit windows to {:?}",
                profile.exit_totals(),
                (total.windows, total.sum)
            ),
        );
    }
    let Some(rtos) = profile.rtos_vcpu else {
        fail(&run, "no RTOS vCPU in the report");
    };
    let on_rtos = |reason: &str| {
        profile
            .by_vcpu
            .get(&rtos)
            .and_then(|rows| rows.iter().find(|r| r.reason == reason))
            .cloned()
            .unwrap_or_default()
    };
    let timer = on_rtos("timer-irq");
    if timer.exits < u64::from(probe.samples) || !(60..=120).contains(&timer.mean()) {
        fail(
            &run,
            &format!(
                "timer-irq on the RTOS's vCPU: {} exits, mean {}",
                timer.exits,
                timer.mean()
            ),
        );
    }
    for reason in ["hvc", "gicr-mmio"] {
        if on_rtos(reason).exits == 0 {
            fail(&run, &format!("no {reason} exit on the RTOS's vCPU"));
        }
    }
    if profile.reasons.iter().any(|r| r.reason == UNATTRIBUTED) {
        fail(&run, "an exit ran no tagged code");
    }
    if timer.locked != 0 {
        fail(&run, "the RTOS's timer fast path acquired a lock");
    }
}
