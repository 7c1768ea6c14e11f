//! Test kernel modules and helper programs for the Linux guest, in suites: the attack suite,
//! the memory probe and the benign workload's helpers (`guests/linux/attacks/`), and the
//! isolation probes (`guests/linux/probes/`).
//!
//! They are cross-built on the host against Debian's own headers for the very kernel the
//! guest boots (same ABI and package version as the `linux-image` in the record), so the
//! stock kernel accepts them (matching vermagic and modversions), and they are shipped in the
//! initramfs under `/lib/spumone/`, not loaded at boot.

use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::linux::{self, Package};
use crate::paths::{self, target_dir};
use crate::setup::{State, Step};

/// Prefix of the cross tools (`make CROSS_COMPILE=...`).
pub const CROSS_COMPILE: &str = "aarch64-linux-gnu-";
/// Host packages that give the cross compiler, a static arm64 libc, and make.
pub const CROSS_PACKAGES: [&str; 3] = ["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross", "make"];
/// Where the built files go in the initramfs.
pub const GUEST_DIR: &str = "lib/spumone";
/// Bumped when the build recipe changes, so cached builds are redone.
const RECIPE_VERSION: u32 = 2;

/// The suites under `guests/linux/`, each built the same way and shipped side by side in
/// [`GUEST_DIR`] (so no two suites may ship a file of the same name).
pub const SUITES: [&str; 2] = ["attacks", "probes"];

/// `guests/linux/<suite>/`: module sources (one module per top-level `.c`), scripts, and
/// `tools/` (static user-space helpers, one per `.c`).
pub fn suite_dir(suite: &str) -> PathBuf {
    linux::recipe_dir().join(suite)
}

/// The attack suite's sources (`guests/linux/attacks/`).
pub fn source_dir() -> PathBuf {
    suite_dir("attacks")
}

/// Unpacked header trees, one per kernel release, inside the shared download cache.
fn headers_root() -> PathBuf {
    linux::debian_dir().join("headers")
}

/// The build trees: per suite a copy of the sources (kbuild writes its objects beside them)
/// and the tools.
pub fn build_dir() -> PathBuf {
    target_dir().join("modules")
}

fn suite_build_dir(suite: &str) -> PathBuf {
    build_dir().join(suite)
}

fn build_stamp_path() -> PathBuf {
    build_dir().join("inputs.stamp")
}

/// The setup steps, in order: compiler, headers, the build itself.
pub fn steps() -> Vec<Box<dyn Step>> {
    vec![
        Box::new(CrossCompiler),
        Box::new(KernelHeaders),
        Box::new(TestModules),
    ]
}

/// The kernel package in the record: its release (`6.1.0-56-arm64`) and version.
fn kernel_of(packages: &[Package]) -> Option<(String, String)> {
    packages.iter().find_map(|p| {
        let release = p.name.strip_prefix("linux-image-")?;
        Some((release.to_string(), p.version.clone()))
    })
}

fn recorded_kernel() -> Result<(String, String)> {
    linux::read_record()
        .as_deref()
        .and_then(kernel_of)
        .context("the Debian kernel package is not downloaded yet")
}

/// The packages that make a module build tree for `release` (`6.1.0-56-arm64`), as
/// (name, apt architecture): the arm64 headers, the shared common headers, and kbuild's host
/// tools for the host's own architecture (they run on the build machine).
pub fn header_packages(release: &str, host_arch: &str) -> Result<Vec<(String, String)>> {
    let Some(abi) = release.strip_suffix("-arm64") else {
        bail!("kernel release {release} is not an -arm64 flavour");
    };
    let mut parts = abi.split('.');
    let (Some(major), Some(minor)) = (parts.next(), parts.next()) else {
        bail!("cannot read the kernel series from {release}");
    };
    let minor = minor.split('-').next().unwrap_or(minor);
    Ok(vec![
        (format!("linux-headers-{release}"), "arm64".into()),
        (format!("linux-headers-{abi}-common"), "all".into()),
        (format!("linux-kbuild-{major}.{minor}"), host_arch.into()),
    ])
}

/// The arm64 headers' `Makefile` includes the common tree's by absolute path (`/usr/src/...`);
/// point it at `common` inside the private tree instead. `None` if there is no such include.
pub fn rewrite_include(makefile: &str, common: &Path) -> Option<String> {
    let mut found = false;
    let lines: Vec<String> = makefile
        .lines()
        .map(|line| {
            let target = line.strip_prefix("include ").map(str::trim);
            match target {
                Some(t) if t.starts_with("/usr/src/") && t.ends_with("-common/Makefile") => {
                    found = true;
                    format!("include {}", common.join("Makefile").display())
                }
                _ => line.to_string(),
            }
        })
        .collect();
    found.then(|| lines.join("\n") + "\n")
}

