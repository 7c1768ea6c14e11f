//! The Linux guest: the pinned Debian arm64 kernel and `busybox-static`, fetched through apt
//! multiarch and verified against the package index, and the initramfs built from them with
//! the recipe in `guests/linux/`.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cpio::Archive;
use crate::paths::{self, cache_dir, workspace_root};
use crate::setup::{self, State, Step};

/// The pinned kernel ABI: package `linux-image-<ABI>-arm64`.
pub const PINNED_KERNEL_ABI: &str = "6.1.0-56";
pub const BUSYBOX_PACKAGE: &str = "busybox-static";
/// Modules the initramfs loads (with whatever their `depends=` pulls in): the virtio-pci
/// transport (Linux's devices are on PCI, behind the SMMU under spumone), the disk, the
/// network card and ext4.
pub const MODULES: [&str; 8] = [
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "crc16",
    "crc32c_generic",
    "mbcache",
    "jbd2",
    "ext4",
];
/// The console name (and `[linux]` prefix) of the Linux guest.
pub const CONSOLE: &str = "linux";
/// Kernel parameter carrying the base64 command `/init` runs instead of a shell.
pub const CMD_PARAM: &str = "spumone.cmd";
/// What `/init` prints after the command, followed by its status.
pub const STATUS_MARKER: &str = "spumone: command exit status ";
/// What `/init` prints once the modules are loaded.
pub const READY_LINE: &str = "spumone: linux ready";
/// The kernel command line of a native boot (`panic=-1` with `-no-reboot` ends a panic).
pub const NATIVE_APPEND: &str = "console=ttyAMA0 panic=-1";
/// Bumped when the initramfs layout changes, so cached images are rebuilt.
const RECIPE_VERSION: u32 = 2;
/// The DHCP client's hook, at the path Debian's busybox `udhcpc` runs by default.
const UDHCPC_SCRIPT: &str = "etc/udhcpc/default.script";

/// `guests/linux/`: the init script and README.
pub fn recipe_dir() -> PathBuf {
    workspace_root().join("guests").join("linux")
}

/// Downloaded `.deb`s, their record, and the unpacked trees.
pub fn debian_dir() -> PathBuf {
    cache_dir().join("debian")
}

/// The record of verified packages: `name version sha256 file` lines.
fn record_path() -> PathBuf {
    debian_dir().join("packages.txt")
}

/// Where the built kernel `Image` and initramfs live.
pub fn images_dir() -> PathBuf {
    debian_dir().join("linux")
}

pub fn kernel_image() -> PathBuf {
    images_dir().join("Image")
}

pub fn initramfs() -> PathBuf {
    images_dir().join("initramfs.cpio.gz")
}

fn stamp_path() -> PathBuf {
    images_dir().join("inputs.stamp")
}

/// The Linux setup steps, in order: packages, the test modules built against them, images.
pub fn steps() -> Vec<Box<dyn Step>> {
    let mut steps: Vec<Box<dyn Step>> = vec![Box::new(DebianPackages)];
    steps.extend(crate::modules::steps());
    steps.push(Box::new(GuestImages));
    steps
}

/// Makes sure the kernel and initramfs exist (fetching and building what is missing).
pub fn ensure(verbose: bool) -> Result<()> {
    setup::ensure_steps(&steps(), verbose)
}

/// One verified package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub sha256: String,
    /// File name inside [`debian_dir`].
    pub file: String,
}

fn parse_record(text: &str) -> Vec<Package> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some(Package {
                name: w.next()?.into(),
                version: w.next()?.into(),
                sha256: w.next()?.into(),
                file: w.next()?.into(),
            })
        })
        .collect()
}

pub(crate) fn read_record() -> Option<Vec<Package>> {
    let packages = parse_record(&fs::read_to_string(record_path()).ok()?);
    let kernel = packages.iter().any(|p| p.name.starts_with("linux-image-"));
    let busybox = packages.iter().any(|p| p.name == BUSYBOX_PACKAGE);
    (kernel && busybox).then_some(packages)
}

