//! `cargo xtask run`: boots a scenario on QEMU and demultiplexes what it prints.

use anyhow::{Context, Result};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::ctl::{self, Channel};
use crate::defmt_log::DefmtLog;
use crate::demux::{Demux, Line, Mode, Source};
use crate::event::Event;
use crate::firmware::{self, BuildOptions, Firmware, LatencySettings};
use crate::linux;
use crate::monitor::{self, Qmp};
use crate::paths::{self, logs_dir};
use crate::qemu::{self, Disk, QemuOptions};
use crate::scenario::{Kind, Scenario};
use crate::setup;
use crate::tui::{Keys, Origin, Tui};
use spumone_abi::mgmt::Answer;
use spumone_abi::operator::{PAUSE_SEQUENCE, RESUME_SEQUENCE};

/// Exit status of a run that hit its timeout (as `timeout(1)` uses).
pub const TIMEOUT_EXIT: i32 = 124;
/// Exit status of a run stopped by Ctrl-C.
pub const INTERRUPTED_EXIT: i32 = 130;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub scenario: &'static Scenario,
    /// `None` runs until the machine powers off.
    pub timeout: Option<Duration>,
    pub icount: bool,
    pub plain_log: bool,
    /// Print each prefixed line as it arrives.
    pub echo: bool,
    /// Boot the images already in `target/images/<scenario>/` instead of building.
    pub prebuilt: bool,
    /// The RTOS latency probe's settings, when building.
    pub latency: LatencySettings,
    /// A shell command the Linux guest runs before powering off (`--cmd`).
    pub cmd: Option<String>,
    /// Forward this process's stdin to the guest console (native scenarios only).
    pub forward_stdin: bool,
    /// With `forward_stdin` and `echo` on a terminal: give it the split screen of
    /// [`crate::tui`] instead of the prefixed stream.
    pub tui: bool,
    /// A disk image for the Linux guest (`--disk`).
    pub disk: Option<Disk>,
    /// Scratch disks on the PCIe root bus (the isolation probes').
    pub pci_disks: Vec<qemu::PciDisk>,
    /// Leave the D-System Monitor off (`--no-dsm`).
    pub no_dsm: bool,
    /// The Linux partitions' migration policy for this run, in place of the config's
    /// (`--policy`).
    pub policy: Option<String>,
    /// The DSM pauses Linux on a finding, whatever the config's policy (`--dsm-pause`).
    pub dsm_pause: bool,
    /// Type the operator's resume command this long after the DSM paused Linux
    /// (`--resume-after SECS`).
    pub resume_after_pause: Option<Duration>,
    /// Operator pause-and-resume cycles typed on the console, a stress test of the DSM's
    /// hold and resume (with `resume_after_pause` for each resume): the first pause after
    /// the DSM's first pass, each next one [`PAUSE_GAP`] after a resume; after the last
    /// resume, [`PAUSE_CYCLES_DONE`] and a newline, for Linux to read.
    pub pause_cycles: u32,
    /// Load the path-length plugin (`--plugin`): its markers come from the images' ELF
    /// symbols, and its report comes back in [`RunOutcome::pathlen`].
    pub pathlen: bool,
    /// With `pathlen`: when a line first contains one of these texts, keep the plugin's
    /// report as it is then ([`RunOutcome::pathlen_snapshots`]). The plugin rewrites it every
    /// second of host time, so a snapshot is at most that old.
    pub pathlen_snapshots: Vec<String>,
}

/// How long after a resume the next operator pause of a cycle is typed.
pub const PAUSE_GAP: Duration = Duration::from_millis(300);
/// The console line typed after the last pause-and-resume cycle.
pub const PAUSE_CYCLES_DONE: &str = "pause-cycles-done";

impl RunOptions {
    pub fn new(scenario: &'static Scenario) -> RunOptions {
        RunOptions {
            scenario,
            timeout: Some(Duration::from_secs(crate::scenario::DEFAULT_TIMEOUT_SECS)),
            icount: false,
            plain_log: false,
            echo: true,
            prebuilt: false,
            latency: LatencySettings::DEFAULT,
            cmd: None,
            no_dsm: false,
            policy: None,
            dsm_pause: false,
            resume_after_pause: None,
            pause_cycles: 0,
            pathlen: false,
            pathlen_snapshots: Vec::new(),
            forward_stdin: false,
            tui: false,
            disk: None,
            pci_disks: Vec::new(),
        }
    }
}

/// How QEMU ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// QEMU exited by itself; `None` if a signal ended it.
    Exited(Option<i32>),
    /// The timeout passed and QEMU was killed.
    TimedOut,
    /// The Linux partition stopped while the RTOS kept running: xtask ended the run once the
    /// RTOS had printed after the stop (`rtos_alive`), or after [`LINGER`] without a word.
    LinuxStopped { rtos_alive: bool },
    /// The person left the interactive screen ([`crate::tui::HOW_TO_LEAVE`]) and xtask stopped
    /// QEMU.
    Left,
}

/// How long a run waits for the RTOS to show it still runs after Linux stopped.
pub const LINGER: Duration = Duration::from_secs(20);

