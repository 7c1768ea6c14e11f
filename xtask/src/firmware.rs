//! `cargo xtask build`: cross-builds spumone and the guest images a scenario needs.

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config;
use crate::paths::{self, images_dir, target_dir, workspace_root};
use crate::scenario::{Kind, Scenario};

/// spumone runs at EL2 without touching FP/SIMD registers.
pub const HV_TARGET: &str = "aarch64-unknown-none-softfloat";
/// Guests keep the plain bare-metal target.
pub const GUEST_TARGET: &str = "aarch64-unknown-none";

/// A guest image built from a crate of this workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestImage {
    /// The name configs use (`image = "..."`).
    pub name: &'static str,
    pub package: &'static str,
    pub bin: &'static str,
    pub target: &'static str,
}

const GUEST_IMAGES: &[GuestImage] = &[GuestImage {
    name: "rtos",
    package: "rtos",
    bin: "rtos",
    target: GUEST_TARGET,
}];

/// The guest image called `name` in configs.
pub fn guest_image(name: &str) -> Option<&'static GuestImage> {
    GUEST_IMAGES.iter().find(|g| g.name == name)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildOptions {
    /// Build spumone with its `plain-log` feature (plain text instead of framed defmt).
    pub plain_log: bool,
}

/// Everything QEMU needs to boot a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firmware {
    pub scenario: &'static Scenario,
    /// What QEMU's `-kernel` loads (spumone, or the guest itself for a native run).
    pub kernel: PathBuf,
    /// Guest ELF images loaded at their link addresses by `-device loader`.
    pub loads: Vec<PathBuf>,
    /// Console names, indexed by channel number minus `GUEST_BASE` (the image name for native).
    pub consoles: Vec<String>,
    /// spumone's ELF, holding the defmt table (hypervisor scenarios).
    pub hv_elf: Option<PathBuf>,
    pub plain_log: bool,
}

fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Runs `cargo build --release` for one package and target; returns the built binary.
fn cargo_build(
    what: &str,
    package: &str,
    bin: &str,
    target: &str,
    features: &[&str],
    env: &[(&str, &Path)],
) -> Result<PathBuf> {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(workspace_root())
        .args([
            "build",
            "--release",
            "-p",
            package,
            "--bin",
            bin,
            "--target",
            target,
        ])
        .arg("--target-dir")
        .arg(target_dir());
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    for (key, value) in env {
        cmd.env(key, value);
    }
    let status = cmd
        .status()
        .with_context(|| format!("cannot start cargo to build {what}"))?;
    if !status.success() {
        bail!("building {what} failed (see the compiler output above)");
    }
    let built = target_dir().join(target).join("release").join(bin);
    if !built.is_file() {
        bail!(
            "building {what} succeeded but {} is missing",
            paths::display(&built)
        );
    }
    Ok(built)
}

/// Copies a built image into the scenario's image directory under `name`.
fn stash(built: &Path, scenario: &str, name: &str) -> Result<PathBuf> {
    let dir = images_dir(scenario);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", paths::display(&dir)))?;
    let dest = dir.join(name);
    fs::copy(built, &dest).with_context(|| {
        format!(
            "copying {} to {}",
            paths::display(built),
            paths::display(&dest)
        )
    })?;
    Ok(dest)
}

fn build_guest(image_name: &str, scenario: &str) -> Result<PathBuf> {
    let Some(image) = guest_image(image_name) else {
        bail!("scenario {scenario}: unknown guest image `{image_name}`");
    };
    let built = cargo_build(image.name, image.package, image.bin, image.target, &[], &[])?;
    stash(&built, scenario, &format!("{}.elf", image.name))
}

/// Builds what `scenario` boots and copies it to `target/images/<scenario>/`.
pub fn build(scenario: &'static Scenario, options: &BuildOptions) -> Result<Firmware> {
    match scenario.kind {
        Kind::Native { image } => {
            println!("build: {} ({image} without the hypervisor)", scenario.name);
            let kernel = build_guest(image, scenario.name)?;
            Ok(Firmware {
                scenario,
                kernel,
                loads: Vec::new(),
                consoles: vec![image.to_string()],
                hv_elf: None,
                plain_log: false,
            })
        }
        Kind::Hypervisor { config } => {
            let config_path = workspace_root().join(config);
            let partitions = config::load(&config_path)?;
            for p in &partitions {
                if guest_image(&p.image).is_none() {
                    bail!(
                        "{config}: partition {} names unknown image `{}`",
                        p.name,
                        p.image
                    );
                }
            }
            println!("build: {} (spumone with {config})", scenario.name);
            let features: &[&str] = if options.plain_log {
                &["plain-log"]
            } else {
                &[]
            };
            let built = cargo_build(
                "spumone",
                "spumone",
                "spumone",
                crate::firmware::HV_TARGET,
                features,
                &[("SPUMONE_CONFIG", &config_path)],
            )?;
            let kernel = stash(&built, scenario.name, "spumone.elf")?;
            let mut loads = Vec::new();
            for p in &partitions {
                let path = build_guest(&p.image, scenario.name)?;
                if !loads.contains(&path) {
                    loads.push(path);
                }
            }
            Ok(Firmware {
                scenario,
                hv_elf: Some(kernel.clone()),
                kernel,
                loads,
                consoles: config::console_names(&partitions)?,
                plain_log: options.plain_log,
            })
        }
    }
}

/// The firmware a previous [`build`] left in `target/images/<scenario>/`, without building.
pub fn prebuilt(scenario: &'static Scenario) -> Result<Firmware> {
    let dir = images_dir(scenario.name);
    let need = |name: &str| -> Result<PathBuf> {
        let path = dir.join(name);
        if !path.is_file() {
            bail!(
                "{} is missing: run `cargo xtask build --scenario {}`",
                paths::display(&path),
                scenario.name
            );
        }
        Ok(path)
    };
    match scenario.kind {
        Kind::Native { image } => Ok(Firmware {
            scenario,
            kernel: need(&format!("{image}.elf"))?,
            loads: Vec::new(),
            consoles: vec![image.to_string()],
            hv_elf: None,
            plain_log: false,
        }),
        Kind::Hypervisor { config } => {
            let partitions = config::load(&workspace_root().join(config))?;
            let kernel = need("spumone.elf")?;
            let mut loads = Vec::new();
            for p in &partitions {
                let path = need(&format!("{}.elf", p.image))?;
                if !loads.contains(&path) {
                    loads.push(path);
                }
            }
            Ok(Firmware {
                scenario,
                hv_elf: Some(kernel.clone()),
                kernel,
                loads,
                consoles: config::console_names(&partitions)?,
                plain_log: false,
            })
        }
    }
}
