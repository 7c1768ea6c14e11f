//! `cargo xtask build`: cross-builds spumone and the guest images a scenario needs.

use anyhow::{bail, Context, Result};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config;
use crate::linux;
use crate::paths::{self, images_dir, target_dir, workspace_root};
use crate::scenario::{Kind, Scenario, DEFAULT_SCENARIO};
use spumone_abi::bootinfo::{self, BootInfo};

/// spumone runs at EL2 without touching FP/SIMD registers.
pub const HV_TARGET: &str = "aarch64-unknown-none-softfloat";
/// Guests keep the plain bare-metal target.
pub const GUEST_TARGET: &str = "aarch64-unknown-none";

/// A guest image: built from a crate of this workspace, or the Debian Linux kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestImage {
    /// The name configs use (`image = "..."`).
    pub name: &'static str,
    pub source: ImageSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSource {
    /// An ELF from `cargo build`.
    Cargo {
        package: &'static str,
        bin: &'static str,
        target: &'static str,
    },
    /// The Debian kernel `Image` and the initramfs made by `cargo xtask setup` ([`linux`]).
    DebianLinux,
}

const GUEST_IMAGES: &[GuestImage] = &[
    GuestImage {
        name: "rtos",
        source: ImageSource::Cargo {
            package: "rtos",
            bin: "rtos",
            target: GUEST_TARGET,
        },
    },
    GuestImage {
        name: "linux",
        source: ImageSource::DebianLinux,
    },
];

/// The guest image called `name` in configs.
pub fn guest_image(name: &str) -> Option<&'static GuestImage> {
    GUEST_IMAGES.iter().find(|g| g.name == name)
}

/// The RTOS latency probe's build-time settings, always passed explicitly so an image's N and
/// P are known to whoever boots it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencySettings {
    /// Samples N (`RTOS_LATENCY_SAMPLES`).
    pub samples: u32,
    /// Cyclic period P in microseconds (`RTOS_LATENCY_PERIOD_US`).
    pub period_us: u32,
}

impl LatencySettings {
    pub const SAMPLES_ENV: &'static str = "RTOS_LATENCY_SAMPLES";
    pub const PERIOD_ENV: &'static str = "RTOS_LATENCY_PERIOD_US";
    /// The RTOS's own defaults (`guests/rtos/src/latency.rs`).
    pub const DEFAULT: LatencySettings = LatencySettings {
        samples: 10_000,
        period_us: 1_000,
    };
    /// The RTOS's sample buffer.
    pub const MAX_SAMPLES: u32 = 100_000;

    /// Checks the ranges the RTOS accepts.
    pub fn new(samples: u32, period_us: u32) -> Result<LatencySettings> {
        if !(1..=Self::MAX_SAMPLES).contains(&samples) {
            bail!(
                "latency samples must be 1..={}, not {samples}",
                Self::MAX_SAMPLES
            );
        }
        if period_us == 0 {
            bail!("latency period must be at least 1 us");
        }
        Ok(LatencySettings { samples, period_us })
    }

