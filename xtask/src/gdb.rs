//! `cargo xtask gdb`: QEMU halted at reset, and gdb-multiarch attached to it.

use anyhow::{bail, Context, Result};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;

use crate::firmware::{self, BuildOptions, LatencySettings};
use crate::paths;
use crate::qemu::QemuOptions;
use crate::run::{self, RunOptions};
use crate::scenario::Scenario;
use crate::signals;

pub const GDB: &str = "gdb-multiarch";

pub fn gdb(scenario: &'static Scenario, plain_log: bool) -> Result<()> {
    let found = Command::new(GDB)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        bail!("{GDB} not found: install the package gdb-multiarch (Debian/Ubuntu: `apt-get install gdb-multiarch`)");
    }
    crate::setup::ensure_base(false)?;
    let options = BuildOptions {
        plain_log,
        latency: LatencySettings::from_env()?,
    };
    let firmware = firmware::build(scenario, &options)?;
    let mut options = RunOptions::new(scenario);
    options.timeout = None;
    options.echo = false;

    let (pid_tx, pid_rx) = mpsc::channel();
    let qemu_firmware = firmware.clone();
    let qemu = thread::spawn(move || {
        run::supervise(
            &qemu_firmware,
            &options,
            &QemuOptions {
                icount: false,
                gdb: true,
                ..QemuOptions::default()
            },
            Some(pid_tx),
        )
    });
    let Ok(qemu_pid) = pid_rx.recv() else {
        // QEMU did not start; the thread holds the reason.
        return match qemu.join() {
            Ok(Err(e)) => Err(e),
            _ => bail!("QEMU did not start"),
        };
    };
    let log = paths::display(&paths::logs_dir(scenario.name).join("all.log"));
    println!("gdb: QEMU waits for the debugger on :1234; console output goes to {log}");

    let mut cmd = Command::new(GDB);
    cmd.arg("-q")
        .arg(&firmware.kernel)
        .args(["-ex", "target remote :1234"]);
    // Guest symbols too, without gdb asking to confirm each file.
    cmd.args(["-ex", "set confirm off"]);
    for image in &firmware.loads {
        cmd.arg("-ex")
            .arg(format!("add-symbol-file {}", image.display()));
    }
    cmd.args(["-ex", "set confirm on"]);
    // Ctrl-C belongs to gdb (it interrupts the target), not to xtask.
    signals::ignore_interrupts();
    let status = cmd.status().with_context(|| format!("starting {GDB}"));
    signals::stop_qemu(qemu_pid);
    let outcome = qemu.join();
    let status = status?;
    match outcome {
        Ok(Err(e)) => return Err(e),
        Err(_) => bail!("the QEMU supervisor thread panicked"),
        Ok(Ok(_)) => {}
    }
    if !status.success() {
        bail!("{GDB} exited with {status}");
    }
    Ok(())
}
