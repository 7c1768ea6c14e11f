//! Command-line parsing for `cargo xtask`.

use std::io::IsTerminal;

use anyhow::{bail, Result};

use crate::scenario::{DEFAULT_SCENARIO, DEFAULT_TIMEOUT_SECS};

/// Default `--timeout` of `attack`: a demo boot, the attack and the DSM's response.
pub const ATTACK_TIMEOUT_SECS: u64 = 300;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Setup,
    Build {
        /// `None` builds every scenario.
        scenario: Option<String>,
        plain_log: bool,
    },
    Run {
        scenario: String,
        /// Seconds; `None` waits for ever.
        timeout: Option<u64>,
        icount: bool,
        plain_log: bool,
        /// Run this shell command in the Linux guest and exit with its status.
        cmd: Option<String>,
        /// A raw disk image attached as virtio-blk (snapshot: writes are dropped).
        disk: Option<String>,
        /// Leave the D-System Monitor off for this run.
        no_dsm: bool,
        /// The Linux partitions' migration policy for this run (`pinned`, `spumone`, `load`).
        policy: Option<String>,
        /// `--dsm-pause`: the DSM pauses Linux on a finding, whatever the config says.
        dsm_pause: bool,
        /// `--resume-after SECS`: type the operator's resume command that long after a pause.
        resume_after: Option<u64>,
        /// `--plain`: the prefixed stream on a terminal too, not the split screen.
        plain: bool,
    },
    List,
    Gdb {
        scenario: String,
        plain_log: bool,
    },
    Test,
    /// `attack <name>` / `attack benign` / `attack --list`.
    Attack {
        /// `None` lists the attacks.
        name: Option<String>,
        icount: bool,
        /// Seconds.
        timeout: u64,
    },
    /// `probe <name>` / `probe all` / `probe --list`.
    Probe {
        /// `None` lists the probes.
        name: Option<String>,
        /// Seconds per boot.
        timeout: u64,
        /// The fuzzer's and storms' seed (`None`: from the clock).
        seed: Option<u64>,
    },
    /// `ctl [--scenario NAME] [--json] COMMAND [ARG...]`: a command to a running board.
    Ctl {
        scenario: String,
        command: crate::ctl::CtlCommand,
        json: bool,
    },
    Bench {
        name: String,
        samples: Option<u32>,
        period_us: Option<u32>,
        /// Seconds per run as given (`0` waits for ever); `None` picks a default.
        timeout: Option<u64>,
        /// `kbuild`: the quick variant.
        quick: bool,
        /// `kbuild`, `rtos-latency`, `disk`: one clock only (`Some(true)`: `-icount`); `None`
        /// runs both.
        clock: Option<bool>,
        /// `kbuild`: `demo` with the DSM on or off only; `None` runs both.
        dsm: Option<bool>,
        /// `dsm`: also the kernel build with the DSM on and off (`--kbuild`).
        kbuild: bool,
        /// `rtos-latency`: only one group of rows (`--only rtos|demo|shared|shared-1|
        /// shared-2`); `kbuild`: only `demo` or only `shared` beside the native baseline;
        /// `disk`: only `linux` or only `demo`.
        only: Option<String>,
        /// `kbuild`, `rtos-latency`: the shared-core scenarios under this migration policy
        /// only; `None` runs all three (`shared-1` runs `pinned` only).
        policy: Option<String>,
        /// `rtos-latency`: the rows beside Linux under this load only (`linux-idle`,
        /// `linux-busy`, `linux-ipc`); `None` runs all three.
        load: Option<String>,
        /// `rtos-latency`: load the path-length plugin into the `-icount` runs (`--plugin`).
        plugin: bool,
    },
}