    /// The build environment that passes them to the guests (every guest gets them; only the
    /// RTOS reads them).
    pub fn env(&self) -> [(&'static str, OsString); 2] {
        [
            (Self::SAMPLES_ENV, self.samples.to_string().into()),
            (Self::PERIOD_ENV, self.period_us.to_string().into()),
        ]
    }

    /// [`Self::DEFAULT`] overridden by `RTOS_LATENCY_SAMPLES` / `RTOS_LATENCY_PERIOD_US` when
    /// they are set in xtask's environment.
    pub fn from_env() -> Result<LatencySettings> {
        Self::from_vars(|key| std::env::var(key).ok())
    }

    fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<LatencySettings> {
        let read = |key: &str, default: u32| -> Result<u32> {
            match get(key) {
                None => Ok(default),
                Some(text) => text
                    .trim()
                    .parse()
                    .with_context(|| format!("{key}=`{text}` is not a decimal number")),
            }
        };
        Self::new(
            read(Self::SAMPLES_ENV, Self::DEFAULT.samples)?,
            read(Self::PERIOD_ENV, Self::DEFAULT.period_us)?,
        )
    }

    /// Guest time the probe takes: N × P.
    pub fn probe_seconds(&self) -> f64 {
        f64::from(self.samples) * f64::from(self.period_us) / 1e6
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildOptions {
    /// Build spumone with its `plain-log` feature (plain text instead of framed defmt).
    pub plain_log: bool,
    /// Latency probe settings the RTOS image is built with.
    pub latency: LatencySettings,
}

impl Default for BuildOptions {
    fn default() -> BuildOptions {
        BuildOptions {
            plain_log: false,
            latency: LatencySettings::DEFAULT,
        }
    }
}

/// Everything QEMU needs to boot a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firmware {
    pub scenario: &'static Scenario,
    /// The machine's cores (`-smp`): a native scenario's, or the config's.
    pub cpus: u32,
    /// What QEMU's `-kernel` loads (spumone, or the guest itself for a native run).
    pub kernel: PathBuf,
    /// Guest ELF images loaded at their link addresses by `-device loader`.
    pub loads: Vec<PathBuf>,
    /// Console names, indexed by channel number minus `GUEST_BASE` (the image name for native).
    pub consoles: Vec<String>,
    /// spumone's ELF, holding the defmt table (hypervisor scenarios).
    pub hv_elf: Option<PathBuf>,
    pub plain_log: bool,
    /// A native Linux boot's initramfs (`-initrd`).
    pub initrd: Option<PathBuf>,
    /// A native Linux boot's kernel command line (`-append`).
    pub append: Option<String>,
    /// Files loaded raw at an address: a Linux partition's `Image`, initramfs and boot info.
    pub raw_loads: RawLoads,
    /// The boot-info blob of a Linux partition under spumone (rewritten for `--cmd`).
    pub boot_info: Option<BootInfoFile>,
}

/// What the boot-info blob (`spumone_abi::bootinfo`) holds, and where it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootInfoFile {
    pub path: PathBuf,
    pub initrd_size: u64,
    pub kaslr_seed: u64,
    pub bootargs: String,
    /// `spumone_abi::bootinfo::FLAG_*` bits.
    pub flags: u32,
    /// The RTOS image's code and read-only data, which spumone digests at boot and when
    /// Linux stops.
    pub measured: Option<(u64, u64)>,
}

impl BootInfoFile {
    /// Writes the blob to `self.path`.
    pub fn write(&self) -> Result<()> {
        let info = BootInfo {
            initrd_size: self.initrd_size,
            kaslr_seed: self.kaslr_seed,
            bootargs: &self.bootargs,
            flags: self.flags,
            measured: self.measured,
        };
        let mut blob = vec![0u8; bootinfo::SIZE];
        let Some(len) = info.write(&mut blob) else {
            bail!(
                "extra kernel arguments too long for the boot-info blob ({} bytes, at most {})",
                self.bootargs.len(),
                bootinfo::MAX_BOOTARGS
            );
        };
        blob.truncate(len);
        fs::write(&self.path, &blob)
            .with_context(|| format!("writing {}", paths::display(&self.path)))
    }

