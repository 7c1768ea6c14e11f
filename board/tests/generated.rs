//! The generated tables compile against `board::rt` and carry the validated values.
//!
//! The files under `golden/` are `to_rust()` outputs, compiled in here. When the generator
//! changes on purpose, refresh them with `BOARD_BLESS=1 cargo test -p board --features host`, or
//! (if they no longer compile) by emptying the `CONFIG` initializers by hand first.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use board::{rt, ValidatedConfig};

mod rtos {
    include!("golden/rtos.rs");
}

mod two_partitions {
    include!("golden/two-partitions.rs");
}

mod demo {
    include!("golden/demo.rs");
}

mod shared_1 {
    include!("golden/shared-1.rs");
}

/// Exercises devices, several RAM ranges and several vCPUs, which `rtos.toml` lacks.
const TWO_PARTITIONS: &str = r#"
board = "qemu-virt"

[[partition]]
name = "rtos"
image = "rtos"
ram = [{ base = 0x4400_0000, size = 0x0400_0000 }]
devices = ["rtc"]
entry = 0x4400_0000
vcpus = [{ core = 0 }]

[[partition]]
name = "linux"
image = "linux"
ram = [{ base = 0x4800_0000, size = 0x2000_0000 }, { base = 0x8000_0000, size = 0x4000_0000 }]
devices = ["pcie", "gpio"]
entry = 0x4820_0000
boot_arg = 0x4000_0000
vcpus = [{ core = 3 }, { core = 1 }, { core = 2 }]
"#;

fn manifest_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The shipped config `configs/<name>.toml`.
fn shipped(name: &str) -> ValidatedConfig {
    board::load_config(&manifest_path(&format!("configs/{name}.toml"))).unwrap()
}

/// Loads `TWO_PARTITIONS` from a scratch tree that has the shipped board.
fn two_partitions_config() -> ValidatedConfig {
    // Unique per call: tests run in parallel.
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("board-generated-{}-{n}", std::process::id()));
    std::fs::create_dir_all(dir.join("configs")).unwrap();
    std::fs::create_dir_all(dir.join("boards")).unwrap();
    std::fs::copy(
        manifest_path("boards/qemu-virt.toml"),
        dir.join("boards/qemu-virt.toml"),
    )
    .unwrap();
    let path = dir.join("configs/two-partitions.toml");
    std::fs::write(&path, TWO_PARTITIONS).unwrap();
    let cfg = board::load_config(&path);
    std::fs::remove_dir_all(&dir).unwrap();
    cfg.unwrap()
}

fn check_golden(name: &str, cfg: &ValidatedConfig) {
    let fresh = cfg.to_rust();
    let golden_path = manifest_path(&format!("tests/golden/{name}.rs"));
    if std::env::var_os("BOARD_BLESS").is_some() {
        std::fs::write(&golden_path, &fresh).unwrap();
    }
    let golden = std::fs::read_to_string(&golden_path).unwrap();
    assert_eq!(
        golden, fresh,
        "generated code changed; rerun with BOARD_BLESS=1 to refresh {name}.rs"
    );
}

fn check_linux_tables(linux: &'static [rt::LinuxBoot], cfg: &ValidatedConfig) {
    let infos: Vec<_> = cfg
        .partitions()
        .iter()
        .filter(|p| p.linux.is_some())
        .collect();
    assert_eq!(linux.len(), infos.len());
    for info in &infos {
        let l = rt::LinuxBoot::find(linux, info.index).unwrap();
        let want = info.linux.as_ref().unwrap();
        assert_eq!(l.kernel, want.kernel);
        assert_eq!(l.initrd, want.initrd);
        assert_eq!(l.dtb, want.dtb);
        assert_eq!(l.reset_copy, want.reset_copy);
        assert_eq!(l.bootargs, want.bootargs);
        assert_eq!(l.console, want.console);
        assert_eq!(l.dsm, want.dsm);
        assert_eq!(l.on_panic, want.on_panic);
        assert_eq!(l.watchdog_s, want.watchdog_s);
        let kinds: Vec<&str> = info.devices.iter().map(|d| d.kind.as_str()).collect();
        assert_eq!(l.device_kinds, kinds.as_slice());
        assert_eq!(rt::LinuxBoot::kind(linux, info.index), info.kind);
    }
    for p in cfg.partitions().iter().filter(|p| p.linux.is_none()) {
        assert_eq!(rt::LinuxBoot::kind(linux, p.index), rt::Kind::Rtos);
    }
}