pub fn usage() -> String {
    format!(
        "\
usage: cargo xtask <command> [options]

commands:
  setup                   install what building and running need (Rust targets, QEMU)
  build [--scenario NAME] [--plain-log]
                          build the firmware of one scenario (default: every scenario)
  run [SCENARIO] [--timeout SECS] [--icount] [--plain-log] [--cmd 'COMMAND'] [--disk IMG]
      [--no-dsm] [--policy pinned|spumone|load|rotate] [--dsm-pause] [--resume-after SECS]
      [--plain]           build and boot a scenario (default: {DEFAULT_SCENARIO})
  run --list              list the scenarios
  gdb SCENARIO            boot a scenario stopped at its first instruction, under gdb-multiarch
  test                    run every test: unit tests, clippy, rustfmt, QEMU integration tests
  attack NAME|benign [--icount] [--timeout SECS]
                          boot demo, run one attack of the suite in Linux (or the benign
                          workload) and check the DSM caught it (or stayed quiet)
  attack --list           list the attacks and the checker expected to catch each
  probe NAME|all [--seed N] [--timeout SECS]
                          boot demo (and shared for gic) with two scratch PCI disks, run
                          isolation probes in Linux (guests/linux/probes) and check each was
                          contained, spumone stayed up and the RTOS kept its rounds
  probe --list            list the probes and what each checks
  ctl [--scenario NAME] [--json] COMMAND
                          a command to the board a `cargo xtask run` of NAME (default
                          {DEFAULT_SCENARIO}) boots, through its socket
                          target/run/NAME/ctl.sock: status, pause|resume|stop|restart
                          PARTITION, check CHECKER, events (until Ctrl-C); migrate and
                          policy are not supported yet; --json prints JSON; exit status 1 on
                          an error answer or when no run listens
  bench rtos-latency [--samples N] [--period-us P] [--timeout SECS]
      [--only rtos|demo|shared|shared-1|shared-2] [--clock icount|wall]
      [--policy pinned|spumone|load] [--load LOAD] [--plugin]
                          RTOS dispatch latency, native and under spumone, with and without
                          --icount; --only, --clock, --policy and --load run only those;
                          loads: linux-idle|linux-busy|linux-ipc, and in shared-1 the storms
                          storm-wfi|-wfe|-sgi|-mmio|-sysreg|-irqoff (a hostile Linux);
                          the loads beside Linux last N × P (--samples 100000: 10^5 periods);
                          --plugin counts the RTOS's path and its distorted windows in the
                          -icount runs (TCG plugin); writes target/bench/rtos-latency.{{json,md}}
  bench dsm [--kbuild] [--timeout SECS]
                          the DSM's costs from one demo run per clock (benign workload, then
                          the text_patch attack): full pass per checker and its share of the
                          core, event-path latency beside the RTOS's dispatch; --kbuild adds
                          bench kbuild --quick --clock icount with the DSM off and on;
                          writes target/bench/dsm.{{json,md}}
  bench kbuild [--quick] [--clock icount|wall] [--only demo|shared] [--dsm on|off]
      [--policy pinned|spumone|load] [--timeout SECS]
                          a kernel build inside Linux: linux-native, demo (with the DSM on and
                          off) and shared (under each migration policy), with and without
                          --icount; --clock, --only, --dsm and --policy run only those; writes
                          target/bench/kbuild.{{json,md}} (builds the root filesystem image
                          under target/cache/kbuild/ the first time)
  bench disk [--clock icount|wall] [--only linux|demo] [--timeout SECS]
                          dd of 256 MiB from and to Linux's virtio-blk disk: linux-native (the
                          baseline) and linux and demo (behind spumone's SMMU), with and
                          without --icount; --clock and --only run only those; writes
                          target/bench/disk.{{json,md}} (and the sparse target/bench/disk.img)

options:
  --timeout SECS   stop the run if the machine has not powered off after SECS seconds
                   (default {DEFAULT_TIMEOUT_SECS}, none for `run` on a terminal without
                   --cmd; 0 waits for ever)
  --icount         deterministic guest time (-icount shift=0,align=off,sleep=off)
  --plain-log      build spumone to print plain text instead of framed defmt records
  --cmd 'COMMAND'  Linux scenarios: run COMMAND with `sh -c` in the guest instead of a shell,
                   print its output as [linux] lines, power off, and exit with its status
  --disk IMG       Linux scenarios: attach the raw image IMG as virtio-blk-pci (/dev/vda); writes
                   go to a temporary overlay and are dropped
  --no-dsm         Linux under spumone: leave the D-System Monitor off for this run (the
                   baseline for its cost)
  --policy NAME    Linux under spumone: move its vCPUs by policy NAME (pinned, spumone,
                   load, or rotate: a migration stress test) for this run instead of the
                   config's
  --dsm-pause      Linux under spumone: on a finding the DSM pauses Linux (policy pause),
                   whatever the config says; typing Ctrl-] r on the console resumes it
  --resume-after SECS
                   with --cmd: type that resume command SECS seconds after the DSM paused Linux
  --plain          run on a terminal: the prefixed stream below, not the split screen