/// The SHA-256 of a file, by the host's `sha256sum`.
pub(crate) fn sha256_of(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .context("cannot run sha256sum (coreutils)")?;
    if !out.status.success() {
        bail!("sha256sum {} failed", paths::display(path));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    match text.split_whitespace().next() {
        Some(hash) if hash.len() == 64 => Ok(hash.to_string()),
        _ => bail!("unexpected sha256sum output: {text}"),
    }
}

/// Runs a command and returns its stdout, or an error naming it with its stderr.
pub(crate) fn capture(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start {shown}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("{shown} failed: {}", err.trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn run_shown(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

/// The fields of one `apt-cache show` stanza that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub version: String,
    pub sha256: String,
}

/// Reads `Version:` and `SHA256:` from `apt-cache show --no-all-versions` output.
pub fn parse_index_entry(text: &str) -> Option<IndexEntry> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    Some(IndexEntry {
        version: field("Version:")?,
        sha256: field("SHA256:")?.to_ascii_lowercase(),
    })
}

fn index_entry(package: &str) -> Option<IndexEntry> {
    index_entry_of(&format!("{package}:arm64"))
}

/// The index entry of an apt spec (`name:arch` or `name:arch=version`).
fn index_entry_of(spec: &str) -> Option<IndexEntry> {
    let out = Command::new("apt-cache")
        .args(["show", "--no-all-versions", spec])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_index_entry(&String::from_utf8_lossy(&out.stdout))
}

/// Every version of `package:arch` the apt index holds.
pub(crate) fn index_versions(package: &str, arch: &str) -> Vec<String> {
    let Ok(out) = Command::new("apt-cache")
        .args(["show", &format!("{package}:{arch}")])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("Version:").map(|v| v.trim().to_string()))
        .collect()
}

/// The Debian revision of a version as numbers (`6.1.192-3` -> `[3]`, `2+deb12u1` ->
/// `[2, 12, 1]`), for ordering revisions of one upstream version.
fn revision_key(version: &str) -> Vec<u64> {
    let revision = version.rsplit_once('-').map_or("", |(_, r)| r);
    revision
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// The version to take of a package built from the same source upload as `version`: that
/// version if `available` has it, else the newest with the same upstream version (Debian
/// re-uploads a package such as `linux-kbuild` with a new revision only).
pub fn same_upstream(version: &str, available: &[String]) -> Option<String> {
    if available.iter().any(|v| v == version) {
        return Some(version.to_string());
    }
    let upstream = |v: &str| v.rsplit_once('-').map_or(v, |(u, _)| u).to_string();
    let want = upstream(version);
    available
        .iter()
        .filter(|v| upstream(v) == want)
        .max_by_key(|v| revision_key(v))
        .cloned()
}

/// The newest `linux-image-6.1.0-<N>-arm64` among package names.
pub fn newest_kernel<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<String> {
    names
        .into_iter()
        .filter_map(|name| {
            let name = name.trim().trim_end_matches(":arm64");
            let n: u32 = name
                .strip_prefix("linux-image-6.1.0-")?
                .strip_suffix("-arm64")?
                .parse()
                .ok()?;
            Some((n, name.to_string()))
        })
        .max()
        .map(|(_, name)| name)
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Enables the arm64 architecture in apt when its index is not there yet.
fn ensure_multiarch() -> Result<()> {
    if index_entry(BUSYBOX_PACKAGE).is_some() {
        return Ok(());
    }
    if !(is_root() && Path::new("/etc/debian_version").exists()) {
        bail!(
            "apt knows no arm64 packages: run `cargo xtask setup` as root on Debian (it runs \
             `dpkg --add-architecture arm64 && apt-get update`), or do that yourself"
        );
    }
    let foreign = capture(Command::new("dpkg").arg("--print-foreign-architectures"))?;
    if !foreign.split_whitespace().any(|a| a == "arm64") {
        println!("setup: dpkg --add-architecture arm64");
        run_shown(Command::new("dpkg").args(["--add-architecture", "arm64"]))?;
    }
    println!("setup: apt-get update");
    run_shown(crate::setup::apt_get().args(["-q", "update"]))?;
    if index_entry(BUSYBOX_PACKAGE).is_none() {
        bail!("apt still knows no {BUSYBOX_PACKAGE}:arm64 after enabling arm64");
    }
    Ok(())
}

/// The kernel package to fetch: the pin, or the newest 6.1 one if the pin has left the archive.
fn kernel_package() -> Result<String> {
    let pinned = format!("linux-image-{PINNED_KERNEL_ABI}-arm64");
    if index_entry(&pinned).is_some() {
        return Ok(pinned);
    }
    let names = capture(Command::new("apt-cache").args(["pkgnames", "linux-image-6.1.0-"]))?;
    let Some(newest) = newest_kernel(names.lines()) else {
        bail!("neither {pinned} nor any other linux-image-6.1.0-*-arm64 is in the apt index");
    };
    println!("setup: pinned {pinned} has left the archive; using {newest} instead");
    Ok(newest)
}

/// Downloads `package:arm64` into the cache (unless a verified copy is there) and checks its
/// SHA-256 against the index.
fn fetch(package: &str) -> Result<Package> {
    fetch_as(package, "arm64", None)
}

/// Like [`fetch`] for `package:arch`, at `version` when given (else the index's candidate).
pub(crate) fn fetch_as(package: &str, arch: &str, version: Option<&str>) -> Result<Package> {
    let mut spec = format!("{package}:{arch}");
    if let Some(version) = version {
        spec = format!("{spec}={version}");
    }
    let Some(entry) = index_entry_of(&spec) else {
        bail!("{spec} is not in the apt index");
    };
    let dir = debian_dir();
    let file = format!("{package}_{arch}.deb");
    let dest = dir.join(&file);
    if !(dest.is_file() && sha256_of(&dest)? == entry.sha256) {
        let download = dir.join("download");
        let _ = fs::remove_dir_all(&download);
        fs::create_dir_all(&download)
            .with_context(|| format!("creating {}", paths::display(&download)))?;
        println!(
            "setup: apt-get download {package}:{arch} ({})",
            entry.version
        );
        let mut cmd = crate::setup::apt_get();
        cmd.args(["-q", "download"]);
        if is_root() {
            // apt's `_apt` user cannot write into a root-owned cache.
            cmd.args(["-o", "APT::Sandbox::User=root"]);
        }
        run_shown(
            cmd.arg(format!("{package}:{arch}={}", entry.version))
                .current_dir(&download),
        )?;
        let debs: Vec<PathBuf> = fs::read_dir(&download)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "deb"))
            .collect();
        let [got] = debs.as_slice() else {
            bail!("apt-get download {package} left {} .deb files", debs.len());
        };
        fs::rename(got, &dest).with_context(|| format!("moving {}", paths::display(got)))?;
        let _ = fs::remove_dir_all(&download);
    }
    let actual = sha256_of(&dest)?;
    if actual != entry.sha256 {
        let _ = fs::remove_file(&dest);
        bail!(
            "{file}: SHA-256 {actual} does not match the apt index ({}); removed it",
            entry.sha256
        );
    }
    Ok(Package {
        name: package.to_string(),
        version: entry.version,
        sha256: actual,
        file,
    })
}

/// The kernel and busybox `.deb`s, verified.
struct DebianPackages;

impl DebianPackages {
    fn verified() -> Result<Option<Vec<Package>>> {
        let Some(packages) = read_record() else {
            return Ok(None);
        };
        for p in &packages {
            let path = debian_dir().join(&p.file);
            if !path.is_file() || sha256_of(&path)? != p.sha256 {
                return Ok(None);
            }
        }
        Ok(Some(packages))
    }
}

impl Step for DebianPackages {
    fn name(&self) -> String {
        "debian arm64 packages".into()
    }

    fn check(&self) -> Result<State> {
        Ok(match Self::verified()? {
            Some(packages) => {
                let list: Vec<String> = packages
                    .iter()
                    .map(|p| format!("{} {}", p.name, p.version))
                    .collect();
                State::Ready(format!(
                    "debian arm64 {} (sha256 verified)",
                    list.join(", ")
                ))
            }
            None => State::Missing("not downloaded".into()),
        })
    }

    fn run(&self) -> Result<()> {
        fs::create_dir_all(debian_dir())
            .with_context(|| format!("creating {}", paths::display(&debian_dir())))?;
        ensure_multiarch()?;
        let kernel = kernel_package()?;
        let mut record = String::new();
        for name in [kernel.as_str(), BUSYBOX_PACKAGE] {
            let p = fetch(name)?;
            println!(
                "setup: {} {} sha256 {} matches the index",
                p.name, p.version, p.sha256
            );
            record.push_str(&format!(
                "{} {} {} {}\n",
                p.name, p.version, p.sha256, p.file
            ));
        }
        fs::write(record_path(), record).context("writing the package record")
    }
}

/// The kernel `Image` and the initramfs.
struct GuestImages;

/// What the images are built from; a change rebuilds them.
fn inputs_stamp() -> Result<String> {
    let record = fs::read_to_string(record_path()).unwrap_or_default();
    let init_path = recipe_dir().join("init");
    let init =
        fs::read(&init_path).with_context(|| format!("reading {}", paths::display(&init_path)))?;
    let script = fs::read(recipe_dir().join("udhcpc.script")).context("udhcpc.script")?;
    Ok(format!(
        "recipe {RECIPE_VERSION}\nmodules {}\ninit {:016x}\nudhcpc {:016x}\n{record}{}",
        MODULES.join(","),
        fnv1a(&init),
        fnv1a(&script),
        crate::modules::built_stamp()
    ))
}

pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Step for GuestImages {
    fn name(&self) -> String {
        "linux guest images".into()
    }

    fn check(&self) -> Result<State> {
        let built = kernel_image().is_file() && initramfs().is_file();
        let current = fs::read_to_string(stamp_path()).ok() == Some(inputs_stamp()?);
        Ok(if built && current {
            State::Ready(format!(
                "linux {} + {}",
                paths::display(&kernel_image()),
                paths::display(&initramfs())
            ))
        } else {
            State::Missing("kernel Image and initramfs not built".into())
        })
    }

    fn run(&self) -> Result<()> {
        let Some(packages) = read_record() else {
            bail!("the Debian packages are not downloaded (run `cargo xtask setup`)");
        };
        let stamp = inputs_stamp()?;
        let unpacked = debian_dir().join("unpacked");
        let mut kernel_tree = None;
        let mut busybox_tree = None;
        for p in &packages {
            let dir = unpacked.join(&p.name);
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir)?;
            run_shown(
                Command::new("dpkg-deb")
                    .arg("-x")
                    .arg(debian_dir().join(&p.file))
                    .arg(&dir),
            )?;
            if p.name.starts_with("linux-image-") {
                kernel_tree = Some((dir, p.name.clone()));
            } else if p.name == BUSYBOX_PACKAGE {
                busybox_tree = Some(dir);
            }
        }
        let (Some((kernel_tree, kernel_name)), Some(busybox_tree)) = (kernel_tree, busybox_tree)
        else {
            bail!("the package record lacks the kernel or busybox");
        };
        let release = kernel_name.trim_start_matches("linux-image-").to_string();
        let vmlinuz = kernel_tree.join("boot").join(format!("vmlinuz-{release}"));
        fs::create_dir_all(images_dir())?;
        fs::copy(&vmlinuz, kernel_image())
            .with_context(|| format!("copying {}", paths::display(&vmlinuz)))?;

        let modules_root = kernel_tree.join("lib").join("modules").join(&release);
        let found = index_modules(&modules_root)?;
        let mut contents = BTreeMap::new();
        let order = load_order(&MODULES, |name| {
            let Some(path) = found.get(name) else {
                bail!("module {name} is not in {}", paths::display(&modules_root));
            };
            let bytes = read_module(path)?;
            let deps = modinfo_depends(&bytes)
                .with_context(|| format!("reading .modinfo of {}", paths::display(path)))?;
            contents.insert(name.to_string(), bytes);
            Ok(deps)
        })?;

        let busybox = fs::read(busybox_tree.join("bin").join("busybox")).context("busybox")?;
        let init_path = recipe_dir().join("init");
        let init = fs::read(&init_path)
            .with_context(|| format!("reading {}", paths::display(&init_path)))?;
        let mut cpio = Archive::new();
        for dir in [
            "bin",
            "sbin",
            "usr",
            "usr/bin",
            "usr/sbin",
            "dev",
            "proc",
            "sys",
            "tmp",
            "root",
            "etc",
            "etc/udhcpc",
            "lib",
            "lib/modules",
            crate::modules::GUEST_DIR,
        ] {
            cpio.dir(dir, 0o755);
        }
        cpio.char_device("dev/console", 0o600, 5, 1);
        cpio.file("bin/busybox", 0o755, &busybox);
        cpio.symlink("bin/sh", "busybox");
        cpio.file("init", 0o755, &init);
        let script_path = recipe_dir().join("udhcpc.script");
        let script = fs::read(&script_path)
            .with_context(|| format!("reading {}", paths::display(&script_path)))?;
        cpio.file(UDHCPC_SCRIPT, 0o755, &script);
        for name in &order {
            cpio.file(&format!("lib/modules/{name}.ko"), 0o644, &contents[name]);
        }
        let mut list = order.join("\n");
        list.push('\n');
        cpio.file("lib/modules/order", 0o644, list.as_bytes());
        // Test modules and tools: shipped, never loaded by /init.
        for (path, mode, data) in crate::modules::guest_files()? {
            cpio.file(&path, mode, &data);
        }
        let gz = gzip(&cpio.finish())?;
        // Other checkouts share this cache: replace the file in one step.
        let tmp = initramfs().with_extension(format!("tmp{}", std::process::id()));
        fs::write(&tmp, gz).context("writing the initramfs")?;
        fs::rename(&tmp, initramfs()).context("replacing the initramfs")?;
        println!(
            "setup: initramfs with busybox, /init and modules {}",
            order.join(" ")
        );
        fs::write(stamp_path(), stamp).context("writing the stamp")
    }
}