/// What the run amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The machine powered off cleanly (spumone reported `shutdown code=0`, or a native guest
    /// made QEMU exit with status 0).
    PoweredOff,
    /// spumone shut down with a non-zero code.
    ShutdownCode(i64),
    TimedOut,
    /// QEMU was stopped by Ctrl-C.
    Interrupted,
    /// QEMU exited with a failure status, or by a signal.
    QemuFailed(Option<i32>),
    /// QEMU exited cleanly but spumone never reported a shutdown.
    NoShutdownEvent,
    /// Linux stopped and the RTOS printed nothing for [`LINGER`] afterwards.
    RtosSilent,
    /// The person left the interactive screen: what they asked for, so not a failure.
    Left,
}

#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub scenario: &'static Scenario,
    /// Every line in order, prefixed by its source (`[hv] `, `[rtos] `, `[raw] `, `[qemu] `).
    pub lines: Vec<String>,
    /// When each of `lines` arrived, from QEMU's start (host time).
    pub line_times: Vec<Duration>,
    pub events: Vec<Event>,
    pub ending: Ending,
    pub timeout: Option<Duration>,
    /// Whether the stream is spumone's framing (false: native run or plain-log build).
    pub framed: bool,
    /// From QEMU's start to its exit.
    pub elapsed: Duration,
    /// From QEMU's start to its first serial byte.
    pub first_output: Option<Duration>,
    /// From QEMU's start to spumone's shutdown event.
    pub shutdown_at: Option<Duration>,
    pub log_dir: PathBuf,
    pub command_line: String,
    /// The path-length plugin's report, when the run loaded it ([`RunOptions::pathlen`]).
    pub pathlen: Option<crate::pathlen::Report>,
    /// The report as it was at each of [`RunOptions::pathlen_snapshots`]'s lines (`None`
    /// where the line never came or no report was written yet).
    pub pathlen_snapshots: Vec<Option<crate::pathlen::Report>>,
}

impl RunOutcome {
    /// The code of spumone's `shutdown` event, if it sent one.
    pub fn shutdown_code(&self) -> Option<i64> {
        self.events.iter().find_map(|e| match e {
            Event::Shutdown { code } => Some(*code),
            _ => None,
        })
    }

    /// The exit code of the Linux partition's `partition-stopped` event, if it stopped.
    pub fn linux_stop_code(&self) -> Option<i64> {
        self.events.iter().find_map(|e| match e {
            Event::PartitionStopped { name, code } if name == linux::CONSOLE => Some(*code),
            _ => None,
        })
    }

    pub fn verdict(&self) -> Verdict {
        let interrupted = self
            .lines
            .iter()
            .any(|l| l.starts_with("[qemu] ") && l.contains("terminating on signal"));
        match self.ending {
            Ending::TimedOut => Verdict::TimedOut,
            Ending::Left => Verdict::Left,
            _ if interrupted => Verdict::Interrupted,
            Ending::LinuxStopped { rtos_alive: true } => match self.linux_stop_code() {
                Some(0) | None => Verdict::PoweredOff,
                Some(code) => Verdict::ShutdownCode(code),
            },
            Ending::LinuxStopped { rtos_alive: false } => Verdict::RtosSilent,
            Ending::Exited(Some(0)) => {
                let hypervisor = matches!(self.scenario.kind, Kind::Hypervisor { .. });
                match self.shutdown_code() {
                    Some(0) => Verdict::PoweredOff,
                    Some(code) => Verdict::ShutdownCode(code),
                    None if hypervisor => Verdict::NoShutdownEvent,
                    None => Verdict::PoweredOff,
                }
            }
            Ending::Exited(status) => Verdict::QemuFailed(status),
        }
    }

    /// The process exit status `cargo xtask run` reports.
    pub fn exit_code(&self) -> i32 {
        match self.verdict() {
            Verdict::PoweredOff | Verdict::Left => 0,
            Verdict::ShutdownCode(code) if (1..=255).contains(&code) => code as i32,
            Verdict::ShutdownCode(_) => 1,
            Verdict::TimedOut => TIMEOUT_EXIT,
            Verdict::Interrupted => INTERRUPTED_EXIT,
            Verdict::QemuFailed(_) | Verdict::NoShutdownEvent | Verdict::RtosSilent => 1,
        }
    }

    /// One line saying why the run failed, or `None` when it succeeded.
    pub fn failure(&self) -> Option<String> {
        let name = self.scenario.name;
        let all_log = paths::display(&self.log_dir.join("all.log"));
        Some(match self.verdict() {
            Verdict::PoweredOff | Verdict::Left => return None,
            Verdict::ShutdownCode(code) => {
                format!("scenario {name} shut down with code {code} (log in {all_log})")
            }
            Verdict::TimedOut => format!(
                "scenario {name} did not power off within {} s (last output in {all_log})",
                self.timeout.map_or(0, |t| t.as_secs())
            ),
            Verdict::Interrupted => format!("scenario {name} interrupted (log in {all_log})"),
            Verdict::QemuFailed(Some(status)) => {
                format!("QEMU exited with status {status} in scenario {name} (log in {all_log})")
            }
            Verdict::QemuFailed(None) => {
                format!("QEMU was killed by a signal in scenario {name} (log in {all_log})")
            }
            Verdict::NoShutdownEvent => format!(
                "QEMU exited but spumone reported no shutdown in scenario {name} (log in {all_log})"
            ),
            Verdict::RtosSilent => format!(
                "Linux stopped and then the RTOS printed nothing for {} s in scenario {name} \
                 (log in {all_log})",
                LINGER.as_secs()
            ),
        })
    }