    /// This blob with `extra` appended to its bootargs and `flags` set, written beside it
    /// under a name of its own (so concurrent runs of one build do not share it).
    pub fn with_extra(&self, extra: &str, flags: u32) -> Result<BootInfoFile> {
        use std::hash::{Hash, Hasher};
        let bootargs = format!("{} {extra}", self.bootargs).trim().to_string();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        bootargs.hash(&mut hasher);
        flags.hash(&mut hasher);
        let name = format!(
            "bootinfo-{:016x}-{}.bin",
            hasher.finish(),
            std::process::id()
        );
        let file = BootInfoFile {
            path: self.path.with_file_name(name),
            bootargs,
            flags,
            ..self.clone()
        };
        file.write()?;
        Ok(file)
    }
}

/// A KASLR seed from the host's random source.
fn kaslr_seed() -> Result<u64> {
    let mut bytes = [0u8; 8];
    use std::io::Read;
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for a KASLR seed")?;
    Ok(u64::from_le_bytes(bytes))
}

/// Files loaded raw, each at its address.
type RawLoads = Vec<(PathBuf, u64)>;

/// The raw loads and boot info of a config's Linux partition (at most one), its files
/// stashed in `dir`.
fn linux_loads(
    partitions: &[config::Partition],
    dir: &Path,
    stash_files: bool,
    measured: Option<(u64, u64)>,
) -> Result<(RawLoads, Option<BootInfoFile>)> {
    let linux: Vec<config::LinuxLayout> = partitions.iter().filter_map(|p| p.linux).collect();
    let layout = match linux.as_slice() {
        [] => return Ok((Vec::new(), None)),
        [one] => *one,
        _ => bail!("only one Linux partition per config is supported"),
    };
    let (kernel, initrd) = if stash_files {
        remove_command_blobs(dir);
        linux::ensure(false)?;
        (
            stash(&linux::kernel_image(), dir, "Image")?,
            stash(&linux::initramfs(), dir, "initramfs.cpio.gz")?,
        )
    } else {
        (dir.join("Image"), dir.join("initramfs.cpio.gz"))
    };
    let kernel_len = file_len(&kernel)?;
    if kernel_len > layout.kernel_size {
        bail!(
            "the kernel Image ({kernel_len} bytes) does not fit the partition's kernel_size ({})",
            layout.kernel_size
        );
    }
    let initrd_size = file_len(&initrd)?;
    if initrd_size > layout.initrd_size {
        bail!(
            "the initramfs ({initrd_size} bytes) does not fit the partition's initrd room ({})",
            layout.initrd_size
        );
    }
    let info = BootInfoFile {
        path: dir.join("bootinfo.bin"),
        initrd_size,
        kaslr_seed: kaslr_seed()?,
        bootargs: String::new(),
        flags: 0,
        measured,
    };
    info.write()?;
    let loads = vec![
        (kernel, layout.kernel_base),
        (initrd, layout.initrd_base),
        (info.path.clone(), bootinfo::ADDR),
    ];
    Ok((loads, Some(info)))
}

/// What spumone digests of the other guests: the first one's code and read-only data.
fn measured_range(guest_elves: &[PathBuf]) -> Result<Option<(u64, u64)>> {
    match guest_elves.first() {
        Some(elf) => {
            let bytes =
                fs::read(elf).with_context(|| format!("reading {}", paths::display(elf)))?;
            read_only_range(&bytes)
                .with_context(|| format!("reading the segments of {}", paths::display(elf)))
        }
        None => Ok(None),
    }
}

/// The span of an ELF image's loaded segments that are not writable, as `(base, len)`: its
/// code and read-only data.
pub fn read_only_range(elf: &[u8]) -> Result<Option<(u64, u64)>> {
    Ok(read_only_image(elf)?.map(|(base, bytes)| (base, bytes.len() as u64)))
}

/// That span's bytes as loaded (gaps between segments are zero, as in RAM at boot): what
/// spumone's integrity digest hashes.
pub fn read_only_image(elf: &[u8]) -> Result<Option<(u64, Vec<u8>)>> {
    use object::{Object, ObjectSegment, SegmentFlags};
    const PF_W: u32 = 2;
    let file = object::File::parse(elf)?;
    let mut parts = Vec::new();
    for segment in file.segments() {
        let writable = match segment.flags() {
            SegmentFlags::Elf { p_flags } => p_flags & PF_W != 0,
            _ => true,
        };
        let data = segment.data()?;
        if !writable && !data.is_empty() {
            parts.push((segment.address(), data));
        }
    }
    let Some(base) = parts.iter().map(|(a, _)| *a).min() else {
        return Ok(None);
    };
    let end = parts
        .iter()
        .map(|(a, d)| a + d.len() as u64)
        .max()
        .unwrap_or(base);
    let mut bytes = vec![0u8; (end - base) as usize];
    for (addr, data) in parts {
        let at = (addr - base) as usize;
        bytes[at..at + data.len()].copy_from_slice(data);
    }
    Ok(Some((base, bytes)))
}

/// Removes the boot-info blobs earlier `--cmd` runs wrote beside a build.
fn remove_command_blobs(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("bootinfo-") && name.ends_with(".bin") {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn file_len(path: &Path) -> Result<u64> {
    Ok(fs::metadata(path)
        .with_context(|| format!("{} is missing", paths::display(path)))?
        .len())
}

fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// One firmware binary as cargo builds it: package, binary, target, features and environment.
struct FirmwareBin<'a> {
    package: &'a str,
    bin: &'a str,
    target: &'a str,
    features: &'a [&'a str],
    env: &'a [(&'a str, &'a OsStr)],
}

impl FirmwareBin<'_> {
    /// `cargo <subcommand> --release` for it: how it is built, and linted.
    fn cargo(&self, subcommand: &str) -> Command {
        let mut cmd = Command::new(cargo());
        cmd.current_dir(workspace_root())
            .args([
                subcommand,
                "--release",
                "-p",
                self.package,
                "--bin",
                self.bin,
                "--target",
                self.target,
            ])
            .arg("--target-dir")
            .arg(target_dir());
        if !self.features.is_empty() {
            cmd.arg("--features").arg(self.features.join(","));
        }
        for (key, value) in self.env {
            cmd.env(key, value);
        }
        cmd
    }