/// Module name (with `_`, as `depends=` spells it) → path of its `.ko` or `.ko.xz`.
fn index_modules(root: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries =
            fs::read_dir(&dir).with_context(|| format!("reading {}", paths::display(&dir)))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let stem = name
                .strip_suffix(".ko")
                .or_else(|| name.strip_suffix(".ko.xz"));
            if let Some(stem) = stem {
                found.insert(stem.replace('-', "_"), path.clone());
            }
        }
    }
    Ok(found)
}

/// A module's bytes, decompressed by the host `xz` when it is a `.ko.xz`.
fn read_module(path: &Path) -> Result<Vec<u8>> {
    if path.extension().is_some_and(|e| e == "xz") {
        let out = Command::new("xz")
            .arg("-dc")
            .arg(path)
            .stdin(Stdio::null())
            .output()
            .context("cannot run xz to unpack a .ko.xz (install xz-utils)")?;
        if !out.status.success() {
            bail!("xz -dc {} failed", paths::display(path));
        }
        return Ok(out.stdout);
    }
    fs::read(path).with_context(|| format!("reading {}", paths::display(path)))
}

fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut child = Command::new("gzip")
        .args(["-9", "-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run gzip")?;
    let mut stdin = child.stdin.take().context("gzip stdin")?;
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().context("running gzip")?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("gzip writer failed"))?
        .context("feeding gzip")?;
    if !out.status.success() {
        bail!("gzip failed ({})", out.status);
    }
    Ok(out.stdout)
}