fn check_tables(rt: &rt::Config, cfg: &ValidatedConfig) {
    assert_eq!(rt.board, cfg.board_name());
    assert_eq!(rt.cores, cfg.cores());
    assert_eq!(rt.dtb_hint, cfg.board().dtb_hint);
    assert_eq!(rt.hypervisor_ram, cfg.board().hypervisor_ram);
    assert_eq!(rt.board_ram, cfg.board().ram.as_slice());
    // The board's UART (`irqs = [33]`), not a literal in spumone.
    assert_eq!(Some(rt.console_intid), cfg.board().console_intid());
    assert_eq!(rt.console_intid, 33);
    assert_eq!(rt.partitions.len(), cfg.partitions().len());
    for (p, info) in rt.partitions.iter().zip(cfg.partitions()) {
        assert_eq!(p.name, info.name);
        assert_eq!(p.index, info.index);
        assert_eq!(p.image, info.image);
        assert_eq!(p.ram, info.ram.as_slice());
        assert_eq!(p.entry, info.entry);
        assert_eq!(p.boot_arg, info.boot_arg);
        assert_eq!(p.vcpus, info.vcpus.as_slice());
        assert_eq!(p.console_channel, info.console_channel);
        assert_eq!(p.devices.len(), info.devices.len());
        for (d, want) in p.devices.iter().zip(&info.devices) {
            assert_eq!(d.name, want.name);
            assert_eq!(d.base, want.base);
            assert_eq!(d.size, want.size);
            assert_eq!(d.irqs, want.irqs.as_slice());
            assert_eq!(d.windows, want.windows.as_slice());
        }
    }
    let smmus = cfg.smmus();
    assert_eq!(rt.smmus.len(), smmus.len());
    for (s, (want, grants)) in rt.smmus.iter().zip(&smmus) {
        assert_eq!(
            (s.name, s.base, s.size),
            (want.name.as_str(), want.base, want.size)
        );
        assert_eq!(s.grants.len(), grants.len());
        for (g, (device, partition)) in s.grants.iter().zip(grants) {
            let link = device.iommu.as_ref().unwrap();
            assert_eq!(g.device, device.name);
            assert_eq!(g.partition, *partition);
            assert_eq!((g.first, g.count), (link.first_stream, link.streams));
        }
    }
}

#[test]
fn rtos_tables_match_validated_config() {
    check_tables(&rtos::CONFIG, &shipped("rtos"));
    assert_eq!(
        rtos::CONFIG.partition_on_core(0).map(|p| p.name),
        Some("rtos")
    );
}

#[test]
fn shipped_goldens_match_generator() {
    for name in ["rtos", "demo", "shared-1"] {
        check_golden(name, &shipped(name));
    }
}

#[test]
fn two_partitions_golden_matches_generator() {
    check_golden("two-partitions", &two_partitions_config());
}

#[test]
fn two_partitions_tables_match_validated_config() {
    let cfg = two_partitions_config();
    check_tables(&two_partitions::CONFIG, &cfg);
    let linux = two_partitions::CONFIG.partition_on_core(1).unwrap();
    assert_eq!(linux.name, "linux");
    assert_eq!(linux.vcpu_on_core(1), Some(1));
    assert!(linux.owns_ram(0xbfff_ffff));
    assert_eq!(
        linux.device_at(0x3f00_8000).map(|d| d.irqs),
        Some(&[35, 36, 37, 38][..])
    );
    let pcie = linux.device_at(0x3f00_0000).unwrap();
    assert_eq!(pcie.windows.len(), 2);
    assert_eq!(pcie.windows[0].space, rt::Space::Io);
    // The board's one SMMU, with the root complex's 256 streams granted to Linux.
    let smmu = &two_partitions::CONFIG.smmus[0];
    assert_eq!(
        (smmu.base, smmu.event_intid, smmu.gerror_intid),
        (0x0905_0000, 106, 109)
    );
    assert_eq!(smmu.grants.len(), 1);
    let grant = smmu.grants[0];
    assert_eq!((grant.device, grant.partition), ("pcie", linux.index));
    assert!(grant.contains(0xff) && !grant.contains(0x100));
}

#[test]
fn rtos_config_keeps_the_smmu_with_no_stream_granted() {
    // Enabled all the same: every stream aborts.
    assert_eq!(rtos::CONFIG.smmus.len(), 1);
    assert!(rtos::CONFIG.smmus[0].grants.is_empty());
}

#[test]
fn demo_tables_match_validated_config() {
    let cfg = shipped("demo");
    check_tables(&demo::CONFIG, &cfg);
    check_linux_tables(demo::LINUX, &cfg);
    check_linux_tables(rtos::LINUX, &shipped("rtos"));
    let linux = demo::CONFIG.partition_on_core(3).unwrap();
    let boot = rt::LinuxBoot::find(demo::LINUX, linux.index).unwrap();
    assert_eq!(linux.entry, boot.kernel.base);
    assert!(boot.reset_copy.is_some());
    assert_eq!(boot.on_panic, rt::OnPanic::Restart);
    assert_eq!(boot.console_range().size, rt::LINUX_CONSOLE_SIZE);
    assert_eq!(rt::LinuxBoot::kind(demo::LINUX, 0), rt::Kind::Rtos);
}

#[test]
fn shared_1_tables_say_one_core_shared_by_both_guests() {
    let cfg = shipped("shared-1");
    check_tables(&shared_1::CONFIG, &cfg);
    check_linux_tables(shared_1::LINUX, &cfg);
    // The machine's one core, not the board's four.
    assert_eq!(shared_1::CONFIG.cores, 1);
    for p in shared_1::CONFIG.partitions {
        assert_eq!(p.vcpus, &[rt::Vcpu { core: 0 }], "{}", p.name);
    }
}