    /// The last `n` lines, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let start = self.lines.len().saturating_sub(n);
        self.lines[start..].join("\n")
    }

    /// The exit status the Linux guest reported for `--cmd` (its last marker line).
    pub fn command_status(&self) -> Option<i32> {
        let prefix = format!("[{}] ", linux::CONSOLE);
        linux::command_status(
            self.lines
                .iter()
                .filter_map(|l| l.strip_prefix(prefix.as_str())),
        )
    }

    /// The lines the guest console printed between `/init`'s ready line and the status marker:
    /// the `--cmd` command's output.
    pub fn command_output(&self) -> Vec<&str> {
        let prefix = format!("[{}] ", linux::CONSOLE);
        self.lines
            .iter()
            .filter_map(|l| l.strip_prefix(prefix.as_str()))
            .skip_while(|l| !l.starts_with(linux::READY_LINE))
            .skip(1)
            .take_while(|l| !l.starts_with(linux::STATUS_MARKER))
            .collect()
    }

    /// Whether some line contains `needle`.
    pub fn has_line(&self, needle: &str) -> bool {
        self.lines.iter().any(|l| l.contains(needle))
    }
}

/// Builds (unless `prebuilt`) and boots a scenario, returning what it printed and how it ended.
/// A run that fails or times out is still `Ok`: see [`RunOutcome::verdict`].
pub fn run_scenario(options: &RunOptions) -> Result<RunOutcome> {
    setup::ensure_base(false)?;
    let firmware = if options.prebuilt {
        firmware::prebuilt(options.scenario)?
    } else {
        firmware::build(
            options.scenario,
            &BuildOptions {
                plain_log: options.plain_log,
                latency: options.latency,
            },
        )?
    };
    launch(&firmware, options)
}

/// What the reader threads report.
enum Msg {
    Serial(Vec<u8>),
    SerialEnd,
    Stderr(String),
    StderrEnd,
    /// The person typed the way out of the interactive screen.
    Quit,
}

/// Keeps the plugin's report as it is now if `text` holds a snapshot marker not seen yet.
fn snapshot_report(
    options: &RunOptions,
    firmware: &Firmware,
    text: &str,
    outcome: &mut RunOutcome,
) {
    let markers = &options.pathlen_snapshots;
    outcome.pathlen_snapshots.resize(markers.len(), None);
    for (i, marker) in markers.iter().enumerate() {
        if outcome.pathlen_snapshots[i].is_none() && text.contains(marker.as_str()) {
            let report = logs_dir(firmware.scenario.name).join(crate::pathlen::REPORT);
            outcome.pathlen_snapshots[i] = crate::pathlen::read_report(&report).ok();
        }
    }
}

/// Boots already-built firmware.
pub fn launch(firmware: &Firmware, options: &RunOptions) -> Result<RunOutcome> {
    if let Some(disk) = &options.disk {
        if !disk.path.is_file() {
            anyhow::bail!(
                "disk image {} does not exist (or is not a file)",
                paths::display(&disk.path)
            );
        }
    }
    let report = logs_dir(firmware.scenario.name).join(crate::pathlen::REPORT);
    let plugin = if options.pathlen {
        fs::create_dir_all(logs_dir(firmware.scenario.name))?;
        // A report left by an earlier run must not pass for this one's.
        let _ = fs::remove_file(&report);
        Some(crate::pathlen::prepare(firmware, &report)?)
    } else {
        None
    };
    let qemu_options = QemuOptions {
        icount: options.icount,
        gdb: false,
        disk: options.disk.clone(),
        pci_disks: options.pci_disks.clone(),
        plugin,
    };
    let flags = boot_flags(options, firmware)?;
    let firmware = with_boot_flags(firmware, options.cmd.as_deref(), flags)?;
    let mut outcome = supervise(&firmware, options, &qemu_options, None)?;
    if options.pathlen {
        let read = crate::pathlen::read_report(&report).with_context(|| {
            format!(
                "the path-length plugin left no report (QEMU's lines: {})",
                paths::display(&outcome.log_dir.join("all.log"))
            )
        })?;
        outcome.pathlen = Some(read);
    }
    Ok(outcome)
}

/// `firmware` with `cmd` passed on the Linux kernel command line (quietly: the kernel's log
/// stays out of the command's output), and with the DSM left off when `no_dsm`.
pub fn with_command(firmware: &Firmware, cmd: Option<&str>, no_dsm: bool) -> Result<Firmware> {
    let flags = if no_dsm {
        spumone_abi::bootinfo::FLAG_NO_DSM
    } else {
        0
    };
    with_boot_flags(firmware, cmd, flags)
}

/// The boot-info `flags` of a run's switches: the DSM's, and the migration policy (checked
/// against the scenario).
pub fn boot_flags(options: &RunOptions, firmware: &Firmware) -> Result<u32> {
    use spumone_abi::bootinfo::{FLAG_DSM_PAUSE, FLAG_NO_DSM};
    let mut flags = 0;
    if options.no_dsm {
        flags |= FLAG_NO_DSM;
    }
    if options.dsm_pause {
        flags |= FLAG_DSM_PAUSE;
    }
    if let Some(name) = &options.policy {
        flags |= policy_flags(name, firmware)?;
    }
    Ok(flags)
}