input: without --cmd, a Linux scenario (linux-native, linux, demo, shared) gets this
terminal's keys: an interactive shell, raw mode from a terminal (Ctrl-C goes to the guest;
`exit` or `poweroff -f` ends Linux, Ctrl-A x stops QEMU); under spumone they reach Linux
through its emulated UART.

screen: when stdin and stdout are a terminal (and without --cmd or --plain), run splits it:
Linux's console, where the keys go; the RTOS's latency rounds (p99 and max per round, and the
last line); the DSM's checkers, findings and pause/resume/stop events; the partitions and
where their vCPUs run; the hypervisor log's tail. {leave} leaves it (and stops QEMU);
Ctrl-] p and Ctrl-] r still pause and resume Linux. Otherwise: one stream, each line prefixed
by its source ([hv], [rtos], [linux], [raw], [qemu]).

exit status of run:
  0    the machine powered off cleanly (spumone reported shutdown code=0)
  N    with --cmd: the command's exit status (1 if the guest never reported it)
  N    spumone reported shutdown code=N (1 if N does not fit)
  124  the timeout passed; QEMU was killed
  130  interrupted by Ctrl-C
  1    any other failure (build, QEMU error, no shutdown reported)

Each run keeps its streams in target/logs/<scenario>/ (serial.bin, all.log, hv.log,
<partition>.log).",
        leave = crate::tui::HOW_TO_LEAVE
    )
}

/// `NAME|--list [--timeout SECS]` of `attack` and `probe`: the name (`None` lists) and the
/// timeout of one boot.
fn suite_member(
    flags: &mut Flags,
    default_timeout: u64,
    missing: &str,
) -> Result<(Option<String>, u64)> {
    let list = flags.switch("--list");
    let timeout = match flags.value("--timeout")? {
        None => default_timeout,
        Some(text) => match text.parse::<u64>() {
            Ok(secs) if secs > 0 => secs,
            _ => bail!("--timeout needs a positive number of seconds, not {text:?}"),
        },
    };
    let name = if list {
        None
    } else {
        match flags.positional()? {
            Some(name) => Some(name),
            None => bail!("{missing}"),
        }
    };
    Ok((name, timeout))
}