/// The `depends=` list of a module's `.modinfo` ELF section.
pub fn modinfo_depends(elf: &[u8]) -> Result<Vec<String>> {
    let modinfo = elf_section(elf, ".modinfo")?;
    let entry = modinfo
        .split(|&b| b == 0)
        .find_map(|s| s.strip_prefix(b"depends="))
        .unwrap_or_default();
    Ok(String::from_utf8_lossy(entry)
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect())
}

/// The contents of the named section of a little-endian ELF64 file.
fn elf_section<'a>(elf: &'a [u8], wanted: &str) -> Result<&'a [u8]> {
    let u16_at = |o: usize| -> Option<u64> {
        Some(u64::from(u16::from_le_bytes(
            elf.get(o..o + 2)?.try_into().ok()?,
        )))
    };
    let u32_at = |o: usize| -> Option<u64> {
        Some(u64::from(u32::from_le_bytes(
            elf.get(o..o + 4)?.try_into().ok()?,
        )))
    };
    let u64_at =
        |o: usize| -> Option<u64> { Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?)) };
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        bail!("not a little-endian ELF64 file");
    }
    let find = || -> Option<Option<&'a [u8]>> {
        let shoff = u64_at(0x28)? as usize;
        let shentsize = u16_at(0x3a)? as usize;
        let shnum = u16_at(0x3c)? as usize;
        let shstrndx = u16_at(0x3e)? as usize;
        let header = |i: usize| shoff + i * shentsize;
        let strtab = u64_at(header(shstrndx) + 0x18)? as usize;
        for i in 0..shnum {
            let h = header(i);
            let name_at = strtab + u32_at(h)? as usize;
            let name = elf.get(name_at..)?.split(|&b| b == 0).next()?;
            if name == wanted.as_bytes() {
                let offset = u64_at(h + 0x18)? as usize;
                let size = u64_at(h + 0x20)? as usize;
                return Some(Some(elf.get(offset..offset.checked_add(size)?)?));
            }
        }
        Some(None)
    };
    match find() {
        Some(Some(section)) => Ok(section),
        Some(None) => bail!("no {wanted} section"),
        None => bail!("truncated ELF file"),
    }
}