/// Like [`with_command`], with any boot-info `flags` (`FLAG_*`).
pub fn with_boot_flags(firmware: &Firmware, cmd: Option<&str>, flags: u32) -> Result<Firmware> {
    let mut firmware = firmware.clone();
    if flags != 0 && firmware.boot_info.is_none() {
        anyhow::bail!(
            "--no-dsm / --dsm-pause: scenario {} runs no Linux under spumone, so it has no DSM",
            firmware.scenario.name
        );
    }
    if let Some(info) = firmware
        .boot_info
        .as_ref()
        .filter(|_| cmd.is_some() || flags != 0)
    {
        let extra = match cmd {
            Some(cmd) => format!("quiet {}", linux::cmd_param(cmd)?),
            None => String::new(),
        };
        let info = info.with_extra(&extra, flags)?;
        for (path, addr) in firmware.raw_loads.iter_mut() {
            if *addr == spumone_abi::bootinfo::ADDR {
                path.clone_from(&info.path);
            }
        }
        firmware.boot_info = Some(info);
        return Ok(firmware);
    }
    if let Some(cmd) = cmd {
        let Some(append) = &firmware.append else {
            anyhow::bail!(
                "--cmd runs a command in Linux; scenario {} boots no Linux kernel directly",
                firmware.scenario.name
            );
        };
        firmware.append = Some(format!("{append} quiet {}", linux::cmd_param(cmd)?));
    }
    Ok(firmware)
}

/// The boot-info bits for `--policy name`, refused for an unknown name or a scenario with no
/// Linux under spumone.
fn policy_flags(name: &str, firmware: &Firmware) -> Result<u32> {
    use spumone_abi::bootinfo::{self, POLICIES};
    let Some(flags) = bootinfo::policy_flags(name) else {
        anyhow::bail!(
            "--policy {name:?} is not one of {}",
            POLICIES.map(|p| format!("{p:?}")).join(", ")
        );
    };
    if firmware.boot_info.is_none() {
        anyhow::bail!(
            "--policy: scenario {} runs no Linux under spumone, so no vCPU can migrate",
            firmware.scenario.name
        );
    }
    Ok(flags)
}