/// Parses the arguments after `cargo xtask`.
pub fn parse(args: &[String]) -> Result<Command> {
    let Some((command, rest)) = args.split_first() else {
        return Ok(Command::Help);
    };
    if rest.iter().any(|a| a == "-h" || a == "--help") {
        return Ok(Command::Help);
    }
    let mut flags = Flags::new(rest);
    let parsed = match command.as_str() {
        "-h" | "--help" | "help" => Command::Help,
        "setup" => Command::Setup,
        "test" => Command::Test,
        "attack" => {
            let icount = flags.switch("--icount");
            let (name, timeout) = suite_member(
                &mut flags,
                ATTACK_TIMEOUT_SECS,
                "attack needs a name, `benign` or --list",
            )?;
            Command::Attack {
                name,
                icount,
                timeout,
            }
        }
        "probe" => {
            let seed = match flags.value("--seed")? {
                None => None,
                Some(text) => match text.parse::<u64>() {
                    Ok(n) if n > 0 => Some(n),
                    _ => bail!("--seed needs a positive whole number, not {text:?}"),
                },
            };
            let (name, timeout) = suite_member(
                &mut flags,
                crate::probe::TIMEOUT_SECS,
                "probe needs a name, `all` or --list",
            )?;
            Command::Probe {
                name,
                timeout,
                seed,
            }
        }
        "ctl" => {
            let json = flags.switch("--json");
            let scenario = flags
                .value("--scenario")?
                .unwrap_or_else(|| DEFAULT_SCENARIO.to_string());
            let command = crate::ctl::CtlCommand::new(flags.positionals())?;
            Command::Ctl {
                scenario,
                command,
                json,
            }
        }
        "build" => Command::Build {
            scenario: flags.value("--scenario")?,
            plain_log: flags.switch("--plain-log"),
        },
        "run" => {
            if flags.switch("--list") {
                Command::List
            } else {
                let cmd = flags.value("--cmd")?;
                // A shell on a terminal (no `--cmd`) is the user's until they leave it.
                let interactive = cmd.is_none() && std::io::stdin().is_terminal();
                let timeout = match flags.value("--timeout")? {
                    None if interactive => None,
                    None => Some(DEFAULT_TIMEOUT_SECS),
                    Some(text) => match text.parse::<u64>() {
                        Ok(0) => None,
                        Ok(secs) => Some(secs),
                        Err(_) => bail!("--timeout wants a number of seconds, not `{text}`"),
                    },
                };
                let icount = flags.switch("--icount");
                let plain_log = flags.switch("--plain-log");
                let disk = flags.value("--disk")?;
                let no_dsm = flags.switch("--no-dsm");
                let policy = flags.value("--policy")?;
                if let Some(name) = &policy {
                    if spumone_abi::bootinfo::policy_flags(name).is_none() {
                        let names = spumone_abi::bootinfo::POLICIES;
                        let (last, rest) = names.split_last().expect("policies");
                        bail!("--policy wants {} or {last}, not `{name}`", rest.join(", "));
                    }
                }
                let dsm_pause = flags.switch("--dsm-pause");
                let plain = flags.switch("--plain");
                let resume_after = match flags.value("--resume-after")? {
                    None => None,
                    Some(text) => match text.parse::<u64>() {
                        Ok(secs) => Some(secs),
                        Err(_) => {
                            bail!("--resume-after wants a number of seconds, not `{text}`")
                        }
                    },
                };
                let scenario = flags
                    .positional()?
                    .unwrap_or_else(|| DEFAULT_SCENARIO.to_string());
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
                }
            }
        }
        "bench" => {
            let number = |text: Option<String>, name: &str| -> Result<Option<u64>> {
                match text {
                    None => Ok(None),
                    Some(t) => match t.parse::<u64>() {
                        Ok(n) => Ok(Some(n)),
                        Err(_) => bail!("{name} wants a whole number, not `{t}`"),
                    },
                }
            };
            let small = |value: Option<u64>, name: &str| -> Result<Option<u32>> {
                match value.map(u32::try_from) {
                    None => Ok(None),
                    Some(Ok(0)) | Some(Err(_)) => {
                        bail!("{name} must be 1 or more (and fit 32 bits)")
                    }
                    Some(Ok(n)) => Ok(Some(n)),
                }
            };
            let samples = small(number(flags.value("--samples")?, "--samples")?, "--samples")?;
            let period_us = small(
                number(flags.value("--period-us")?, "--period-us")?,
                "--period-us",
            )?;
            let timeout = number(flags.value("--timeout")?, "--timeout")?;
            let quick = flags.switch("--quick");
            let clock = match flags.value("--clock")?.as_deref() {
                None => None,
                Some("icount") => Some(true),
                Some("wall") => Some(false),
                Some(other) => bail!("--clock is icount or wall, not `{other}`"),
            };
            let dsm = match flags.value("--dsm")?.as_deref() {
                None => None,
                Some("on") => Some(true),
                Some("off") => Some(false),
                Some(other) => bail!("--dsm is on or off, not `{other}`"),
            };
            let only = flags.value("--only")?;
            let policy = flags.value("--policy")?;
            let load = flags.value("--load")?;
            let kbuild = flags.switch("--kbuild");
            let plugin = flags.switch("--plugin");
            let Some(name) = flags.positional()? else {
                bail!("bench needs a name: cargo xtask bench rtos-latency");
            };
            if !crate::bench::BENCHES.contains(&name.as_str()) {
                bail!(
                    "unknown bench `{name}` (known: {})",
                    crate::bench::BENCHES.join(", ")
                );
            }
            let latency_options = samples.is_some() || period_us.is_some();
            if name != "rtos-latency" && latency_options {
                bail!("--samples and --period-us are for bench rtos-latency");
            }
            if name != "dsm" && kbuild {
                bail!("--kbuild is for bench dsm");
            }
            if name != "rtos-latency" && plugin {
                bail!("--plugin is for bench rtos-latency");
            }
            if name != "kbuild" && (quick || dsm.is_some()) {
                bail!("--quick and --dsm are for bench kbuild");
            }
            if (name == "dsm" || name == "profile") && clock.is_some() {
                bail!("--clock is for bench kbuild, bench rtos-latency and bench disk");
            }
            if (name == "dsm" || name == "disk" || name == "profile") && policy.is_some() {
                bail!("--policy is for bench kbuild and bench rtos-latency");
            }
            if let Some(l) = &load {
                if name != "rtos-latency" {
                    bail!("--load is for bench rtos-latency");
                }
                if !crate::bench::LINUX_LOADS.contains(&l.as_str()) {
                    bail!(
                        "--load takes one of {}, not `{l}`",
                        crate::bench::LINUX_LOADS.join(", ")
                    );
                }
                if only.as_deref() == Some("rtos") {
                    bail!("--load is for the rows beside Linux: it does not go with --only rtos");
                }
            }
            let groups: &[&str] = match name.as_str() {
                "rtos-latency" => crate::bench::LATENCY_GROUPS,
                "kbuild" => &crate::kbuild::GROUPS,
                "disk" => &crate::diskbench::GROUPS,
                "profile" => crate::profile::LABELS,
                _ => &[],
            };
            match &only {
                Some(_) if groups.is_empty() => {
                    bail!("--only is for bench rtos-latency, bench kbuild and bench disk")
                }
                Some(group) if !groups.contains(&group.as_str()) => bail!(
                    "bench {name} --only takes one of {}, not `{group}`",
                    groups.join(", ")
                ),
                _ => {}
            }
            if let Some(p) = &policy {
                if !crate::bench::POLICIES.contains(&p.as_str()) {
                    bail!(
                        "--policy takes one of {}, not `{p}`",
                        crate::bench::POLICIES.join(", ")
                    );
                }
            }
            let demo = only.as_deref().is_none_or(|g| g == crate::bench::DEMO);
            if let (Some(p), Some(group)) = (&policy, only.as_deref()) {
                match crate::bench::policies_of(group) {
                    [] => bail!(
                        "--policy is for the shared runs: it does not go with --only {group}"
                    ),
                    allowed if !allowed.contains(&p.as_str()) => bail!(
                        "--only {group} runs under policy {} only (one core: nowhere to migrate), not `{p}`",
                        allowed.join(", ")
                    ),
                    _ => {}
                }
            }
            if dsm.is_some() && !demo {
                bail!("--dsm is for the demo runs: it does not go with --only shared");
            }
            Command::Bench {
                name,
                samples,
                period_us,
                timeout,
                quick,
                clock,
                dsm,
                kbuild,
                only,
                policy,
                load,
                plugin,
            }
        }
        "gdb" => {
            let plain_log = flags.switch("--plain-log");
            let Some(scenario) = flags.positional()? else {
                bail!("gdb needs a scenario: cargo xtask gdb SCENARIO");
            };
            Command::Gdb {
                scenario,
                plain_log,
            }
        }
        other => bail!("unknown command `{other}`"),
    };
    flags.finish()?;
    Ok(parsed)
}

