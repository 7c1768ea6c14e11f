//! The RTOS image alone on QEMU, without the hypervisor: the baseline scenario.

use spumone_tests::{boot, expect_clean_poweroff, expect_line, fail};
use std::time::Duration;

#[test]
fn rtos_boots_bare_and_powers_off() {
    let run = boot("rtos-native");
    let banner = expect_line(&run, "[rtos]", &["spumone rtos 0.1 (bare metal)"]);
    let done = expect_line(&run, "[rtos]", &["rtos: done, powering off"]);
    if done < banner {
        fail(&run, "`rtos: done` came before the banner");
    }
    if let Some(line) = run
        .lines
        .iter()
        .find(|l| !l.starts_with("[rtos] ") && !l.starts_with("[qemu] "))
    {
        fail(
            &run,
            &format!("a native run has only the RTOS console, but got: {line}"),
        );
    }
    expect_clean_poweroff(&run, Duration::from_secs(60));
}