    /// Runs `cargo build --release`; returns the built binary.
    fn build(&self, what: &str) -> Result<PathBuf> {
        let status = self
            .cargo("build")
            .status()
            .with_context(|| format!("cannot start cargo to build {what}"))?;
        if !status.success() {
            bail!("building {what} failed (see the compiler output above)");
        }
        let built = target_dir()
            .join(self.target)
            .join("release")
            .join(self.bin);
        if !built.is_file() {
            bail!(
                "building {what} succeeded but {} is missing",
                paths::display(&built)
            );
        }
        Ok(built)
    }

    /// Runs `cargo clippy --release` on it with warnings as errors.
    fn lint(&self, what: &str) -> Result<()> {
        let status = self
            .cargo("clippy")
            .args(["--", "-D", "warnings"])
            .status()
            .with_context(|| format!("cannot start cargo clippy for {what}"))?;
        if !status.success() {
            bail!("clippy found problems in {what} (see its output above)");
        }
        Ok(())
    }
}

/// Copies a built image into `dir` under `name`.
fn stash(built: &Path, dir: &Path, name: &str) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", paths::display(dir)))?;
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

fn build_guest(
    image_name: &str,
    scenario: &str,
    dir: &Path,
    options: &BuildOptions,
) -> Result<PathBuf> {
    let Some(image) = guest_image(image_name) else {
        bail!("scenario {scenario}: unknown guest image `{image_name}`");
    };
    let latency = options.latency.env();
    let env = os_env(&latency);
    let Some(firmware) = image.cargo_bin(&env) else {
        bail!("scenario {scenario}: the Linux image is not yet loaded by spumone scenarios");
    };
    let built = firmware.build(image.name)?;
    stash(&built, dir, &format!("{}.elf", image.name))
}

fn os_env<'a>(env: &'a [(&'static str, OsString)]) -> Vec<(&'static str, &'a OsStr)> {
    env.iter().map(|(k, v)| (*k, v.as_os_str())).collect()
}

impl GuestImage {
    /// How cargo builds it with `env`, if it comes from this workspace.
    fn cargo_bin<'a>(&self, env: &'a [(&'a str, &'a OsStr)]) -> Option<FirmwareBin<'a>> {
        let ImageSource::Cargo {
            package,
            bin,
            target,
        } = self.source
        else {
            return None;
        };
        Some(FirmwareBin {
            package,
            bin,
            target,
            features: &[],
            env,
        })
    }
}