/// The arguments of one command, consumed as they are recognised.
struct Flags {
    args: Vec<Option<String>>,
}

impl Flags {
    fn new(args: &[String]) -> Flags {
        Flags {
            args: args.iter().cloned().map(Some).collect(),
        }
    }

    fn switch(&mut self, name: &str) -> bool {
        let mut found = false;
        for slot in &mut self.args {
            if slot.as_deref() == Some(name) {
                *slot = None;
                found = true;
            }
        }
        found
    }

    /// `--name VALUE` or `--name=VALUE`.
    fn value(&mut self, name: &str) -> Result<Option<String>> {
        let prefix = format!("{name}=");
        let mut value = None;
        let mut i = 0;
        while i < self.args.len() {
            match self.args[i].as_deref() {
                Some(a) if a == name => {
                    self.args[i] = None;
                    match self.args.get_mut(i + 1).and_then(Option::take) {
                        Some(v) if !v.starts_with("--") => value = Some(v),
                        _ => bail!("{name} needs a value"),
                    }
                    i += 1;
                }
                Some(a) if a.starts_with(&prefix) => {
                    value = Some(a[prefix.len()..].to_string());
                    self.args[i] = None;
                }
                _ => {}
            }
            i += 1;
        }
        Ok(value)
    }

    /// The one positional argument, if any.
    fn positional(&mut self) -> Result<Option<String>> {
        let mut found = None;
        for slot in &mut self.args {
            if slot.as_deref().is_some_and(|a| !a.starts_with('-')) {
                if found.is_some() {
                    bail!("unexpected argument `{}`", slot.as_deref().unwrap_or(""));
                }
                found = slot.take();
            }
        }
        Ok(found)
    }

    /// Every positional argument left, in order.
    fn positionals(&mut self) -> Vec<String> {
        self.args
            .iter_mut()
            .filter(|slot| slot.as_deref().is_some_and(|a| !a.starts_with('-')))
            .filter_map(Option::take)
            .collect()
    }

