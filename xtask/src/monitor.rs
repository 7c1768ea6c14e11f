//! What each CPU was doing when a run stalled: QEMU's monitor, asked through QMP just before
//! xtask kills a run that timed out (or whose RTOS fell silent), so a rare stall leaves a
//! trace instead of only a silent log.
//!
//! QMP rather than the human monitor on a socket: its replies are JSON with no line editing
//! echoed, and `-nographic` keeps its own monitor muxed on stdio as before.

use anyhow::{bail, Context, Result};
use object::{Object, ObjectSymbol, SymbolKind};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// How long the monitor may take to answer before the run is killed anyway.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// A QMP socket for one QEMU process, removed when dropped.
pub struct Qmp {
    path: PathBuf,
}

impl Qmp {
    /// A fresh socket path in the temporary directory (a clone's own path may be longer than
    /// a Unix socket's 108 bytes).
    pub fn new() -> Qmp {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("spumone-qmp-{}-{n}.sock", std::process::id());
        Qmp {
            path: std::env::temp_dir().join(name),
        }
    }

    /// QEMU's arguments for a QMP server on this socket that does not wait for a client.
    pub fn args(&self) -> [String; 2] {
        [
            "-qmp".to_string(),
            format!("unix:{},server=on,wait=off", self.path.display()),
        ]
    }

    /// Runs a human-monitor command (such as `info registers -a`) and returns its output.
    pub fn human(&self, command: &str) -> Result<String> {
        let stream = UnixStream::connect(&self.path)
            .with_context(|| format!("connecting to QEMU's monitor at {}", self.path.display()))?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
        let mut writer = stream.try_clone()?;
        let mut reader = BufReader::new(stream);
        // The greeting, then leave capabilities negotiation mode.
        read_reply(&mut reader, false)?;
        writeln!(writer, r#"{{"execute":"qmp_capabilities"}}"#)?;
        read_reply(&mut reader, true)?;
        let request = serde_json::json!({
            "execute": "human-monitor-command",
            "arguments": { "command-line": command },
        });
        writeln!(writer, "{request}")?;
        let reply = read_reply(&mut reader, true)?;
        Ok(reply.as_str().unwrap_or_default().to_string())
    }
}

impl Default for Qmp {
    fn default() -> Qmp {
        Qmp::new()
    }
}

impl Drop for Qmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads QMP messages until a reply (skipping asynchronous events), and returns its `return`
/// value; with `want_return` false, the first message (the greeting) is the reply.
fn read_reply(reader: &mut impl BufRead, want_return: bool) -> Result<serde_json::Value> {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            bail!("QEMU's monitor closed the connection");
        }
        let message: serde_json::Value =
            serde_json::from_str(line.trim()).context("QEMU's monitor sent bad JSON")?;
        if !want_return {
            return Ok(message);
        }
        if let Some(value) = message.get("return") {
            return Ok(value.clone());
        }
        if let Some(error) = message.get("error") {
            bail!("QEMU's monitor refused: {error}");
        }
    }
}

/// One CPU in QEMU's `info registers` dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuState {
    pub index: usize,
    pub pc: u64,
    /// The exception level and stack pointer choice, as QEMU prints it (`EL2h`, `EL1t`).
    pub level: String,
}

/// The CPUs of an aarch64 `info registers -a` dump, in order.
pub fn parse_registers(dump: &str) -> Vec<CpuState> {
    let mut cpus = Vec::new();
    let mut index = None;
    let mut pc = None;
    for line in dump.lines() {
        let line = line.trim();
        if let Some(n) = line.strip_prefix("CPU#") {
            index = n.trim().parse().ok();
            pc = None;
        } else if let Some(rest) = line.strip_prefix("PC=") {
            pc = rest
                .split_whitespace()
                .next()
                .and_then(|v| u64::from_str_radix(v, 16).ok());
        } else if line.starts_with("PSTATE=") {
            let level = line
                .split_whitespace()
                .find(|w| w.starts_with("EL"))
                .unwrap_or("EL?")
                .to_string();
            if let (Some(index), Some(pc)) = (index, pc) {
                cpus.push(CpuState { index, pc, level });
            }
        }
    }
    cpus
}

/// Function symbols of an ELF, sorted by address, for naming EL2 program counters.
pub struct Symbols {
    functions: Vec<(u64, u64, String)>,
}