/// Runs QEMU to the end, feeding its output through the demux into the logs (and the terminal
/// when `options.echo`). With `qemu_options.gdb`, QEMU gets its own process group so Ctrl-C in
/// the debugger does not reach it, and its process id is sent on `started`.
pub(crate) fn supervise(
    firmware: &Firmware,
    options: &RunOptions,
    qemu_options: &QemuOptions,
    started_pid: Option<mpsc::Sender<u32>>,
) -> Result<RunOutcome> {
    let mode = if matches!(firmware.scenario.kind, Kind::Native { .. }) {
        Mode::Native
    } else if firmware.plain_log {
        Mode::PlainLog
    } else {
        Mode::Framed
    };
    let defmt = match (&firmware.hv_elf, mode) {
        (Some(elf), Mode::Framed) => load_defmt(elf)?,
        _ => None,
    };
    let mut demux = Demux::new(mode, firmware.consoles.clone(), defmt);
    let linux_console = firmware.consoles.iter().position(|c| c == linux::CONSOLE);
    let rtos_console = firmware
        .consoles
        .iter()
        .position(|c| format!("[{c}]") == crate::bench::RTOS_CONSOLE);
    let log_dir = logs_dir(firmware.scenario.name);
    let mut logs = Logs::create(&log_dir, &firmware.consoles)?;

    let mut args = qemu::args(firmware, qemu_options);
    let command_line = qemu::command_line(&args);
    // Not in the command line shown: the socket is this run's own.
    let qmp = Qmp::new();
    args.extend(qmp.args().map(Into::into));
    // spumone passes input to a Linux partition's emulated console.
    let forward = options.forward_stdin && (mode == Mode::Native || firmware.boot_info.is_some());
    // On a terminal, the split screen; or the console shown as it comes (prompts have no
    // newline yet) amid the other sources' prefixed lines.
    let mut screen = if forward && options.echo && options.tui && linux_console.is_some() {
        Tui::enter(
            firmware.scenario.name,
            &firmware.consoles,
            &paths::display(&log_dir),
            firmware.boot_info.is_some(),
        )
    } else {
        None
    };
    let raw_terminal = if forward && options.echo && screen.is_none() {
        RawTerminal::enter()
    } else {
        None
    };
    if let Some(n) = linux_console.filter(|_| screen.is_some() || raw_terminal.is_some()) {
        demux.tap(Source::Partition(n));
    }
    let started = Instant::now();
    let resume_after = options.resume_after_pause.filter(|_| !forward);
    let cycles = if forward { 0 } else { options.pause_cycles };
    let mut cycles_left = cycles;
    let mut cycles_started = false;
    let channel = ctl_channel(firmware, mode);
    let channel_open = channel == Channel::Open;
    let typed = forward || resume_after.is_some() || cycles > 0 || channel_open;
    let mut child = spawn_qemu(&args, qemu_options.gdb, typed)?;
    // Kept open for the whole run (a closed console input is not what an operator does).
    let console_in = Arc::new(Mutex::new(child.stdin.take()));
    if forward && screen.is_none() {
        forward_stdin(&console_in);
    }
    // `cargo xtask ctl` reaches the run through this socket while it lasts.
    let rtos = rtos_console.map(|n| (n, firmware.consoles[n].clone()));
    let (ctl, ctl_hint) = ctl::Server::start(
        &ctl::socket_path(firmware.scenario.name),
        Arc::clone(&console_in),
        channel,
        rtos,
    );
    if let Some(tx) = started_pid {
        let _ = tx.send(child.id());
    }
    let (tx, rx) = mpsc::channel();
    if screen.is_some() {
        forward_keys(&console_in, tx.clone());
    }
    spawn_readers(&mut child, tx);

    let mut outcome = RunOutcome {
        scenario: firmware.scenario,
        lines: Vec::new(),
        line_times: Vec::new(),
        events: Vec::new(),
        ending: Ending::Exited(None),
        timeout: options.timeout,
        framed: mode == Mode::Framed,
        elapsed: Duration::ZERO,
        first_output: None,
        shutdown_at: None,
        log_dir: log_dir.clone(),
        command_line,
        pathlen: None,
        pathlen_snapshots: Vec::new(),
    };
    let mut deadline = options.timeout.map(|t| started + t);
    // Under spumone, when Linux stops beside an RTOS, the machine keeps running: the run ends
    // at the RTOS's next line (a round's `latency` line, not its histogram before it), which
    // shows it survived.
    let lingers = mode == Mode::Framed
        && rtos_console.is_some()
        && firmware.consoles.iter().any(|c| c == linux::CONSOLE);
    let mut linux_stopped = false;
    let mut linger_deadline = false;
    let mut ended = None;
    let mut timed_out = false;
    let mut open_streams = 2;
    // Named only where spumone serves the channel: a run without it keeps only its guests'
    // and spumone's lines (the socket still answers `ctl` with the reason).
    let hint = channel_open.then_some(Line {
        source: Source::Passthrough,
        text: ctl_hint,
        event: None,
        answer: None,
    });
    let mut fresh: Vec<Line> = hint.into_iter().collect();
    while open_streams > 0 {
        let wait = match deadline {
            Some(_) if timed_out || ended.is_some() => Duration::from_secs(5),
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(3600),
        };
        // The screen is redrawn on a tick too: for a resized terminal, and for a frame held
        // back by the frame rate.
        let waited_until = Instant::now() + wait;
        let tick = if screen.is_some() { SCREEN_TICK } else { wait };
        let msg = match rx.recv_timeout(wait.min(tick)) {
            Ok(msg) => msg,
            Err(RecvTimeoutError::Timeout) if Instant::now() < waited_until => {
                if let Some(screen) = screen.as_mut() {
                    screen.draw();
                }
                continue;
            }
            Err(RecvTimeoutError::Timeout) if linger_deadline && ended.is_none() => {
                ended = Some(Ending::LinuxStopped { rtos_alive: false });
                fresh.extend(stalled_cpus(&qmp, &log_dir, firmware));
                let _ = child.kill();
                continue;
            }
            Err(RecvTimeoutError::Timeout) if ended.is_some() => break,
            Err(RecvTimeoutError::Timeout) if deadline.is_some() && !timed_out => {
                timed_out = true;
                fresh.extend(stalled_cpus(&qmp, &log_dir, firmware));
                // Killing closes QEMU's pipes, which ends the loop.
                let _ = child.kill();
                continue;
            }
            Err(RecvTimeoutError::Timeout) if timed_out => break,
            // No deadline: silence is fine, keep waiting.
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        match msg {
            Msg::Serial(bytes) => {
                outcome
                    .first_output
                    .get_or_insert_with(|| started.elapsed());
                logs.serial(&bytes);
                demux.feed(&bytes, &mut fresh);
                let tapped = demux.take_tapped();
                if let Some(screen) = screen.as_mut() {
                    screen.console(&tapped);
                    // Answered here, the terminal's own answer cannot leak into Linux's input.
                    let _ = write_console(&console_in, &screen.replies());
                } else if raw_terminal.is_some() {
                    // Framed, only Linux's console is shown raw; the plain streams are text.
                    let raw = if mode == Mode::Framed {
                        &tapped
                    } else {
                        &bytes
                    };
                    let mut out = io::stdout().lock();
                    let _ = out.write_all(raw);
                    let _ = out.flush();
                }
            }
            Msg::SerialEnd => {
                open_streams -= 1;
                demux.flush(&mut fresh);
            }
            Msg::Stderr(text) => fresh.push(Line {
                source: Source::Passthrough,
                text: format!("[qemu] {text}"),
                event: None,
                answer: None,
            }),
            Msg::StderrEnd => open_streams -= 1,
            Msg::Quit => {
                ended.get_or_insert(Ending::Left);
                // Killing closes QEMU's pipes, which ends the loop.
                let _ = child.kill();
            }
        }
        for line in fresh.drain(..) {
            if let Some(ctl) = &ctl {
                ctl.line(&line);
            }
            if cycles_left > 0 && !cycles_started && line.text.contains("dsm pass ") {
                cycles_started = true;
                type_on_console(&console_in, PAUSE_GAP, PAUSE_SEQUENCE.to_vec());
            }
            if let Some(event) = &line.event {
                if matches!(event, Event::Shutdown { .. }) {
                    outcome.shutdown_at.get_or_insert_with(|| started.elapsed());
                }
                if let (Some(after), Event::PartitionPaused { .. }) = (resume_after, event) {
                    type_on_console(&console_in, after, RESUME_SEQUENCE.to_vec());
                }
                if cycles_started && matches!(event, Event::PartitionResumed { .. }) {
                    cycles_left = cycles_left.saturating_sub(1);
                    let next = if cycles_left > 0 {
                        PAUSE_SEQUENCE.to_vec()
                    } else {
                        format!("{PAUSE_CYCLES_DONE}\n").into_bytes()
                    };
                    type_on_console(&console_in, PAUSE_GAP, next);
                }
                if lingers
                    && matches!(event, Event::PartitionStopped { name, .. } if name == linux::CONSOLE)
                {
                    linux_stopped = true;
                    let linger_end = Instant::now() + LINGER;
                    if deadline.is_none_or(|d| linger_end < d) {
                        deadline = Some(linger_end);
                        linger_deadline = true;
                    }
                }
                outcome.events.push(event.clone());
            }
            // A round's histogram line comes just before its `latency` line: ending at the
            // histogram would cut the round's line off mid-frame.
            if linux_stopped
                && ended.is_none()
                && rtos_console.is_some_and(|n| line.source == Source::Partition(n))
                && !line.text.starts_with(crate::histogram::PREFIX)
            {
                ended = Some(Ending::LinuxStopped { rtos_alive: true });
                // Killing closes QEMU's pipes, which ends the loop.
                let _ = child.kill();
            }
            let shown = demux.prefixed(&line);
            logs.line(&line, &shown);
            // The records of a `ctl` answer go to the logs only; its last line is shown.
            if line
                .answer
                .as_deref()
                .and_then(Answer::parse)
                .is_some_and(|a| !a.is_final())
            {
                continue;
            }
            if let Some(screen) = screen.as_mut() {
                show_line(screen, &line, &shown, rtos_console, linux_console);
            }
            // Raw, a framed stream shows Linux's console only; a plain one, all but QEMU's.
            let already_shown = raw_terminal.is_some()
                && match mode {
                    Mode::Framed => {
                        linux_console.is_some_and(|n| line.source == Source::Partition(n))
                    }
                    _ => line.source != Source::Passthrough,
                };
            if options.echo && !already_shown && screen.is_none() {
                let mut out = io::stdout().lock();
                let _ = writeln!(out, "{shown}");
            }
            if options.pathlen {
                snapshot_report(options, firmware, &line.text, &mut outcome);
            }
            outcome.lines.push(shown);
            outcome.line_times.push(started.elapsed());
        }
        logs.flush();
        if let Some(screen) = screen.as_mut() {
            screen.draw_if_due();
        }
    }
    let status = child.wait().context("waiting for QEMU")?;
    // The socket goes with the run; a client still waiting is told.
    drop(ctl);
    drop(screen);
    drop(raw_terminal);
    outcome.elapsed = started.elapsed();
    outcome.ending = match ended {
        Some(ending) => ending,
        None if timed_out => Ending::TimedOut,
        None => Ending::Exited(status.code()),
    };
    Ok(outcome)
}

/// Each CPU's level and PC from QEMU's monitor, as `[qemu]` lines (all registers go to
/// `cpus.txt` beside the logs): what a run that stalled was doing.
fn stalled_cpus(qmp: &Qmp, log_dir: &Path, firmware: &Firmware) -> Vec<Line> {
    monitor::capture(qmp, log_dir, firmware.hv_elf.as_deref())
        .into_iter()
        .map(|text| Line {
            source: Source::Passthrough,
            text: format!("[qemu] at the end: {text}"),
            event: None,
            answer: None,
        })
        .collect()
}

/// Types `bytes` on the guest console `after` from now (an operator command, or a line).
fn type_on_console(console: &Arc<Mutex<Option<ChildStdin>>>, after: Duration, bytes: Vec<u8>) {
    let console = Arc::clone(console);
    std::thread::spawn(move || {
        std::thread::sleep(after);
        write_console(&console, &bytes);
    });
}

/// Writes `bytes` to the guest console now; false once it is closed.
pub(crate) fn write_console(console: &Mutex<Option<ChildStdin>>, bytes: &[u8]) -> bool {
    if bytes.is_empty() {
        return true;
    }
    let Ok(mut pipe) = console.lock() else {
        return false;
    };
    match pipe.as_mut() {
        Some(pipe) => pipe.write_all(bytes).is_ok() && pipe.flush().is_ok(),
        None => false,
    }
}

/// How often the interactive screen is redrawn when nothing arrives.
const SCREEN_TICK: Duration = Duration::from_millis(250);

/// Copies the person's keys to the guest console, less the way out of the screen, which it
/// reports on `tx` instead.
fn forward_keys(console: &Arc<Mutex<Option<ChildStdin>>>, tx: mpsc::Sender<Msg>) {
    let console = Arc::clone(console);
    thread::spawn(move || {
        let mut keys = Keys::default();
        let mut stdin = io::stdin().lock();
        let mut buf = [0u8; 256];
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let (bytes, quit) = keys.feed(&buf[..n]);
            if quit {
                let _ = write_console(&console, &bytes);
                let _ = tx.send(Msg::Quit);
                break;
            }
            if !write_console(&console, &bytes) {
                break;
            }
        }
    });
}