    fn finish(self) -> Result<()> {
        match self.args.into_iter().flatten().next() {
            Some(extra) => bail!("unexpected argument `{extra}`"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Command> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse(&args)
    }

    #[test]
    fn run_defaults() {
        assert_eq!(
            parse_str("run").unwrap(),
            Command::Run {
                scenario: DEFAULT_SCENARIO.into(),
                timeout: Some(DEFAULT_TIMEOUT_SECS),
                icount: false,
                plain_log: false,
                cmd: None,
                disk: None,
                no_dsm: false,
                policy: None,
                dsm_pause: false,
                resume_after: None,
                plain: false,
            }
        );
    }

    #[test]
    fn run_with_a_command() {
        let args: Vec<String> = ["run", "linux-native", "--cmd", "echo hello; exit 7"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            parse(&args).unwrap(),
            Command::Run {
                scenario: "linux-native".into(),
                timeout: Some(DEFAULT_TIMEOUT_SECS),
                icount: false,
                plain_log: false,
                cmd: Some("echo hello; exit 7".into()),
                disk: None,
                no_dsm: false,
                policy: None,
                dsm_pause: false,
                resume_after: None,
                plain: false,
            }
        );
        assert!(parse_str("run linux-native --cmd").is_err());
        assert!(matches!(
            parse_str("run linux --disk img.ext4").unwrap(),
            Command::Run { disk: Some(d), .. } if d == "img.ext4"
        ));
        assert!(parse_str("run linux --disk").is_err());
        assert!(matches!(
            parse_str("run demo --no-dsm").unwrap(),
            Command::Run { no_dsm: true, ref scenario, .. } if scenario == "demo"
        ));
        assert!(matches!(
            parse_str("run shared --policy spumone").unwrap(),
            Command::Run { policy: Some(p), .. } if p == "spumone"
        ));
        let bad = parse_str("run shared --policy fast")
            .unwrap_err()
            .to_string();
        assert!(bad.contains("pinned, spumone, load or rotate"), "{bad}");
        assert!(matches!(
            parse_str("run shared --policy rotate").unwrap(),
            Command::Run { policy: Some(p), .. } if p == "rotate"
        ));
        assert!(usage().contains("--cmd") && usage().contains("--policy"));
        assert!(matches!(
            parse_str("run demo --dsm-pause --resume-after 3").unwrap(),
            Command::Run {
                dsm_pause: true,
                resume_after: Some(3),
                ..
            }
        ));
        assert!(parse_str("run demo --resume-after soon").is_err());
        assert!(usage().contains("--cmd"));
        assert!(usage().contains("--resume-after"));
    }

    #[test]
    fn run_with_every_option_in_any_order() {
        let expected = Command::Run {
            scenario: "rtos-native".into(),
            timeout: Some(30),
            icount: true,
            plain_log: true,
            cmd: None,
            disk: None,
            no_dsm: false,
            policy: None,
            dsm_pause: false,
            resume_after: None,
            plain: false,
        };
        assert_eq!(
            parse_str("run rtos-native --timeout 30 --icount --plain-log").unwrap(),
            expected
        );
        assert_eq!(
            parse_str("run --icount --timeout=30 --plain-log rtos-native").unwrap(),
            expected
        );
    }

    #[test]
    fn plain_keeps_the_stream_on_a_terminal() {
        assert!(matches!(
            parse_str("run demo --plain").unwrap(),
            Command::Run { plain: true, plain_log: false, ref scenario, .. } if scenario == "demo"
        ));
        // `--plain-log` is the build's switch, not this one.
        assert!(matches!(
            parse_str("run --plain-log").unwrap(),
            Command::Run {
                plain: false,
                plain_log: true,
                ..
            }
        ));
        assert!(matches!(
            parse_str("run").unwrap(),
            Command::Run { plain: false, .. }
        ));
        assert!(usage().contains("--plain ") && usage().contains("Ctrl-] q leaves"));
    }

    #[test]
    fn zero_timeout_waits_for_ever() {
        assert!(matches!(
            parse_str("run --timeout 0").unwrap(),
            Command::Run { timeout: None, .. }
        ));
    }

    #[test]
    fn list_and_help() {
        assert_eq!(parse_str("run --list").unwrap(), Command::List);
        assert_eq!(parse_str("").unwrap(), Command::Help);
        assert_eq!(parse_str("run --help").unwrap(), Command::Help);
        assert!(
            usage().contains("124"),
            "the help documents the timeout status"
        );
    }

    #[test]
    fn build_scenario_is_optional() {
        assert_eq!(
            parse_str("attack hook_syscall --icount").unwrap(),
            Command::Attack {
                name: Some("hook_syscall".into()),
                icount: true,
                timeout: ATTACK_TIMEOUT_SECS
            }
        );
        assert_eq!(
            parse_str("attack --list").unwrap(),
            Command::Attack {
                name: None,
                icount: false,
                timeout: ATTACK_TIMEOUT_SECS
            }
        );
        assert!(parse_str("attack").is_err());
        assert_eq!(
            parse_str("probe all --seed 9").unwrap(),
            Command::Probe {
                name: Some("all".into()),
                timeout: crate::probe::TIMEOUT_SECS,
                seed: Some(9)
            }
        );
        assert_eq!(
            parse_str("probe --list").unwrap(),
            Command::Probe {
                name: None,
                timeout: crate::probe::TIMEOUT_SECS,
                seed: None
            }
        );
        assert!(parse_str("probe").is_err());
        assert!(parse_str("probe gic --seed 0").is_err());
        assert!(parse_str("attack benign --timeout 0").is_err());
        assert_eq!(
            parse_str("build").unwrap(),
            Command::Build {
                scenario: None,
                plain_log: false
            }
        );
        assert_eq!(
            parse_str("build --scenario rtos --plain-log").unwrap(),
            Command::Build {
                scenario: Some("rtos".into()),
                plain_log: true
            }
        );
    }

    #[test]
    fn bench_dsm_takes_kbuild() {
        assert!(matches!(
            parse_str("bench dsm --kbuild").unwrap(),
            Command::Bench { ref name, kbuild: true, .. } if name == "dsm"
        ));
        assert!(usage().contains("bench dsm"));
    }

    #[test]
    fn mistakes_are_errors() {
        for bad in [
            "frobnicate",
            "run --timeout",
            "run --timeout soon",
            "run a b",
            "run --bogus",
            "build --scenario",
            "gdb",
            "setup extra",
            "test --now",
        ] {
            assert!(parse_str(bad).is_err(), "`{bad}` should be rejected");
        }
    }

    #[test]
    fn bench_options() {
        assert_eq!(
            parse_str("bench rtos-latency").unwrap(),
            Command::Bench {
                name: "rtos-latency".into(),
                samples: None,
                period_us: None,
                timeout: None,
                quick: false,
                clock: None,
                dsm: None,
                kbuild: false,
                only: None,
                policy: None,
                load: None,
                plugin: false,
            }
        );
        assert_eq!(
            parse_str("bench --samples 2000 rtos-latency --period-us=500 --timeout 0").unwrap(),
            Command::Bench {
                name: "rtos-latency".into(),
                samples: Some(2000),
                period_us: Some(500),
                timeout: Some(0),
                quick: false,
                clock: None,
                dsm: None,
                kbuild: false,
                only: None,
                policy: None,
                load: None,
                plugin: false,
            }
        );
        assert!(matches!(
            parse_str("bench rtos-latency --only shared").unwrap(),
            Command::Bench { only: Some(group), .. } if group == "shared"
        ));
        assert!(matches!(
            parse_str(
                "bench rtos-latency --only shared --policy spumone --load linux-busy --clock icount"
            )
            .unwrap(),
            Command::Bench { only: Some(group), policy: Some(p), load: Some(l), clock: Some(true), .. }
                if group == "shared" && p == "spumone" && l == "linux-busy"
        ));
        assert!(matches!(
            parse_str("bench rtos-latency --only shared-2 --policy load --samples 100000").unwrap(),
            Command::Bench { only: Some(group), policy: Some(p), samples: Some(100_000), .. }
                if group == "shared-2" && p == "load"
        ));
        assert!(matches!(
            parse_str("bench rtos-latency --only shared-1 --policy pinned").unwrap(),
            Command::Bench { only: Some(group), .. } if group == "shared-1"
        ));
        // One core: nowhere to migrate.
        let err = parse_str("bench rtos-latency --only shared-1 --policy spumone").unwrap_err();
        assert!(err.to_string().contains("policy pinned only"), "{err}");
        assert!(matches!(
            parse_str("bench kbuild --only shared --policy spumone").unwrap(),
            Command::Bench { only: Some(group), policy: Some(p), .. }
                if group == "shared" && p == "spumone"
        ));
        for bad in [
            "bench rtos-latency --only everything",
            "bench kbuild --only rtos",
            "bench kbuild --policy fast",
            "bench kbuild --only demo --policy load",
            "bench kbuild --only shared --dsm on",
            "bench kbuild --only shared-1",
            "bench rtos-latency --only demo --policy pinned",
            "bench rtos-latency --only rtos --policy pinned",
            "bench rtos-latency --only rtos --load linux-busy",
            "bench rtos-latency --load busy",
            "bench kbuild --load linux-busy",
            "bench dsm --clock icount",
        ] {
            assert!(parse_str(bad).is_err(), "`{bad}` should be rejected");
        }
        assert_eq!(
            parse_str("bench kbuild --quick --timeout 900").unwrap(),
            Command::Bench {
                name: "kbuild".into(),
                samples: None,
                period_us: None,
                timeout: Some(900),
                quick: true,
                clock: None,
                dsm: None,
                kbuild: false,
                only: None,
                policy: None,
                load: None,
                plugin: false,
            }
        );
        assert!(matches!(
            parse_str("bench kbuild --clock icount --dsm off").unwrap(),
            Command::Bench {
                clock: Some(true),
                dsm: Some(false),
                ..
            }
        ));
        for bad in [
            "bench",
            "bench nope",
            "bench rtos-latency --samples",
            "bench kbuild --kbuild",
            "bench dsm --quick",
            "bench dsm --only demo",
            "bench rtos-latency --samples 0",
            "bench rtos-latency --samples many",
            "bench rtos-latency --period-us 99999999999",
            "bench rtos-latency --icount",
            "bench kbuild --plugin",
            "bench rtos-latency --quick",
            "bench kbuild --samples 10",
            "bench kbuild --clock cpu",
            "bench kbuild --dsm maybe",
            "bench rtos-latency --dsm off",
        ] {
            assert!(parse_str(bad).is_err(), "`{bad}` should be rejected");
        }
    }

    #[test]
    fn bench_disk_takes_a_clock_and_a_group() {
        assert!(matches!(
            parse_str("bench disk").unwrap(),
            Command::Bench { ref name, clock: None, only: None, .. } if name == "disk"
        ));
        assert!(matches!(
            parse_str("bench disk --clock icount --only linux --timeout 600").unwrap(),
            Command::Bench { clock: Some(true), only: Some(g), timeout: Some(600), .. }
                if g == "linux"
        ));
        assert!(matches!(
            parse_str("bench disk --only demo --clock wall").unwrap(),
            Command::Bench { clock: Some(false), only: Some(g), .. } if g == "demo"
        ));
        for bad in [
            "bench disk --only shared",
            "bench disk --only linux-native",
            "bench disk --policy pinned",
            "bench disk --quick",
            "bench disk --dsm off",
            "bench disk --samples 10",
            "bench disk --load linux-busy",
            "bench disk --kbuild",
            "bench disk --clock cpu",
        ] {
            assert!(parse_str(bad).is_err(), "`{bad}` should be rejected");
        }
        assert!(usage().contains("bench disk [--clock icount|wall] [--only linux|demo]"));
    }

    #[test]
    fn ctl_takes_a_command_its_arguments_a_scenario_and_json() {
        let ctl = |line: &str| match parse_str(line).unwrap() {
            Command::Ctl {
                scenario,
                command,
                json,
            } => (scenario, command.line(), json),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            ctl("ctl status"),
            (DEFAULT_SCENARIO.to_string(), "status".to_string(), false)
        );
        assert_eq!(
            ctl("ctl --json pause linux --scenario shared"),
            ("shared".to_string(), "pause linux".to_string(), true)
        );
        assert_eq!(
            ctl("ctl --scenario=linux events"),
            ("linux".to_string(), "events".to_string(), false)
        );
        assert_eq!(ctl("ctl migrate linux 2 0").1, "migrate linux 2 0");
        for bad in [
            "ctl",
            "ctl frobnicate",
            "ctl pause",
            "ctl status --bogus",
            "ctl --scenario",
            "ctl resume linux rtos",
        ] {
            assert!(parse_str(bad).is_err(), "`{bad}` should be rejected");
        }
        assert!(usage().contains("ctl [--scenario NAME] [--json] COMMAND"));
    }

    #[test]
    fn gdb_takes_a_scenario() {
        assert_eq!(
            parse_str("gdb rtos").unwrap(),
            Command::Gdb {
                scenario: "rtos".into(),
                plain_log: false
            }
        );
    }
}
