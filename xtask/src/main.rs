use anyhow::Result;
use std::process::ExitCode;
use std::time::Duration;

use xtask::cli::{self, Command};
use xtask::firmware::{self, BuildOptions, LatencySettings};
use xtask::run::{self, RunOptions};
use xtask::scenario::{self, SCENARIOS};
use xtask::{attack, bench, ci, gdb, kbuild, probe, setup, signals};

fn main() -> ExitCode {
    // Errors are values printed as one line; a panic is a bug, and still gets one line.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error in xtask: {info}");
    }));
    signals::default_broken_pipe();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match real_main(&args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(args: &[String]) -> Result<u8> {
    let command = match cli::parse(args) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("error: {e:#}");
            eprintln!("(see `cargo xtask --help`)");
            return Ok(2);
        }
    };
    match command {
        Command::Help => println!("{}", cli::usage()),
        Command::List => print!("{}", scenario::listing()),
        Command::Setup => setup::ensure(true)?,
        Command::Build {
            scenario,
            plain_log,
        } => {
            setup::ensure_base(false)?;
            let options = BuildOptions {
                plain_log,
                latency: LatencySettings::from_env()?,
            };
            match scenario {
                Some(name) => {
                    firmware::build(scenario::lookup(&name)?, &options)?;
                }
                None => {
                    for s in SCENARIOS {
                        firmware::build(s, &options)?;
                    }
                }
            }
        }
        Command::Run {
            scenario,
            timeout,
            icount,
            plain_log,
            cmd,
            disk,
            no_dsm,
            policy,
            dsm_pause,
            resume_after,
            plain,
        } => {
            let scenario = scenario::lookup(&scenario)?;
            if disk.is_some() && !firmware::boots_linux(scenario) {
                anyhow::bail!(
                    "--disk attaches a disk for Linux; scenario {} boots no Linux",
                    scenario.name
                );
            }
            let disk = match disk {
                None => None,
                Some(path) => {
                    let path = std::path::PathBuf::from(path);
                    if !path.is_file() {
                        anyhow::bail!("--disk: {} is not a file", path.display());
                    }
                    Some(xtask::qemu::Disk {
                        path,
                        writable: false,
                    })
                }
            };
            if cmd.is_some() && !firmware::boots_linux(scenario) {
                anyhow::bail!(
                    "--cmd runs a command in Linux; scenario {} boots no Linux \
                     (try linux or linux-native)",
                    scenario.name
                );
            }
            setup::ensure_base(false)?;
            let build_options = BuildOptions {
                plain_log,
                latency: LatencySettings::from_env()?,
            };
            let built = firmware::build(scenario, &build_options)?;
            let options = RunOptions {
                timeout: timeout.map(Duration::from_secs),
                icount,
                plain_log,
                forward_stdin: cmd.is_none(),
                // Only when stdin and stdout are a terminal (see `tui::Tui::enter`).
                tui: cmd.is_none() && !plain,
                cmd: cmd.clone(),
                disk,
                no_dsm,
                policy,
                dsm_pause,
                resume_after_pause: resume_after.map(Duration::from_secs),
                ..RunOptions::new(scenario)
            };
            // Fails early when the scenario boots no Linux or the command is too long.
            run::with_boot_flags(&built, cmd.as_deref(), run::boot_flags(&options, &built)?)?;
            // After building: cargo must stay interruptible.
            signals::ignore_interrupts();
            let outcome = run::launch(&built, &options)?;
            if outcome.verdict() == run::Verdict::Left {
                eprintln!(
                    "left scenario {} ({}); logs in {}",
                    scenario.name,
                    xtask::tui::HOW_TO_LEAVE,
                    xtask::paths::display(&outcome.log_dir)
                );
            }
            if let Some(why) = outcome.failure() {
                eprintln!("error: {why}");
                return Ok(u8::try_from(outcome.exit_code()).unwrap_or(1));
            }
            if cmd.is_some() {
                return Ok(match outcome.command_status() {
                    Some(status) => u8::try_from(status).unwrap_or(1),
                    None => {
                        let log = outcome.log_dir.join("all.log");
                        eprintln!(
                            "error: the guest powered off without a `{}N` line, so the command's \
                             status is unknown (log in {})",
                            xtask::linux::STATUS_MARKER,
                            xtask::paths::display(&log)
                        );
                        1
                    }
                });
            }
            return Ok(u8::try_from(outcome.exit_code()).unwrap_or(1));
        }
        Command::Gdb {
            scenario,
            plain_log,
        } => gdb::gdb(scenario::lookup(&scenario)?, plain_log)?,
        Command::Bench {
            name,
            timeout,
            quick,
            clock,
            dsm,
            only,
            policy,
            ..
        } if name == "kbuild" => {
            let variant = if quick {
                kbuild::Variant::Quick
            } else {
                kbuild::Variant::Full
            };
            let timeout = match timeout {
                None => Some(variant.default_timeout()),
                Some(0) => None,
                Some(secs) => Some(Duration::from_secs(secs)),
            };
            let plan =
                kbuild::Plan::chosen(variant, clock, only.as_deref(), dsm, policy.as_deref())
                    .map_err(|e| anyhow::anyhow!(e))?;
            kbuild::bench(plan, timeout)?;
        }
        Command::Bench {
            name,
            timeout,
            clock,
            only,
            ..
        } if name == "disk" => {
            let timeout = match timeout {
                None => Some(xtask::diskbench::DEFAULT_TIMEOUT),
                Some(0) => None,
                Some(secs) => Some(Duration::from_secs(secs)),
            };
            xtask::diskbench::bench(&bench::clocks(clock), only.as_deref(), timeout)?;
        }
        Command::Bench {
            name,
            timeout,
            only,
            ..
        } if name == "profile" => {
            let timeout = match timeout {
                None => Some(xtask::profile::DEFAULT_TIMEOUT),
                Some(0) => None,
                Some(secs) => Some(Duration::from_secs(secs)),
            };
            xtask::profile::bench(only.as_deref(), timeout)?;
        }
        Command::Bench {
            name,
            timeout,
            kbuild,
            ..
        } if name == "dsm" => {
            let timeout = match timeout {
                None => Some(Duration::from_secs(900)),
                Some(0) => None,
                Some(secs) => Some(Duration::from_secs(secs)),
            };
            xtask::dsmbench::bench(timeout, kbuild)?;
        }
        Command::Bench {
            name,
            samples,
            period_us,
            timeout,
            only,
            clock,
            policy,
            load,
            plugin,
            ..
        } => {
            debug_assert_eq!(name, "rtos-latency");
            let defaults = LatencySettings::DEFAULT;
            let latency = LatencySettings::new(
                samples.unwrap_or(defaults.samples),
                period_us.unwrap_or(defaults.period_us),
            )?;
            let timeout = match timeout {
                None => Some(bench::default_timeout(&latency)),
                Some(0) => None,
                Some(secs) => Some(Duration::from_secs(secs)),
            };
            // The CLI checked the names; the static ones are kept.
            let known = |value: Option<String>, names: &[&'static str]| {
                value.and_then(|v| names.iter().find(|n| **n == v).copied())
            };
            let only = known(only, bench::LATENCY_GROUPS);
            let policy = known(policy, &bench::POLICIES);
            let load = known(load, &bench::LINUX_LOADS);
            bench::rtos_latency(&bench::LatencyBenchOptions {
                latency,
                timeout,
                only,
                clock,
                policy,
                load,
                plugin,
            })?;
        }
        Command::Attack {
            name,
            icount,
            timeout,
        } => {
            let Some(name) = name else {
                print!("{}", attack::listing());
                return Ok(0);
            };
            // Fails at once for an unknown attack or one no checker catches yet.
            let cmd = attack::command(&name)?;
            let outcome = boot_running(attack::SCENARIO, cmd, timeout, |o| o.icount = icount)?;
            let seen = attack::Observed {
                lines: &outcome.lines,
                events: &outcome.events,
            };
            let log = xtask::paths::display(&outcome.log_dir.join("all.log"));
            let verdict = attack::judge(&name, &seen).and_then(|ok| {
                // The benign run must also end the normal way: Linux powered off by itself.
                if name == "benign" && outcome.failure().is_some() {
                    Err(outcome.failure().unwrap_or_default())
                } else {
                    Ok(ok)
                }
            });
            match verdict {
                Ok(what) => println!("attack: {what}"),
                Err(why) => {
                    eprintln!("error: attack {name}: {why} (log in {log})");
                    return Ok(1);
                }
            }
        }
        Command::Probe {
            name,
            timeout,
            seed,
        } => {
            let Some(name) = name else {
                print!("{}", probe::listing());
                return Ok(0);
            };
            let boots = probe::plan(&probe::names(&name)?)?;
            let seed = seed.unwrap_or_else(probe::fresh_seed);
            let disks = probe::scratch_disks(&xtask::paths::target_dir().join("probes"))?;
            println!("probe: seed {seed}; {} boot(s)", boots.len());
            let mut failed = 0;
            for boot in &boots {
                let cmd = probe::command(boot, seed);
                let outcome = boot_running(boot.scenario, cmd, timeout, |o| {
                    o.pci_disks = disks.clone();
                })?;
                let seen = probe::Observed {
                    lines: &outcome.lines,
                    times: &outcome.line_times,
                };
                let log = xtask::paths::display(&outcome.log_dir.join("all.log"));
                for v in probe::judge(boot, &seen) {
                    match &v.result {
                        Ok(what) => println!(
                            "probe {} ({}): contained: {what}; {}",
                            v.probe, v.scenario, v.rtos
                        ),
                        Err(why) => {
                            failed += 1;
                            eprintln!(
                                "error: probe {} ({}): {why} (log in {log})",
                                v.probe, v.scenario
                            );
                        }
                    }
                }
                if let Some(why) = outcome.failure() {
                    failed += 1;
                    eprintln!("error: probe boot {}: {why}", boot.scenario);
                }
            }
            if failed > 0 {
                return Ok(1);
            }
        }
        Command::Ctl {
            scenario,
            command,
            json,
        } => return xtask::ctl::client(&scenario, &command, json),
        Command::Test => {
            if !ci::test_all()? {
                return Ok(1);
            }
        }
    }
    Ok(0)
}

/// Builds `scenario` and boots it with `cmd` run in Linux for at most `timeout` seconds
/// (`attack`, `probe`); `adjust` sets further run options.
fn boot_running(
    scenario: &str,
    cmd: String,
    timeout: u64,
    adjust: impl FnOnce(&mut RunOptions),
) -> Result<run::RunOutcome> {
    setup::ensure_base(false)?;
    let scenario = scenario::lookup(scenario)?;
    let build_options = BuildOptions {
        plain_log: false,
        latency: LatencySettings::from_env()?,
    };
    let built = firmware::build(scenario, &build_options)?;
    run::with_command(&built, Some(&cmd), false)?;
    let mut options = RunOptions {
        timeout: Some(Duration::from_secs(timeout)),
        cmd: Some(cmd),
        ..RunOptions::new(scenario)
    };
    adjust(&mut options);
    signals::ignore_interrupts();
    run::launch(&built, &options)
}