impl Symbols {
    pub fn from_elf(bytes: &[u8]) -> Result<Symbols> {
        let file = object::File::parse(bytes).context("parsing the hypervisor's ELF")?;
        let mut functions: Vec<(u64, u64, String)> = file
            .symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.size() > 0)
            .filter_map(|s| {
                let name = s.name().ok()?;
                Some((
                    s.address(),
                    s.size(),
                    format!("{:#}", rustc_demangle::demangle(name)),
                ))
            })
            .collect();
        functions.sort();
        Ok(Symbols { functions })
    }

    /// `function+0xoffset` for an address inside a function.
    pub fn name(&self, addr: u64) -> Option<String> {
        let at = self
            .functions
            .partition_point(|(start, _, _)| *start <= addr);
        let (start, size, name) = self.functions.get(at.checked_sub(1)?)?;
        (addr < start + size).then(|| format!("{name}+{:#x}", addr - start))
    }
}

/// One line per CPU: its level and PC, named when it is in the hypervisor (EL2).
pub fn describe(cpus: &[CpuState], hypervisor: Option<&Symbols>) -> Vec<String> {
    cpus.iter()
        .map(|cpu| {
            let place = match hypervisor {
                Some(symbols) if cpu.level.starts_with("EL2") => symbols
                    .name(cpu.pc)
                    .unwrap_or_else(|| "outside spumone's functions".to_string()),
                Some(_) => "in a guest".to_string(),
                None => String::new(),
            };
            format!("CPU#{} {} pc {:#x} {place}", cpu.index, cpu.level, cpu.pc)
                .trim_end()
                .to_string()
        })
        .collect()
}

/// Asks QEMU for every CPU's registers, writes them to `cpus.txt` in `log_dir` and returns the
/// one-line-per-CPU summary (or why it could not be taken).
pub fn capture(qmp: &Qmp, log_dir: &Path, hv_elf: Option<&Path>) -> Vec<String> {
    let dump = match qmp.human("info registers -a") {
        Ok(dump) => dump,
        Err(e) => return vec![format!("no CPU state: {e:#}")],
    };
    let symbols = hv_elf
        .and_then(|elf| std::fs::read(elf).ok())
        .and_then(|bytes| Symbols::from_elf(&bytes).ok());
    let mut summary = describe(&parse_registers(&dump), symbols.as_ref());
    let path = log_dir.join("cpus.txt");
    let text = format!("{}\n\n{dump}", summary.join("\n"));
    match std::fs::write(&path, text) {
        Ok(()) => summary.push(format!("all registers in {}", crate::paths::display(&path))),
        Err(e) => summary.push(format!("writing {}: {e}", path.display())),
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "\
CPU#0
 PC=0000000040081234 X00=0000000000000000 X01=0000000000000000
X29=0000000000000000 X30=0000000000000000  SP=0000000000000000
PSTATE=000003c9 ---- EL2h     FPCR=00000000 FPSR=00000000
Q00=0000000000000000:0000000000000000 Q01=0000000000000000:0000000000000000

CPU#1
 PC=ffff800008012340 X00=0000000000000001 X01=0000000000000000
PSTATE=60000005 -ZC- EL1h     FPCR=00000000 FPSR=00000000
";

    #[test]
    fn registers_dump_gives_each_cpus_level_and_pc() {
        let cpus = parse_registers(DUMP);
        assert_eq!(
            cpus,
            vec![
                CpuState {
                    index: 0,
                    pc: 0x4008_1234,
                    level: "EL2h".into()
                },
                CpuState {
                    index: 1,
                    pc: 0xffff_8000_0801_2340,
                    level: "EL1h".into()
                },
            ]
        );
        assert!(parse_registers("no such output").is_empty());
    }

    #[test]
    fn el2_program_counters_are_named_and_guest_ones_are_not() {
        let symbols = Symbols {
            functions: vec![
                (0x4008_1000, 0x300, "spumone::dsm::hold".into()),
                (0x4008_2000, 0x10, "spumone::idle".into()),
            ],
        };
        assert_eq!(
            symbols.name(0x4008_1234).as_deref(),
            Some("spumone::dsm::hold+0x234")
        );
        assert_eq!(symbols.name(0x4008_1300), None, "past the function's end");
        assert_eq!(symbols.name(0x4000_0000), None, "before every function");
        let lines = describe(&parse_registers(DUMP), Some(&symbols));
        assert_eq!(
            lines,
            vec![
                "CPU#0 EL2h pc 0x40081234 spumone::dsm::hold+0x234",
                "CPU#1 EL1h pc 0xffff800008012340 in a guest",
            ]
        );
        assert_eq!(
            describe(&parse_registers(DUMP), None)[0],
            "CPU#0 EL2h pc 0x40081234"
        );
    }

    #[test]
    fn a_missing_monitor_is_reported_not_fatal() {
        let qmp = Qmp::new();
        let lines = capture(&qmp, Path::new("/nonexistent"), None);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with("no CPU state: connecting to QEMU's monitor"));
    }
}