/// One unpacked header tree: `headers/<release>/` holding `usr/src/...` and `usr/lib/...`.
fn headers_tree(release: &str) -> PathBuf {
    headers_root().join(release)
}

/// The `make -C` directory of a release's headers.
fn kbuild_dir(release: &str) -> PathBuf {
    headers_tree(release)
        .join("usr")
        .join("src")
        .join(format!("linux-headers-{release}"))
}

/// The file that says a tree is complete, and for which kernel package version.
fn headers_ready(release: &str) -> PathBuf {
    headers_tree(release).join("ready")
}

fn headers_ready_text(release: &str, version: &str) -> String {
    format!("linux-headers {release} {version}\n")
}

/// A tool's trimmed stdout, or `None` when it is missing or fails.
fn tool_output(program: &str, args: &[&str]) -> Option<String> {
    crate::setup::output_of(program, args, &paths::workspace_root()).map(|s| s.trim().to_string())
}

/// The cross compiler, its static libc, and make.
struct CrossCompiler;

impl CrossCompiler {
    fn missing() -> Option<String> {
        let gcc = format!("{CROSS_COMPILE}gcc");
        let Some(version) = tool_output(&gcc, &["-dumpfullversion"]) else {
            return Some(format!("{gcc} not found"));
        };
        // Without the cross libc, -print-file-name echoes the bare name back.
        let libc = tool_output(&gcc, &["-print-file-name=libc.a"]).unwrap_or_default();
        if !Path::new(&libc).is_absolute() {
            return Some(format!("{gcc} {version} has no static arm64 libc"));
        }
        tool_output("make", &["--version"])
            .is_none()
            .then(|| "make not found".into())
    }
}

impl Step for CrossCompiler {
    fn name(&self) -> String {
        "aarch64 cross compiler".into()
    }

    fn check(&self) -> Result<State> {
        Ok(match Self::missing() {
            None => {
                let gcc = format!("{CROSS_COMPILE}gcc");
                let version = tool_output(&gcc, &["-dumpfullversion"]).unwrap_or_default();
                State::Ready(format!("{gcc} {version}"))
            }
            Some(why) => State::Missing(why),
        })
    }

    fn run(&self) -> Result<()> {
        if !(linux::is_root() && Path::new("/etc/debian_version").exists()) {
            bail!(
                "install the packages {} (Debian/Ubuntu) or run `cargo xtask setup` as root",
                CROSS_PACKAGES.join(" ")
            );
        }
        let install = || {
            linux::run_shown(
                crate::setup::apt_get()
                    .args(["-q", "install", "-y"])
                    .args(CROSS_PACKAGES),
            )
        };
        println!("setup: apt-get install {}", CROSS_PACKAGES.join(" "));
        if install().is_err() {
            // A stale index is the usual reason; refresh it once.
            linux::run_shown(crate::setup::apt_get().args(["-q", "update"]))?;
            install()?;
        }
        Ok(())
    }
}

/// Debian's module build tree for the recorded kernel, unpacked privately.
struct KernelHeaders;

impl Step for KernelHeaders {
    fn name(&self) -> String {
        "linux headers".into()
    }

    fn check(&self) -> Result<State> {
        let (release, version) = recorded_kernel()?;
        let ready = fs::read_to_string(headers_ready(&release)).ok();
        Ok(if ready == Some(headers_ready_text(&release, &version)) {
            State::Ready(format!("linux headers {release} ({version})"))
        } else {
            State::Missing(format!("headers for {release} ({version}) not unpacked"))
        })
    }

