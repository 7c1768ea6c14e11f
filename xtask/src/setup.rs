//! `cargo xtask setup`: brings the machine to what building and running need.
//!
//! Each step checks cheaply whether it is done and only then acts, so `run`, `build` and
//! `test` call [`ensure`] every time.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::paths::workspace_root;

/// The Rust targets firmware is built for.
pub const RUST_TARGETS: [&str; 2] = ["aarch64-unknown-none", "aarch64-unknown-none-softfloat"];

pub const QEMU: &str = "qemu-system-aarch64";
/// The Debian/Ubuntu package that provides [`QEMU`].
pub const QEMU_PACKAGE: &str = "qemu-system-arm";

/// What a step found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Done; the text says what is there (a version, a path).
    Ready(String),
    /// Not done; the text says what is missing.
    Missing(String),
}

pub trait Step {
    /// Short name used in the `setup: <name> ...` lines.
    fn name(&self) -> String;
    /// Looks, changes nothing. Must be fast.
    fn check(&self) -> Result<State>;
    /// Does the step; afterwards [`Step::check`] should say `Ready`.
    fn run(&self) -> Result<()>;
}

/// What building and booting any scenario needs, in order.
pub fn base_steps() -> Vec<Box<dyn Step>> {
    vec![Box::new(RustTargets), Box::new(Qemu)]
}

/// Every step, in order: the base ones, then the Linux guest images.
pub fn steps() -> Vec<Box<dyn Step>> {
    let mut all = base_steps();
    all.extend(crate::linux::steps());
    all
}

/// Checks every step and runs the missing ones (`cargo xtask setup`, `cargo xtask test`).
pub fn ensure(verbose: bool) -> Result<()> {
    ensure_steps(&steps(), verbose)
}

/// Only what every scenario needs; Linux scenarios fetch their images when they are built.
pub fn ensure_base(verbose: bool) -> Result<()> {
    ensure_steps(&base_steps(), verbose)
}

/// Checks `steps` and runs the missing ones. With `verbose`, one line per step; otherwise
/// only steps that had to act say so.
pub fn ensure_steps(steps: &[Box<dyn Step>], verbose: bool) -> Result<()> {
    for step in steps {
        let name = step.name();
        match step.check()? {
            State::Ready(detail) => {
                if verbose {
                    println!("setup: {detail} ok");
                }
            }
            State::Missing(why) => {
                println!("setup: {name}: {why}; installing");
                step.run().with_context(|| format!("setting up {name}"))?;
                match step.check()? {
                    State::Ready(detail) => println!("setup: {detail} ok"),
                    State::Missing(why) => bail!("setting up {name}: still missing: {why}"),
                }
            }
        }
    }
    Ok(())
}

/// Runs a command quietly and returns its stdout, or `None` when it cannot be started or fails.
pub(crate) fn output_of(program: &str, args: &[&str], dir: &Path) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command with its output shown; fails with a line naming it.
fn run_visible(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

/// The cross targets of the toolchain pinned in `rust-toolchain.toml`.
struct RustTargets;

impl RustTargets {
    fn missing(&self) -> Result<Vec<&'static str>> {
        let root = workspace_root();
        let sysroot = output_of("rustc", &["--print", "sysroot"], &root)
            .context("cannot run `rustc --print sysroot`; is Rust installed (rustup)?")?;
        let lib = Path::new(sysroot.trim()).join("lib").join("rustlib");
        Ok(RUST_TARGETS
            .into_iter()
            .filter(|t| !lib.join(t).join("lib").is_dir())
            .collect())
    }
}

impl Step for RustTargets {
    fn name(&self) -> String {
        "rust targets".into()
    }

    fn check(&self) -> Result<State> {
        let missing = self.missing()?;
        Ok(if missing.is_empty() {
            State::Ready(format!("rust targets {}", RUST_TARGETS.join(", ")))
        } else {
            State::Missing(format!("{} not installed", missing.join(", ")))
        })
    }

    fn run(&self) -> Result<()> {
        let missing = self.missing()?;
        if output_of("rustup", &["--version"], &workspace_root()).is_none() {
            bail!(
                "rustup not found: install the Rust targets {} with your toolchain manager",
                missing.join(", ")
            );
        }
        run_visible(
            Command::new("rustup")
                .args(["target", "add"])
                .args(&missing)
                .current_dir(workspace_root()),
        )
    }
}

/// The QEMU system emulator.
struct Qemu;

/// The version in `qemu-system-aarch64 --version` output.
pub fn qemu_version(version_output: &str) -> Option<String> {
    let first = version_output.lines().next()?;
    let rest = first.split("version ").nth(1)?;
    let version = rest.split_whitespace().next()?;
    Some(version.to_string())
}

/// The installed QEMU version, if any.
pub fn installed_qemu() -> Option<String> {
    let out = output_of(QEMU, &["--version"], &workspace_root())?;
    Some(qemu_version(&out).unwrap_or_else(|| "(unknown version)".into()))
}

/// Whether [`apt_install`] can work here: root on Debian/Ubuntu.
pub fn can_install() -> bool {
    is_root() && is_debian_like()
}

/// How long apt waits for the dpkg lock another apt (an unattended upgrade, a second
/// setup) holds, instead of failing at once.
const APT_LOCK_WAIT_SECS: u32 = 600;

/// `apt-get`, non-interactive, waiting for the dpkg lock up to [`APT_LOCK_WAIT_SECS`].
pub fn apt_get() -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.arg("-o")
        .arg(format!("DPkg::Lock::Timeout={APT_LOCK_WAIT_SECS}"))
        .env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

/// `apt-get update` and `apt-get install -y packages`, output shown.
pub fn apt_install(packages: &[&str]) -> Result<()> {
    let apt = |args: &[&str]| {
        let mut cmd = apt_get();
        cmd.args(args).stdin(Stdio::null());
        run_visible(&mut cmd)
    };
    apt(&["update"])?;
    apt(&[&["install", "-y"], packages].concat())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn is_debian_like() -> bool {
    Path::new("/etc/debian_version").exists()
        && output_of("apt-get", &["--version"], &workspace_root()).is_some()
}

/// The one-line advice when QEMU is missing and cannot be installed here.
pub fn qemu_missing_advice() -> String {
    format!("{QEMU} not found: install the package {QEMU_PACKAGE} (Debian/Ubuntu: `apt-get install {QEMU_PACKAGE}`) or run `cargo xtask setup` as root")
}

impl Step for Qemu {
    fn name(&self) -> String {
        QEMU.into()
    }

    fn check(&self) -> Result<State> {
        Ok(match installed_qemu() {
            Some(version) => State::Ready(format!("{QEMU} {version}")),
            None => State::Missing("not found".into()),
        })
    }

    fn run(&self) -> Result<()> {
        if !can_install() {
            bail!("{}", qemu_missing_advice());
        }
        apt_install(&[QEMU_PACKAGE])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_qemu_version() {
        assert_eq!(
            qemu_version("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18)\nCopyright (c) 2003-2022 Fabrice Bellard\n"),
            Some("7.2.22".into())
        );
        assert_eq!(
            qemu_version("QEMU emulator version 8.0.0\n"),
            Some("8.0.0".into())
        );
        assert_eq!(qemu_version("something else"), None);
    }

    #[test]
    fn step_names_are_unique() {
        let names: Vec<String> = steps().iter().map(|s| s.name()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "{names:?}");
    }

    #[test]
    fn advice_names_the_package() {
        let advice = qemu_missing_advice();
        assert!(advice.contains("qemu-system-arm") && !advice.contains('\n'));
    }
}
