//! The RTOS alone on a 2-core QEMU without the hypervisor, its other core spinning:
//! the busy-neighbour baseline of `bench rtos-latency`.

use spumone_tests::{boot_shared, expect_clean_poweroff, expect_latency, expect_line, fail};
use std::time::Duration;

/// The probe's N × P (10 s by default) plus boot; the spinning core slows the host down.
const BOOT_LIMIT: Duration = Duration::from_secs(90);

#[test]
fn rtos_starts_its_neighbours_then_probes_and_powers_off() {
    let run = boot_shared("rtos-native-busy");
    let banner = expect_line(run, "[rtos]", &["spumone rtos 0.1 (bare metal)"]);
    let spin = expect_line(
        run,
        "[rtos]",
        &["rtos: 1 more core spins beside the RTOS (a neighbour load)"],
    );
    let (latency, _stats) = expect_latency(run);
    let done = expect_line(run, "[rtos]", &["rtos: done, powering off"]);
    if !(banner < spin && spin < latency && latency < done) {
        fail(
            run,
            "expected the banner, the neighbours' line, the latency line, then `rtos: done`",
        );
    }
    expect_clean_poweroff(run, BOOT_LIMIT);
}
