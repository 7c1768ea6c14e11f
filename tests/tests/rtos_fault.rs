//! The RTOS touches addresses it was not given; spumone stops each access with an external
//! abort, reports it, and the RTOS carries on to a clean poweroff.

use spumone_tests::{
    boot, expect_clean_poweroff, expect_clean_stream, expect_line, expect_no_line, fail,
};
use std::time::Duration;

/// What the RTOS probes when started with boot argument 1: an unassigned device, spumone's own
/// image, and an address outside every region.
const PROBES: [(&str, &str); 3] = [
    ("read", "0x9030000"),
    ("write", "0x40200000"),
    ("read", "0x100000000"),
];

#[test]
fn unassigned_accesses_are_contained_and_reported() {
    let run = boot("rtos-fault");
    expect_line(&run, "[rtos]", &["rtos: EL1, boot argument 0x1"]);

    for (access, addr) in PROBES {
        let warning = expect_line(
            &run,
            "[hv]",
            &[
                "WARN",
                "partition rtos vcpu 0: unassigned MMIO",
                &format!("{access} of 4 bytes at {addr} "),
                "external abort injected",
            ],
        );
        let caught = expect_line(
            &run,
            "[rtos]",
            &[
                &format!("caught external abort: {access} at {addr} "),
                "continuing",
            ],
        );
        if caught < warning {
            fail(
                &run,
                &format!("the RTOS reported the abort at {addr} before spumone's warning"),
            );
        }
    }
    expect_line(&run, "[rtos]", &["fault probe: 3/3 accesses contained"]);
    expect_no_line(&run, "[rtos]", "FAILED");
    expect_line(&run, "[rtos]", &["rtos: done, powering off"]);
    expect_clean_stream(&run);
    expect_clean_poweroff(&run, Duration::from_secs(60));
}