/// Hands a finished line to the screen's panes by its source.
fn show_line(
    screen: &mut Tui,
    line: &Line,
    shown: &str,
    rtos: Option<usize>,
    linux: Option<usize>,
) {
    let event = line.event.as_ref();
    match &line.source {
        Source::Hv => screen.line(Origin::Hv, &line.text, event),
        Source::Partition(n) if Some(*n) == rtos => screen.line(Origin::Rtos, &line.text, event),
        // Its bytes went to the console pane as they came.
        Source::Partition(n) if Some(*n) == linux => {}
        // spumone's plain-log build: its lines carry their prefix, and no partial line.
        Source::Passthrough => {
            if let Some(text) = shown.strip_prefix("[hv] ") {
                screen.line(Origin::Hv, text, event);
            } else if let Some(text) = shown.strip_prefix(crate::bench::RTOS_CONSOLE) {
                screen.line(Origin::Rtos, text.trim_start(), event);
            } else if let Some(text) = shown.strip_prefix(&format!("[{}] ", linux::CONSOLE)) {
                screen.console(format!("{text}\r\n").as_bytes());
            } else {
                screen.line(Origin::Other, shown, event);
            }
        }
        _ => screen.line(Origin::Other, shown, event),
    }
}

fn load_defmt(elf: &Path) -> Result<Option<DefmtLog>> {
    let bytes = fs::read(elf).with_context(|| format!("reading {}", paths::display(elf)))?;
    DefmtLog::from_elf(&bytes).with_context(|| format!("decoding defmt in {}", paths::display(elf)))
}