/// The modules to load, dependencies first: `wanted` plus everything their `depends=` pulls
/// in, each once, in an order where every module comes after what it depends on.
pub fn load_order(
    wanted: &[&str],
    mut depends: impl FnMut(&str) -> Result<Vec<String>>,
) -> Result<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    let mut marks: BTreeMap<String, Mark> = BTreeMap::new();
    let mut order = Vec::new();
    // Iterative depth-first walk: (module, its dependencies, next one to visit).
    for &root in wanted {
        if marks.contains_key(root) {
            continue;
        }
        let mut stack: Vec<(String, Vec<String>, usize)> = Vec::new();
        marks.insert(root.to_string(), Mark::Visiting);
        stack.push((root.to_string(), depends(root)?, 0));
        while let Some((name, deps, next)) = stack.last_mut() {
            if let Some(dep) = deps.get(*next).cloned() {
                *next += 1;
                match marks.get(&dep) {
                    Some(Mark::Done) => {}
                    Some(Mark::Visiting) => bail!("modules {name} and {dep} depend on each other"),
                    None => {
                        marks.insert(dep.clone(), Mark::Visiting);
                        let d = depends(&dep)?;
                        stack.push((dep, d, 0));
                    }
                }
            } else {
                marks.insert(name.clone(), Mark::Done);
                order.push(name.clone());
                stack.pop();
            }
        }
    }
    Ok(order)
}