/// Lints the firmware as `build` compiles it, for its bare-metal targets, where all the
/// `unsafe` lives (`cargo clippy --workspace` covers the host builds): spumone with the
/// default scenario's config (a Linux partition, every DSM checker) under each logging
/// backend, and the guests built by cargo. Needs the Linux `Image` (`cargo xtask setup`).
pub fn clippy() -> Result<()> {
    let config = match crate::scenario::find(DEFAULT_SCENARIO).map(|s| s.kind) {
        Some(Kind::Hypervisor { config }) => workspace_root().join(config),
        _ => bail!("the default scenario {DEFAULT_SCENARIO} does not run spumone"),
    };
    let image = linux::kernel_image();
    let hv_env = [
        ("SPUMONE_CONFIG", config.as_os_str()),
        (crate::ci::LINUX_IMAGE_ENV, image.as_os_str()),
    ];
    for features in [&[][..], &["plain-log"]] {
        FirmwareBin {
            package: "spumone",
            bin: "spumone",
            target: HV_TARGET,
            features,
            env: &hv_env,
        }
        .lint("spumone")?;
    }
    let latency = LatencySettings::DEFAULT.env();
    let guest_env = os_env(&latency);
    for image in GUEST_IMAGES {
        if let Some(firmware) = image.cargo_bin(&guest_env) {
            firmware.lint(image.name)?;
        }
    }
    Ok(())
}

/// Builds what `scenario` boots and copies it to `target/images/<scenario>/`.
pub fn build(scenario: &'static Scenario, options: &BuildOptions) -> Result<Firmware> {
    build_into(scenario, options, &images_dir(scenario.name))
}