fn spawn_qemu(
    args: &[std::ffi::OsString],
    own_process_group: bool,
    piped_stdin: bool,
) -> Result<Child> {
    let mut cmd = Command::new(setup::QEMU);
    if own_process_group {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    cmd.args(args)
        .current_dir(crate::paths::workspace_root())
        .stdin(if piped_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match cmd.spawn() {
        Ok(child) => Ok(child),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            anyhow::bail!("{}", setup::qemu_missing_advice())
        }
        Err(e) => Err(e).context("starting QEMU"),
    }
}

/// Copies this process's stdin to QEMU's (the guest console) until either side closes.
/// Through the shared console input, so a `ctl` request never lands inside a write.
fn forward_stdin(console: &Arc<Mutex<Option<ChildStdin>>>) {
    let console = Arc::clone(console);
    thread::spawn(move || {
        let mut stdin = io::stdin().lock();
        let mut buf = [0u8; 256];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !write_console(&console, &buf[..n]) {
                        break;
                    }
                }
            }
        }
    });
}

/// Whether spumone takes management requests in this run: it reads the console only beside a
/// Linux partition, and a native run has no spumone at all.
fn ctl_channel(firmware: &Firmware, mode: Mode) -> Channel {
    let name = firmware.scenario.name;
    if mode == Mode::Native {
        Channel::Closed(format!(
            "scenario {name} runs without spumone: it has no management channel"
        ))
    } else if firmware.boot_info.is_none() {
        Channel::Closed(format!(
            "scenario {name} runs no Linux: spumone reads the console, and so management \
             requests, only beside a Linux partition"
        ))
    } else {
        Channel::Open
    }
}

/// The terminal in raw mode (keys go to the guest as typed, Ctrl-C included), restored on drop.
struct RawTerminal {
    saved: libc::termios,
}

impl RawTerminal {
    /// `None` when stdin is not a terminal.
    fn enter() -> Option<RawTerminal> {
        // SAFETY: isatty/tcgetattr/tcsetattr only read and write the termios given.
        unsafe {
            if libc::isatty(0) != 1 || libc::isatty(1) != 1 {
                return None;
            }
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut saved) != 0 {
                return None;
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            // Keep "\n" → "\r\n" for what xtask itself prints.
            raw.c_oflag |= libc::OPOST | libc::ONLCR;
            if libc::tcsetattr(0, libc::TCSANOW, &raw) != 0 {
                return None;
            }
            Some(RawTerminal { saved })
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `enter`.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &self.saved);
        }
    }
}

fn spawn_readers(child: &mut Child, tx: mpsc::Sender<Msg>) {
    if let Some(mut stdout) = child.stdout.take() {
        let tx = tx.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(Msg::Serial(buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = tx.send(Msg::SerialEnd);
        });
    } else {
        let _ = tx.send(Msg::SerialEnd);
    }
    if let Some(stderr) = child.stderr.take() {
        thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        let text = text.trim_end_matches(['\r', '\n']).to_string();
                        if tx.send(Msg::Stderr(text)).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = tx.send(Msg::StderrEnd);
        });
    } else {
        let _ = tx.send(Msg::StderrEnd);
    }
}

/// The files under `target/logs/<scenario>/`.
struct Logs {
    serial: File,
    all: File,
    hv: File,
    consoles: Vec<(String, File)>,
    /// The first write error, reported once; the run itself goes on.
    error: Option<io::Error>,
    reported: bool,
}