/// Standard base64 with padding (for the `spumone.cmd=` parameter).
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The longest `--cmd` accepted: the arm64 kernel command line holds 2048 bytes.
pub const MAX_CMD_LEN: usize = 1200;

/// The kernel parameter that makes `/init` run `cmd` and power off.
pub fn cmd_param(cmd: &str) -> Result<String> {
    if cmd.trim().is_empty() {
        bail!("--cmd needs a command");
    }
    if cmd.len() > MAX_CMD_LEN {
        bail!(
            "--cmd is {} bytes; at most {MAX_CMD_LEN} fit the kernel command line",
            cmd.len()
        );
    }
    Ok(format!("{CMD_PARAM}={}", base64(cmd.as_bytes())))
}

/// The status in the last `spumone: command exit status N` line, if any.
pub fn command_status<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<i32> {
    lines
        .into_iter()
        .filter_map(|l| {
            let at = l.find(STATUS_MARKER)?;
            l[at + STATUS_MARKER.len()..].trim().parse().ok()
        })
        .last()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deps_of<'a>(
        table: &'a [(&'a str, &'a [&'a str])],
        asked: &'a std::cell::RefCell<Vec<String>>,
    ) -> impl FnMut(&str) -> Result<Vec<String>> + 'a {
        move |name| {
            asked.borrow_mut().push(name.to_string());
            match table.iter().find(|(n, _)| *n == name) {
                Some((_, d)) => Ok(d.iter().map(|s| s.to_string()).collect()),
                None => bail!("unknown module {name}"),
            }
        }
    }

    #[test]
    fn a_reuploaded_package_is_taken_at_the_same_upstream_version() {
        let v = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let available = v(&["6.1.192-3", "6.1.176-1"]);
        assert_eq!(
            same_upstream("6.1.192-2", &available).as_deref(),
            Some("6.1.192-3")
        );
        // The exact version wins when it is there, even beside a newer revision.
        let both = v(&["6.1.192-3", "6.1.192-2"]);
        assert_eq!(
            same_upstream("6.1.192-2", &both).as_deref(),
            Some("6.1.192-2")
        );
        let revisions = v(&["6.1.192-2+deb12u1", "6.1.192-10", "6.1.192-3"]);
        assert_eq!(
            same_upstream("6.1.192-1", &revisions).as_deref(),
            Some("6.1.192-10")
        );
        // Another upstream version is not the same build tree.
        assert_eq!(same_upstream("6.1.192-2", &v(&["6.1.176-1"])), None);
        assert_eq!(same_upstream("6.1.192-2", &[]), None);
    }

    #[test]
    fn load_order_puts_dependencies_first_once() {
        let table: &[(&str, &[&str])] = &[
            ("ext4", &["jbd2", "mbcache", "crc16"]),
            ("jbd2", &[]),
            ("mbcache", &[]),
            ("crc16", &[]),
            ("virtio_blk", &["virtio_ring"]),
            ("virtio_ring", &["virtio"]),
            ("virtio", &[]),
        ];
        let asked = std::cell::RefCell::new(Vec::new());
        let order = load_order(&["ext4", "virtio_blk", "crc16"], deps_of(table, &asked)).unwrap();
        assert_eq!(
            order,
            [
                "jbd2",
                "mbcache",
                "crc16",
                "ext4",
                "virtio",
                "virtio_ring",
                "virtio_blk"
            ]
        );
        let mut asked = asked.into_inner();
        let n = asked.len();
        asked.sort();
        asked.dedup();
        assert_eq!(asked.len(), n, "each module is read once");
    }

    #[test]
    fn load_order_rejects_cycles_and_unknown_modules() {
        let table: &[(&str, &[&str])] = &[("a", &["b"]), ("b", &["c"]), ("c", &["a"])];
        let asked = std::cell::RefCell::new(Vec::new());
        let err = load_order(&["a"], deps_of(table, &asked)).unwrap_err();
        assert!(err.to_string().contains("depend on each other"), "{err}");
        let table: &[(&str, &[&str])] = &[("a", &["zz"])];
        let asked = std::cell::RefCell::new(Vec::new());
        assert!(load_order(&["a"], deps_of(table, &asked)).is_err());
    }

    /// A minimal ELF64 with a section-name table and one `.modinfo` section.
    fn tiny_elf(modinfo: &[u8]) -> Vec<u8> {
        let shstr = b"\0.shstrtab\0.modinfo\0";
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let shstr_at = elf.len();
        elf.extend_from_slice(shstr);
        let modinfo_at = elf.len();
        elf.extend_from_slice(modinfo);
        while !elf.len().is_multiple_of(8) {
            elf.push(0);
        }
        let shoff = elf.len();
        let section = |name: u32, offset: usize, size: usize| {
            let mut h = vec![0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(offset as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            h
        };
        elf.extend(section(0, 0, 0));
        elf.extend(section(1, shstr_at, shstr.len()));
        elf.extend(section(11, modinfo_at, modinfo.len()));
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        elf
    }

    #[test]
    fn reads_depends_from_modinfo() {
        let elf = tiny_elf(b"license=GPL\0depends=jbd2,mbcache,crc16\0name=ext4\0");
        assert_eq!(modinfo_depends(&elf).unwrap(), ["jbd2", "mbcache", "crc16"]);
        let elf = tiny_elf(b"license=GPL\0depends=\0name=crc16\0");
        assert!(modinfo_depends(&elf).unwrap().is_empty());
        assert!(modinfo_depends(b"not an elf").is_err());
        let mut cut = tiny_elf(b"depends=a\0");
        cut.truncate(100);
        assert!(modinfo_depends(&cut).is_err());
    }

    #[test]
    fn base64_matches_known_values() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"echo hello; exit 7"), "ZWNobyBoZWxsbzsgZXhpdCA3");
        assert!(cmd_param("").is_err());
        assert!(cmd_param(&"x".repeat(MAX_CMD_LEN + 1)).is_err());
        assert_eq!(cmd_param("nproc").unwrap(), "spumone.cmd=bnByb2M=");
    }

    #[test]
    fn finds_the_status_marker() {
        let lines = [
            "[linux] hello",
            "[linux] spumone: command exit status 7",
            "[linux] reboot: Power down",
        ];
        assert_eq!(command_status(lines), Some(7));
        assert_eq!(command_status(["[linux] hello"]), None);
        assert_eq!(command_status(["spumone: command exit status x"]), None);
    }

    #[test]
    fn picks_the_newest_kernel_package() {
        let names = [
            "linux-image-6.1.0-9-arm64",
            "linux-image-6.1.0-56-arm64:arm64",
            "linux-image-6.1.0-57-cloud-arm64",
            "linux-image-6.1.0-57-arm64-dbg",
            "linux-image-6.1.0-31-arm64",
        ];
        assert_eq!(
            newest_kernel(names).as_deref(),
            Some("linux-image-6.1.0-56-arm64")
        );
        assert_eq!(newest_kernel(["linux-image-amd64"]), None);
    }

    #[test]
    fn parses_an_index_stanza() {
        let text = "Package: busybox-static\nVersion: 1:1.35.0-4+deb12u1+b1\nSHA256: ABCD\n";
        assert_eq!(
            parse_index_entry(text),
            Some(IndexEntry {
                version: "1:1.35.0-4+deb12u1+b1".into(),
                sha256: "abcd".into()
            })
        );
        assert_eq!(parse_index_entry("Package: x\n"), None);
    }

    #[test]
    fn record_round_trips() {
        let text = "linux-image-6.1.0-56-arm64 6.1.192-2 aa linux-image-6.1.0-56-arm64_arm64.deb\n";
        let p = &parse_record(text)[0];
        assert_eq!(p.version, "6.1.192-2");
        assert_eq!(p.file, "linux-image-6.1.0-56-arm64_arm64.deb");
    }
}
