//! `cargo xtask test`: every check the project has, in one command.

use anyhow::Result;
use std::ffi::OsString;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::firmware::{self, BuildOptions, LatencySettings};
use crate::paths::{target_dir, workspace_root};
use crate::scenario::SCENARIOS;
use crate::setup;

/// Tells the integration tests to boot the images `cargo xtask test` just built instead of
/// rebuilding each (spumone's build depends on the scenario's config).
pub const PREBUILT_ENV: &str = "SPUMONE_TESTS_PREBUILT";
/// Tells dsm-api's test support which kernel `Image` the checkers are tested against.
pub const LINUX_IMAGE_ENV: &str = "SPUMONE_LINUX_IMAGE";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Passed,
    Failed(String),
    Skipped(String),
}

struct StepResult {
    name: &'static str,
    status: Status,
    took: Duration,
}

fn cargo(args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    let cargo: OsString = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(args)
        .env("CARGO_TARGET_DIR", target_dir());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let shown = format!("cargo {}", args.join(" "));
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("`{shown}` failed ({s})")),
        Err(e) => Err(format!("cannot start `{shown}`: {e}")),
    }
}

/// Runs every step, prints a summary, and returns whether all passed.
pub fn test_all() -> Result<bool> {
    let mut results: Vec<StepResult> = Vec::new();
    let mut step = |name: &'static str, f: &mut dyn FnMut() -> Status| {
        println!("==> test: {name}");
        let start = Instant::now();
        let status = f();
        if let Status::Failed(why) = &status {
            println!("error: step `{name}` failed: {why}");
        }
        results.push(StepResult {
            name,
            status: status.clone(),
            took: start.elapsed(),
        });
        status
    };
    let to_status = |r: Result<(), String>| match r {
        Ok(()) => Status::Passed,
        Err(e) => Status::Failed(e),
    };

    let setup_ok = step("setup", &mut || {
        to_status(setup::ensure(true).map_err(|e| format!("{e:#}")))
    }) == Status::Passed;
    let image = crate::linux::kernel_image();
    let image = image.to_string_lossy();
    step("unit tests", &mut || {
        to_status(cargo(&["test"], &[(LINUX_IMAGE_ENV, &image)]))
    });
    // The cross-core protocols under every interleaving; `--cfg loom` swaps their atomics
    // for loom's, so they build apart.
    let loom_dir = target_dir().join("loom");
    let loom_dir = loom_dir.to_string_lossy();
    step("loom", &mut || {
        to_status(cargo(
            &["test", "--release", "-p", "spumone", "--lib", "loom_tests"],
            &[("RUSTFLAGS", "--cfg loom"), ("CARGO_TARGET_DIR", &loom_dir)],
        ))
    });
    step("clippy", &mut || {
        to_status(cargo(
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
            &[],
        ))
    });
    step("clippy (firmware)", &mut || {
        if !setup_ok {
            return Status::Skipped("setup failed".into());
        }
        to_status(firmware::clippy().map_err(|e| format!("{e:#}")))
    });
    step("rustfmt", &mut || {
        to_status(cargo(&["fmt", "--all", "--check"], &[]))
    });
    let firmware_ok = step("firmware", &mut || {
        if !setup_ok {
            return Status::Skipped("setup failed".into());
        }
        // The tests read the same settings to know the N their images were built with.
        let options = match LatencySettings::from_env() {
            Ok(latency) => BuildOptions {
                latency,
                ..BuildOptions::default()
            },
            Err(e) => return Status::Failed(format!("{e:#}")),
        };
        for scenario in SCENARIOS.iter().filter(|s| s.tested) {
            if let Err(e) = firmware::build(scenario, &options) {
                return Status::Failed(format!("scenario {}: {e:#}", scenario.name));
            }
        }
        Status::Passed
    }) == Status::Passed;
    step("qemu tests", &mut || {
        if !firmware_ok {
            return Status::Skipped("no firmware".into());
        }
        to_status(cargo(
            &["test", "-p", "spumone-tests", "--", "--test-threads=1"],
            &[(PREBUILT_ENV, "1")],
        ))
    });

    println!();
    println!("summary:");
    let mut passed = 0;
    let mut failed = 0;
    for r in &results {
        let (word, note) = match &r.status {
            Status::Passed => {
                passed += 1;
                ("ok", String::new())
            }
            Status::Failed(why) => {
                failed += 1;
                ("FAILED", format!("  {why}"))
            }
            Status::Skipped(why) => {
                failed += 1;
                ("skipped", format!("  ({why})"))
            }
        };
        println!(
            "  {word:<8} {:<12} {:>7.1} s{note}",
            r.name,
            r.took.as_secs_f64()
        );
    }
    let failing: Vec<&str> = results
        .iter()
        .filter(|r| r.status != Status::Passed)
        .map(|r| r.name)
        .collect();
    println!("steps: {passed} passed, {failed} failed");
    if !failing.is_empty() {
        println!("error: failed steps: {}", failing.join(", "));
    }
    Ok(failing.is_empty())
}