impl Logs {
    fn create(dir: &Path, consoles: &[String]) -> Result<Logs> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", paths::display(dir)))?;
        let open = |name: &str| -> Result<File> {
            let path = dir.join(name);
            File::create(&path).with_context(|| format!("creating {}", paths::display(&path)))
        };
        let mut console_files = Vec::new();
        for name in consoles {
            console_files.push((name.clone(), open(&format!("{name}.log"))?));
        }
        Ok(Logs {
            serial: open("serial.bin")?,
            all: open("all.log")?,
            hv: open("hv.log")?,
            consoles: console_files,
            error: None,
            reported: false,
        })
    }

    fn record(&mut self, result: io::Result<()>) {
        if let Err(e) = result {
            self.error.get_or_insert(e);
        }
    }

    fn serial(&mut self, bytes: &[u8]) {
        let r = self.serial.write_all(bytes);
        self.record(r);
    }

    fn line(&mut self, line: &Line, shown: &str) {
        let r = writeln!(self.all, "{shown}");
        self.record(r);
        // The stream's own log gets the line without its prefix.
        let own: Option<(&mut File, &str)> = match &line.source {
            Source::Hv => Some((&mut self.hv, line.text.as_str())),
            Source::Partition(n) => self
                .consoles
                .get_mut(*n)
                .map(|(_, f)| (f, line.text.as_str())),
            Source::Passthrough => {
                if let Some(rest) = shown.strip_prefix("[hv] ") {
                    Some((&mut self.hv, rest))
                } else {
                    self.consoles.iter_mut().find_map(|(name, f)| {
                        shown
                            .strip_prefix(&format!("[{name}] "))
                            .map(|rest| (f, rest))
                    })
                }
            }
            Source::Raw => None,
        };
        if let Some((file, text)) = own {
            let r = writeln!(file, "{text}");
            self.record(r);
        }
    }

    fn flush(&mut self) {
        if let (Some(e), false) = (&self.error, self.reported) {
            eprintln!("warning: writing the run's logs failed: {e}");
            self.reported = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::find;

    fn outcome(scenario: &str, ending: Ending, lines: &[&str], events: Vec<Event>) -> RunOutcome {
        RunOutcome {
            scenario: find(scenario).unwrap(),
            lines: lines.iter().map(|s| s.to_string()).collect(),
            line_times: vec![Duration::ZERO; lines.len()],
            events,
            ending,
            timeout: Some(Duration::from_secs(120)),
            framed: true,
            elapsed: Duration::from_secs(1),
            first_output: None,
            shutdown_at: None,
            log_dir: PathBuf::from("target/logs").join(scenario),
            command_line: String::new(),
            pathlen: None,
            pathlen_snapshots: Vec::new(),
        }
    }

    #[test]
    fn linux_stopping_beside_a_live_rtos_ends_the_run() {
        let stopped = |code| {
            vec![Event::PartitionStopped {
                name: "linux".into(),
                code,
            }]
        };
        let alive = Ending::LinuxStopped { rtos_alive: true };
        let o = outcome("demo", alive, &[], stopped(0));
        assert_eq!(o.verdict(), Verdict::PoweredOff);
        assert_eq!(o.exit_code(), 0);
        let o = outcome("demo", alive, &[], stopped(255));
        assert_eq!(o.verdict(), Verdict::ShutdownCode(255));
        assert_ne!(o.exit_code(), 0, "spumone stopping Linux is a failure");
        let silent = Ending::LinuxStopped { rtos_alive: false };
        let o = outcome("demo", silent, &[], stopped(0));
        assert_eq!(o.verdict(), Verdict::RtosSilent);
        assert_ne!(o.exit_code(), 0);
        assert!(o.failure().unwrap().contains("RTOS printed nothing"));
    }

    #[test]
    fn clean_shutdown_is_success() {
        let o = outcome(
            "rtos",
            Ending::Exited(Some(0)),
            &[],
            vec![Event::Shutdown { code: 0 }],
        );
        assert_eq!(o.verdict(), Verdict::PoweredOff);
        assert_eq!(o.exit_code(), 0);
        assert_eq!(o.failure(), None);
    }

    #[test]
    fn shutdown_code_becomes_exit_status() {
        let o = outcome(
            "rtos",
            Ending::Exited(Some(0)),
            &[],
            vec![Event::Shutdown { code: 3 }],
        );
        assert_eq!(o.exit_code(), 3);
        let o = outcome(
            "rtos",
            Ending::Exited(Some(0)),
            &[],
            vec![Event::Shutdown { code: 256 }],
        );
        assert_eq!(
            o.exit_code(),
            1,
            "codes that do not fit an exit status still fail"
        );
    }

    #[test]
    fn hypervisor_run_without_shutdown_event_fails() {
        let o = outcome("rtos", Ending::Exited(Some(0)), &[], vec![]);
        assert_eq!(o.verdict(), Verdict::NoShutdownEvent);
        assert_ne!(o.exit_code(), 0);
    }

    #[test]
    fn native_run_succeeds_on_qemu_status_zero() {
        let o = outcome("rtos-native", Ending::Exited(Some(0)), &[], vec![]);
        assert_eq!(o.exit_code(), 0);
        let o = outcome("rtos-native", Ending::Exited(Some(1)), &[], vec![]);
        assert_eq!(o.verdict(), Verdict::QemuFailed(Some(1)));
    }

    #[test]
    fn timeout_message_and_status() {
        let o = outcome("rtos", Ending::TimedOut, &[], vec![]);
        assert_eq!(o.exit_code(), TIMEOUT_EXIT);
        assert_eq!(
            o.failure().unwrap(),
            "scenario rtos did not power off within 120 s (last output in target/logs/rtos/all.log)"
        );
    }

    #[test]
    fn ctrl_c_is_reported_as_interrupted() {
        let o = outcome(
            "rtos",
            Ending::Exited(Some(0)),
            &["[qemu] qemu-system-aarch64: terminating on signal 2"],
            vec![],
        );
        assert_eq!(o.exit_code(), INTERRUPTED_EXIT);
    }

    #[test]
    fn tail_takes_the_last_lines() {
        let o = outcome("rtos", Ending::TimedOut, &["a", "b", "c"], vec![]);
        assert_eq!(o.tail(2), "b\nc");
        assert_eq!(o.tail(10), "a\nb\nc");
    }
}
