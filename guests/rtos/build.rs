//! Passes the linker script to the firmware binary; host builds (tests) link normally.
//! Also rebuilds when the latency probe's build-time settings change.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-changed=build.rs");
    // Read with option_env! by the latency probe.
    println!("cargo:rerun-if-env-changed=RTOS_LATENCY_SAMPLES");
    println!("cargo:rerun-if-env-changed=RTOS_LATENCY_PERIOD_US");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        let dir =
            PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets the manifest dir"));
        println!(
            "cargo:rustc-link-arg-bins=-T{}",
            dir.join("link.ld").display()
        );
    }
}