/// Builds what `scenario` boots and copies it to `dir` (benchmarks keep their images apart
/// from the ones the tests boot).
pub fn build_into(
    scenario: &'static Scenario,
    options: &BuildOptions,
    dir: &Path,
) -> Result<Firmware> {
    match scenario.kind {
        Kind::Native { image, cpus } => {
            println!("build: {} ({image} without the hypervisor)", scenario.name);
            if guest_image(image).map(|g| g.source) == Some(ImageSource::DebianLinux) {
                linux::ensure(false)?;
                let kernel = stash(&linux::kernel_image(), dir, "Image")?;
                let initrd = stash(&linux::initramfs(), dir, "initramfs.cpio.gz")?;
                return Ok(native_linux(scenario, cpus, kernel, initrd));
            }
            let kernel = build_guest(image, scenario.name, dir, options)?;
            Ok(Firmware {
                scenario,
                cpus,
                kernel,
                loads: Vec::new(),
                consoles: vec![image.to_string()],
                hv_elf: None,
                plain_log: false,
                initrd: None,
                append: None,
                raw_loads: Vec::new(),
                boot_info: None,
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
            // spumone's build script renders the DSM's kernel symbols from this Image, so a
            // config with Linux needs it (fetched on a fresh machine) before spumone builds.
            if partitions.iter().any(|p| p.linux.is_some()) {
                linux::ensure(false)?;
            }
            let image = crate::linux::kernel_image();
            let built = FirmwareBin {
                package: "spumone",
                bin: "spumone",
                target: HV_TARGET,
                features,
                env: &[
                    ("SPUMONE_CONFIG", config_path.as_os_str()),
                    (crate::ci::LINUX_IMAGE_ENV, image.as_os_str()),
                ],
            }
            .build("spumone")?;
            let kernel = stash(&built, dir, "spumone.elf")?;
            let mut loads = Vec::new();
            for p in partitions.iter().filter(|p| p.linux.is_none()) {
                let path = build_guest(&p.image, scenario.name, dir, options)?;
                if !loads.contains(&path) {
                    loads.push(path);
                }
            }
            let measured = measured_range(&loads)?;
            let (raw_loads, boot_info) = linux_loads(&partitions, dir, true, measured)?;
            Ok(Firmware {
                scenario,
                cpus: config::cores(&config_path)?,
                hv_elf: Some(kernel.clone()),
                kernel,
                loads,
                consoles: config::console_names(&partitions)?,
                plain_log: options.plain_log,
                initrd: None,
                append: None,
                raw_loads,
                boot_info,
            })
        }
    }
}

/// Whether `scenario` boots the Debian kernel, natively or in a partition (so `--cmd` can
/// reach it).
pub fn boots_linux(scenario: &Scenario) -> bool {
    match scenario.kind {
        Kind::Native { image, .. } => {
            guest_image(image).map(|g| g.source) == Some(ImageSource::DebianLinux)
        }
        Kind::Hypervisor { config } => config::load(&workspace_root().join(config))
            .is_ok_and(|parts| parts.iter().any(|p| p.linux.is_some())),
    }
}

/// The Debian kernel booted directly by QEMU, its console shown as `[linux]`.
fn native_linux(
    scenario: &'static Scenario,
    cpus: u32,
    kernel: PathBuf,
    initrd: PathBuf,
) -> Firmware {
    Firmware {
        scenario,
        cpus,
        kernel,
        loads: Vec::new(),
        consoles: vec![linux::CONSOLE.to_string()],
        hv_elf: None,
        plain_log: false,
        initrd: Some(initrd),
        append: Some(linux::NATIVE_APPEND.to_string()),
        raw_loads: Vec::new(),
        boot_info: None,
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
        Kind::Native { image, cpus }
            if guest_image(image).map(|g| g.source) == Some(ImageSource::DebianLinux) =>
        {
            Ok(native_linux(
                scenario,
                cpus,
                need("Image")?,
                need("initramfs.cpio.gz")?,
            ))
        }
        Kind::Native { image, cpus } => Ok(Firmware {
            scenario,
            cpus,
            kernel: need(&format!("{image}.elf"))?,
            loads: Vec::new(),
            consoles: vec![image.to_string()],
            hv_elf: None,
            plain_log: false,
            initrd: None,
            append: None,
            raw_loads: Vec::new(),
            boot_info: None,
        }),
        Kind::Hypervisor { config } => {
            let config_path = workspace_root().join(config);
            let partitions = config::load(&config_path)?;
            let kernel = need("spumone.elf")?;
            let mut loads = Vec::new();
            for p in partitions.iter().filter(|p| p.linux.is_none()) {
                let path = need(&format!("{}.elf", p.image))?;
                if !loads.contains(&path) {
                    loads.push(path);
                }
            }
            let measured = measured_range(&loads)?;
            let (raw_loads, boot_info) = linux_loads(&partitions, &dir, false, measured)?;
            Ok(Firmware {
                scenario,
                cpus: config::cores(&config_path)?,
                hv_elf: Some(kernel.clone()),
                kernel,
                loads,
                consoles: config::console_names(&partitions)?,
                plain_log: false,
                initrd: None,
                append: None,
                raw_loads,
                boot_info,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |key| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_measured_range_is_an_elf_s_read_only_segments() {
        // This very test program is an ELF with read-only segments.
        let me = fs::read(std::env::current_exe().unwrap()).unwrap();
        let (base, len) = read_only_range(&me).unwrap().expect("read-only segments");
        let (at, bytes) = read_only_image(&me).unwrap().unwrap();
        assert_eq!((at, bytes.len() as u64), (base, len));
        assert!(len > 0);
        assert!(read_only_range(b"not an elf").is_err());
    }

    #[test]
    fn latency_settings_default_and_override() {
        assert_eq!(
            LatencySettings::from_vars(vars(&[])).unwrap(),
            LatencySettings::DEFAULT
        );
        let s = LatencySettings::from_vars(vars(&[
            ("RTOS_LATENCY_SAMPLES", "2000"),
            ("RTOS_LATENCY_PERIOD_US", " 250 "),
        ]))
        .unwrap();
        assert_eq!((s.samples, s.period_us), (2000, 250));
        assert_eq!(s.probe_seconds(), 0.5);
    }

    #[test]
    fn latency_settings_reject_what_the_rtos_cannot_do() {
        for bad in [
            ("RTOS_LATENCY_SAMPLES", "0"),
            ("RTOS_LATENCY_SAMPLES", "100001"),
            ("RTOS_LATENCY_SAMPLES", "1e4"),
            ("RTOS_LATENCY_PERIOD_US", "0"),
            ("RTOS_LATENCY_PERIOD_US", "-5"),
        ] {
            let err = LatencySettings::from_vars(vars(&[bad])).unwrap_err();
            assert!(!format!("{err:#}").is_empty(), "{bad:?} accepted");
        }
        let err = format!(
            "{:#}",
            LatencySettings::from_vars(vars(&[("RTOS_LATENCY_SAMPLES", "x")])).unwrap_err()
        );
        assert!(err.contains("RTOS_LATENCY_SAMPLES"), "{err}");
    }
}