    fn run(&self) -> Result<()> {
        let (release, version) = recorded_kernel()?;
        let host_arch = linux::capture(Command::new("dpkg").arg("--print-architecture"))?;
        let mut debs = Vec::new();
        for (name, arch) in header_packages(&release, host_arch.trim())? {
            // Same version as the kernel: the headers must describe exactly that build.
            // kbuild's host tools only need the same upstream version; Debian may have
            // re-uploaded them with a new revision since.
            let wanted = if name.starts_with("linux-kbuild-") {
                let available = linux::index_versions(&name, &arch);
                linux::same_upstream(&version, &available).with_context(|| {
                    format!(
                        "{name}:{arch} {version} is not in the apt index, nor any revision of it (found: {})",
                        available.join(", ")
                    )
                })?
            } else {
                version.clone()
            };
            if wanted != version {
                println!("setup: {name}:{arch} {version} has left the archive; using {wanted}");
            }
            let p = linux::fetch_as(&name, &arch, Some(&wanted))?;
            println!(
                "setup: {}:{arch} {} sha256 {} matches the index",
                p.name, p.version, p.sha256
            );
            debs.push(linux::debian_dir().join(&p.file));
        }
        // Unpack beside the final place and rename, so a half-written tree is never used.
        fs::create_dir_all(headers_root())?;
        // The cache may be reached through a symlink from one checkout; other checkouts share
        // the tree, so its Makefile names the real path.
        let root = fs::canonicalize(headers_root())?;
        let tmp = root.join(format!(".{release}.{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        for deb in &debs {
            linux::run_shown(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&tmp))?;
        }
        let final_tree = root.join(&release);
        let makefile = tmp
            .join("usr/src")
            .join(format!("linux-headers-{release}"))
            .join("Makefile");
        let text = fs::read_to_string(&makefile)
            .with_context(|| format!("reading {}", paths::display(&makefile)))?;
        let abi = release.trim_end_matches("-arm64");
        let common = final_tree
            .join("usr/src")
            .join(format!("linux-headers-{abi}-common"));
        let Some(rewritten) = rewrite_include(&text, &common) else {
            bail!(
                "{} has no include of the common headers: {text}",
                paths::display(&makefile)
            );
        };
        fs::write(&makefile, rewritten)?;
        let _ = fs::remove_dir_all(&final_tree);
        fs::rename(&tmp, &final_tree)
            .with_context(|| format!("moving the headers to {}", paths::display(&final_tree)))?;
        fs::write(
            headers_ready(&release),
            headers_ready_text(&release, &version),
        )?;
        Ok(())
    }
}

/// Every file under `dir` (recursively), as sorted paths relative to it.
fn list_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        let here = dir.join(&rel);
        for entry in fs::read_dir(&here).with_context(|| format!("reading {}", here.display()))? {
            let entry = entry?;
            let path = rel.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                dirs.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A digest of every file under `dir`: one `path hash` line each, so any edit, addition,
/// removal or rename changes it.
pub fn source_digest(dir: &Path) -> Result<String> {
    let mut text = String::new();
    for rel in list_files(dir)? {
        let bytes = fs::read(dir.join(&rel))?;
        text.push_str(&format!(
            "{} {:016x}\n",
            rel.display(),
            linux::fnv1a(&bytes)
        ));
    }
    Ok(text)
}

/// What the build depends on: recipe, kernel release and version, compiler, sources.
fn build_inputs() -> Result<String> {
    let (release, version) = recorded_kernel()?;
    let gcc =
        tool_output(&format!("{CROSS_COMPILE}gcc"), &["-dumpfullversion"]).unwrap_or_default();
    let mut text = format!("recipe {RECIPE_VERSION}\nkernel {release} {version}\ngcc {gcc}\n");
    for suite in SUITES {
        text.push_str(&format!(
            "suite {suite}\n{}",
            source_digest(&suite_dir(suite))?
        ));
    }
    Ok(text)
}

/// The files a suite ships, by name in [`GUEST_DIR`]: its modules, tools and scripts.
pub fn shipped_names(files: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = module_names(files)
        .into_iter()
        .map(|m| format!("{m}.ko"))
        .chain(tool_names(files))
        .chain(script_names(files))
        .collect();
    names.sort();
    names
}

/// The scripts a suite ships: its top-level `*.sh`.
pub fn script_names(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .filter(|p| p.components().count() == 1 && p.extension().is_some_and(|e| e == "sh"))
        .map(|p| p.display().to_string())
        .collect()
}

/// The first name two suites would both ship into [`GUEST_DIR`], if any.
pub fn clash(suites: &[(&str, Vec<PathBuf>)]) -> Option<String> {
    let mut seen = std::collections::BTreeMap::new();
    for (suite, files) in suites {
        for name in shipped_names(files) {
            if let Some(other) = seen.insert(name.clone(), *suite) {
                return Some(format!("{name} (suites {other} and {suite})"));
            }
        }
    }
    None
}

/// The names of the modules a source tree builds: one per top-level `.c` file.
pub fn module_names(files: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = files
        .iter()
        .filter(|p| p.components().count() == 1 && p.extension().is_some_and(|e| e == "c"))
        .filter_map(|p| Some(p.file_stem()?.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names
}

/// The static helper programs: one per `tools/*.c`.
pub fn tool_names(files: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = files
        .iter()
        .filter(|p| {
            p.parent() == Some(Path::new("tools")) && p.extension().is_some_and(|e| e == "c")
        })
        .filter_map(|p| Some(p.file_stem()?.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names
}

/// The built modules and tools of every suite, cached by a stamp over their inputs.
struct TestModules;

impl Step for TestModules {
    fn name(&self) -> String {
        "test modules".into()
    }

    fn check(&self) -> Result<State> {
        let current = fs::read_to_string(build_stamp_path()).ok() == Some(build_inputs()?);
        Ok(if current {
            State::Ready(format!("test modules in {}", paths::display(&build_dir())))
        } else {
            State::Missing("test modules not built".into())
        })
    }

    fn run(&self) -> Result<()> {
        let inputs = build_inputs()?;
        let mut all = Vec::new();
        for suite in SUITES {
            all.push((suite, list_files(&suite_dir(suite))?));
        }
        if let Some(name) = clash(&all) {
            bail!("two suites ship {name} into /{GUEST_DIR}");
        }
        let _ = fs::remove_dir_all(build_dir());
        for (suite, files) in &all {
            build_suite(suite, files)?;
        }
        fs::write(build_stamp_path(), inputs).context("writing the module stamp")
    }
}

/// Builds one suite's modules and tools into its own tree.
fn build_suite(suite: &str, files: &[PathBuf]) -> Result<()> {
    {
        let (release, _) = recorded_kernel()?;
        let src = suite_dir(suite);
        let modules = module_names(files);
        let tools = tool_names(files);
        let out = suite_build_dir(suite);
        let tree = out.join("src");
        for rel in files {
            let to = tree.join(rel);
            fs::create_dir_all(to.parent().unwrap_or(&tree))?;
            fs::copy(src.join(rel), &to)?;
        }
        println!("setup: building {suite} modules {}", modules.join(" "));
        linux::run_shown(
            Command::new("make")
                .arg("-s")
                .arg("-j2")
                .arg("-C")
                .arg(kbuild_dir(&release))
                .arg(format!("M={}", tree.display()))
                .arg("ARCH=arm64")
                .arg(format!("CROSS_COMPILE={CROSS_COMPILE}"))
                .arg("modules")
                // Its stdout is one "Skipping BTF" line per module; warnings go to stderr.
                .stdout(Stdio::null()),
        )?;
        for m in &modules {
            let ko = tree.join(format!("{m}.ko"));
            if !ko.is_file() {
                bail!("{m}.ko was not built (is it listed in Kbuild?)");
            }
            // Debian builds with debug info; the initramfs needs none of it.
            linux::run_shown(
                Command::new(format!("{CROSS_COMPILE}strip"))
                    .arg("--strip-debug")
                    .arg(&ko),
            )?;
        }
        let bin = out.join("bin");
        fs::create_dir_all(&bin)?;
        for t in &tools {
            println!("setup: building tool {t}");
            linux::run_shown(
                Command::new(format!("{CROSS_COMPILE}gcc"))
                    .args(["-static", "-Os", "-s", "-Wall", "-Werror", "-o"])
                    .arg(bin.join(t))
                    .arg(tree.join("tools").join(format!("{t}.c")))
                    // Tools with threads; harmless for the others.
                    .arg("-pthread"),
            )?;
        }
        Ok(())
    }
}

/// What the initramfs gets: (path inside it, mode, contents) for every module, tool and
/// script (`*.sh`), all under [`GUEST_DIR`].
pub fn guest_files() -> Result<Vec<(String, u32, Vec<u8>)>> {
    let mut out = Vec::new();
    let read = |p: &Path| fs::read(p).with_context(|| format!("reading {}", paths::display(p)));
    for suite in SUITES {
        let src = suite_dir(suite);
        let built = suite_build_dir(suite);
        let files = list_files(&src)?;
        for m in module_names(&files) {
            let ko = built.join("src").join(format!("{m}.ko"));
            out.push((format!("{GUEST_DIR}/{m}.ko"), 0o644, read(&ko)?));
        }
        for t in tool_names(&files) {
            let path = built.join("bin").join(&t);
            out.push((format!("{GUEST_DIR}/{t}"), 0o755, read(&path)?));
        }
        for name in script_names(&files) {
            out.push((
                format!("{GUEST_DIR}/{name}"),
                0o755,
                read(&src.join(&name))?,
            ));
        }
    }
    Ok(out)
}

/// The build stamp, for the initramfs's own stamp (a rebuild of the modules rebuilds it).
pub fn built_stamp() -> String {
    fs::read_to_string(build_stamp_path()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_packages_follow_the_release() {
        let p = header_packages("6.1.0-56-arm64", "amd64").unwrap();
        let want = [
            ("linux-headers-6.1.0-56-arm64", "arm64"),
            ("linux-headers-6.1.0-56-common", "all"),
            ("linux-kbuild-6.1", "amd64"),
        ];
        assert_eq!(p.len(), want.len());
        for ((name, arch), (wn, wa)) in p.iter().zip(want) {
            assert_eq!((name.as_str(), arch.as_str()), (wn, wa));
        }
        let other = header_packages("6.12.3-1-arm64", "arm64").unwrap();
        assert_eq!(
            other[2],
            ("linux-kbuild-6.12".to_string(), "arm64".to_string())
        );
        assert!(header_packages("6.1.0-56-amd64", "amd64").is_err());
    }

    #[test]
    fn rewrites_only_the_common_include() {
        let common =
            Path::new("/cache/headers/6.1.0-56-arm64/usr/src/linux-headers-6.1.0-56-common");
        let text = "include /usr/src/linux-headers-6.1.0-56-common/Makefile\n";
        assert_eq!(
            rewrite_include(text, common).unwrap(),
            format!("include {}/Makefile\n", common.display())
        );
        let mixed = "# x\ninclude /usr/src/linux-headers-6.1.0-56-common/Makefile\nFOO = 1\n";
        let out = rewrite_include(mixed, common).unwrap();
        assert!(out.starts_with("# x\ninclude /cache/"), "{out}");
        assert!(out.ends_with("\nFOO = 1\n"), "{out}");
        assert_eq!(rewrite_include("include other.mk\n", common), None);
        assert_eq!(rewrite_include("", common), None);
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("tools")).unwrap();
        dir
    }

    #[test]
    fn digest_changes_with_any_source_change() {
        let dir = scratch("digest");
        fs::write(dir.join("a.c"), "int a;").unwrap();
        fs::write(dir.join("tools/t.c"), "int main(){}").unwrap();
        let first = source_digest(&dir).unwrap();
        assert_eq!(source_digest(&dir).unwrap(), first, "stable");
        assert_eq!(first.lines().count(), 2);
        fs::write(dir.join("a.c"), "int b;").unwrap();
        let edited = source_digest(&dir).unwrap();
        assert_ne!(edited, first);
        fs::rename(dir.join("a.c"), dir.join("b.c")).unwrap();
        let renamed = source_digest(&dir).unwrap();
        assert_ne!(renamed, edited);
        fs::write(dir.join("README.md"), "x").unwrap();
        assert_ne!(source_digest(&dir).unwrap(), renamed);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names_modules_and_tools() {
        let files: Vec<PathBuf> = [
            "Kbuild",
            "memprobe.c",
            "hide_task.c",
            "benign.sh",
            "tools/bpf_filter.c",
            "tools/notes.txt",
            "sub/x.c",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(module_names(&files), ["hide_task", "memprobe"]);
        assert_eq!(tool_names(&files), ["bpf_filter"]);
    }

    #[test]
    fn suites_may_not_ship_the_same_name() {
        let files = |names: &[&str]| -> Vec<PathBuf> { names.iter().map(PathBuf::from).collect() };
        let attacks = files(&["memprobe.c", "attack.sh", "tools/runas.c", "Kbuild"]);
        let probes = files(&["physmap.c", "probe.sh", "tools/gicstorm.c", "README.md"]);
        assert_eq!(
            shipped_names(&probes),
            ["gicstorm", "physmap.ko", "probe.sh"]
        );
        assert_eq!(
            clash(&[("attacks", attacks.clone()), ("probes", probes)]),
            None
        );
        let again = files(&["tools/memprobe.c", "x.sh", "tools/runas.c"]);
        let found = clash(&[("attacks", attacks), ("probes", again)]).unwrap();
        assert_eq!(found, "runas (suites attacks and probes)");
        // Every real suite is there, and none clash.
        let real: Vec<(&str, Vec<PathBuf>)> = SUITES
            .iter()
            .map(|s| (*s, list_files(&suite_dir(s)).unwrap()))
            .collect();
        assert_eq!(clash(&real), None);
    }

    #[test]
    fn finds_the_kernel_in_the_record() {
        let p = |name: &str, version: &str| Package {
            name: name.into(),
            version: version.into(),
            sha256: "00".into(),
            file: "f".into(),
        };
        let record = [
            p("busybox-static", "1"),
            p("linux-image-6.1.0-56-arm64", "6.1.192-2"),
        ];
        assert_eq!(
            kernel_of(&record),
            Some(("6.1.0-56-arm64".into(), "6.1.192-2".into()))
        );
        assert_eq!(kernel_of(&record[..1]), None);
    }
}
