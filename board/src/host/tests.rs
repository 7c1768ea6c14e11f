use super::*;

fn crate_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn shipped_configs_validate() {
    let dir = crate_path("configs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Err(e) = load_config(&path) {
                panic!("{e}");
            }
            seen += 1;
        }
    }
    assert!(
        seen >= 2,
        "expected the shipped configs in {}",
        dir.display()
    );
}

#[test]
fn rtos_config_values() {
    let cfg = load_config(&crate_path("configs/rtos.toml")).unwrap();
    assert_eq!(cfg.board_name(), "qemu-virt");
    assert_eq!(cfg.cores(), 4);
    assert_eq!(
        cfg.board().hypervisor_ram,
        MemRange::new(0x4000_0000, 0x0400_0000)
    );
    let [p] = cfg.partitions() else {
        panic!("one partition expected")
    };
    assert_eq!(p.name, "rtos");
    assert_eq!(p.index, 0);
    assert_eq!(p.console_channel, spumone_abi::chan::guest(0).unwrap());
    assert_eq!(p.ram, vec![MemRange::new(0x4400_0000, 0x0400_0000)]);
    assert_eq!(p.entry, 0x4400_0000);
    assert_eq!(p.boot_arg, 0);
    assert_eq!(p.vcpus, vec![Vcpu { core: 0 }]);
    let fault = load_config(&crate_path("configs/rtos-fault.toml")).unwrap();
    assert_eq!(fault.partition("rtos").unwrap().boot_arg, 1);
}

#[test]
fn rtos_generated_rust_has_key_fields() {
    let src = load_config(&crate_path("configs/rtos.toml"))
        .unwrap()
        .to_rust();
    for needle in [
        "pub static CONFIG: board::rt::Config",
        "board: \"qemu-virt\"",
        "cores: 4,",
        "name: \"rtos\"",
        "image: \"rtos\"",
        "ram: &[board::rt::MemRange { base: 0x44000000, size: 0x4000000 }]",
        "entry: 0x44000000,",
        "boot_arg: 0x0,",
        "vcpus: &[board::rt::Vcpu { core: 0 }]",
        "console_channel: 0x10,",
    ] {
        assert!(src.contains(needle), "missing {needle:?} in:\n{src}");
    }
}

// ---------------------------------------------------------------------------------------------
// One test per rule: a valid two-partition layout, broken in exactly one way.

const BOARD: &str = include_str!("../../boards/qemu-virt.toml");

/// Sub-page devices that do no DMA, for the page rules (QEMU's `virt` has only virtio-mmio
/// transports that small, and those do DMA): three on page 0x0c00_0000, one alone on the
/// next, and one beside a hypervisor-owned device.
const TEST_DEVICES: &str = r#"
[[device]]
name = "mbox0"
kind = "test,mailbox"
base = 0x0C00_0000
size = 0x200
irqs = [90]

[[device]]
name = "mbox1"
kind = "test,mailbox"
base = 0x0C00_0200
size = 0x200
irqs = [91]

[[device]]
name = "mbox2"
kind = "test,mailbox"
base = 0x0C00_0400
size = 0x200
irqs = [92]

[[device]]
name = "mbox3"
kind = "test,mailbox"
base = 0x0C00_1000
size = 0x200
irqs = [93]

[[device]]
name = "hvbox"
kind = "test,mailbox"
base = 0x0C00_2000
size = 0x200
hypervisor = true

[[device]]
name = "mbox4"
kind = "test,mailbox"
base = 0x0C00_2200
size = 0x200
"#;

const BASE: &str = r#"
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
ram = [{ base = 0x4800_0000, size = 0x4000_0000 }]
devices = ["mbox0", "mbox1", "mbox2"]
entry = 0x4820_0000
vcpus = [{ core = 1 }, { core = 2 }]
"#;

fn board() -> Board {
    let text = format!("{BOARD}{TEST_DEVICES}");
    parse_board(Path::new("qemu-virt.toml"), &text, "qemu-virt").unwrap()
}

fn problems(config: &str) -> Vec<Problem> {
    let raw: RawConfig = parse(Path::new("test.toml"), config).unwrap();
    match machine(&raw, board()).and_then(|board| check_partitions(&raw, &board)) {
        Ok(_) => Vec::new(),
        Err(p) => p,
    }
}

/// `BASE` with each `(from, to)` replaced; `from` must occur so a test never checks `BASE`.
fn base_with(edits: &[(&str, &str)]) -> String {
    edited(BASE, edits)
}

/// `config` with each `(from, to)` replaced once; `from` must occur.
fn edited(config: &str, edits: &[(&str, &str)]) -> String {
    let mut s = config.to_string();
    for (from, to) in edits {
        assert!(s.contains(from), "{from:?} not in the config");
        s = s.replacen(from, to, 1);
    }
    s
}

fn assert_problem(config: &str, wanted: impl Fn(&Problem) -> bool) {
    let found = problems(config);
    assert!(
        found.iter().any(&wanted),
        "expected problem not reported; got {found:#?}"
    );
}

#[test]
fn base_is_valid() {
    assert_eq!(problems(BASE), vec![]);
    let raw: RawConfig = parse(Path::new("test.toml"), BASE).unwrap();
    let parts = check_partitions(&raw, &board()).unwrap();
    assert_eq!(parts[1].index, 1);
    assert_eq!(
        parts[1].console_channel,
        spumone_abi::chan::guest(1).unwrap()
    );
    let names: Vec<&str> = parts[1].devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["mbox0", "mbox1", "mbox2"]);
    assert_eq!(parts[1].devices[1].irqs, [91]);
}

#[test]
fn rejects_ram_above_board_ram() {
    let cfg = base_with(&[("size = 0x4000_0000", "size = 0x8000_0000")]);
    assert_problem(&cfg, |p| {
        matches!(p, Problem::RamOutsideBoard { partition, range, .. }
            if partition == "linux" && range.base == 0x4800_0000)
    });
}

#[test]
fn rejects_ram_below_board_ram() {
    let cfg = base_with(&[
        ("base = 0x4800_0000", "base = 0x3000_0000"),
        ("entry = 0x4820_0000", "entry = 0x3000_0000"),
    ]);
    assert_problem(
        &cfg,
        |p| matches!(p, Problem::RamOutsideBoard { partition, .. } if partition == "linux"),
    );
}

#[test]
fn rejects_ram_that_wraps_around() {
    let cfg = base_with(&[(
        "base = 0x4800_0000, size = 0x4000_0000",
        "base = 0x4800_0000, size = 0x7fff_ffff_ffff_f000",
    )]);
    assert_problem(
        &cfg,
        |p| matches!(p, Problem::RamOutsideBoard { partition, .. } if partition == "linux"),
    );
}

#[test]
fn rejects_ram_overlapping_hypervisor() {
    let cfg = base_with(&[("base = 0x4400_0000", "base = 0x43ff_f000")]);
    assert_problem(
        &cfg,
        |p| matches!(p, Problem::RamOverlapsHypervisor { partition, .. } if partition == "rtos"),
    );
}

#[test]
fn rejects_ram_overlapping_another_partition() {
    let cfg = base_with(&[
        ("base = 0x4800_0000", "base = 0x4700_0000"),
        ("entry = 0x4820_0000", "entry = 0x4700_0000"),
    ]);
    assert_problem(&cfg, |p| {
        matches!(p, Problem::RamOverlap { partition, other, .. }
            if partition == "linux" && other == "rtos")
    });
}

#[test]
fn rejects_ram_overlapping_itself() {
    let cfg = base_with(&[(
        "ram = [{ base = 0x4400_0000, size = 0x0400_0000 }]",
        "ram = [{ base = 0x4400_0000, size = 0x0200_0000 }, { base = 0x4500_0000, size = 0x0200_0000 }]",
    )]);
    assert_problem(&cfg, |p| {
        matches!(p, Problem::RamOverlap { partition, other, .. }
            if partition == "rtos" && other == "rtos")
    });
}

#[test]
fn rejects_zero_size_ram() {
    let cfg = base_with(&[(
        "ram = [{ base = 0x4400_0000, size = 0x0400_0000 }]",
        "ram = [{ base = 0x4400_0000, size = 0x0400_0000 }, { base = 0x4200_0000, size = 0 }]",
    )]);
    assert_problem(&cfg, |p| {
        matches!(p, Problem::EmptyRam { partition, range }
            if partition == "rtos" && range.base == 0x4200_0000)
    });
}

#[test]
fn rejects_missing_ram() {
    let cfg = base_with(&[(
        "ram = [{ base = 0x4400_0000, size = 0x0400_0000 }]",
        "ram = []",
    )]);
    assert_problem(
        &cfg,
        |p| matches!(p, Problem::NoRam { partition } if partition == "rtos"),
    );
}

#[test]
fn rejects_unaligned_base() {
    let cfg = base_with(&[
        ("base = 0x4800_0000", "base = 0x4800_0800"),
        ("entry = 0x4820_0000", "entry = 0x4800_0800"),
    ]);
    assert_problem(
        &cfg,
        |p| matches!(p, Problem::UnalignedRam { partition, .. } if partition == "linux"),
    );
}

#[test]
fn rejects_unaligned_size() {
    let cfg = base_with(&[("size = 0x4000_0000", "size = 0x3fff_ff00")]);
    assert_problem(
        &cfg,
        |p| matches!(p, Problem::UnalignedRam { partition, .. } if partition == "linux"),
    );
}

#[test]
fn rejects_core_given_to_two_partitions() {
    let cfg = base_with(&[("{ core = 1 }", "{ core = 0 }")]);
    assert_problem(&cfg, |p| {
        matches!(p, Problem::CoreTaken { partition, core: 0, owner }
            if partition == "linux" && owner == "rtos")
    });
}

#[test]
fn rejects_two_vcpus_on_one_core() {
    let cfg = base_with(&[("{ core = 2 }", "{ core = 1 }")]);
    assert_problem(&cfg, |p| {
        matches!(p, Problem::CoreTaken { partition, core: 1, owner }
            if partition == "linux" && owner == "linux")
    });
}

#[test]
fn rejects_core_beyond_board() {
    let cfg = base_with(&[("{ core = 2 }", "{ core = 4 }")]);
    assert_problem(
        &cfg,
        |p| matches!(p, Problem::CoreOutOfRange { partition, core: 4, cores: 4 } if partition == "linux"),
    );
}

#[test]
fn a_machine_of_fewer_cores_confines_the_vcpus_to_them() {
    // BASE places vCPUs on cores 0-2.
    let three = format!("cores = 3\n{BASE}");
    assert_eq!(problems(&three), vec![]);
    let raw: RawConfig = parse(Path::new("test.toml"), &three).unwrap();
    assert_eq!(machine(&raw, board()).unwrap().cores, 3);
    let two = format!("cores = 2\n{BASE}");
    assert_problem(
        &two,
        |p| matches!(p, Problem::CoreOutOfRange { partition, core: 2, cores: 2 } if partition == "linux"),
    );
}

#[test]
fn rejects_a_machine_of_no_cores_or_more_than_the_board_has() {
    for cores in [0, 5] {
        let cfg = format!("cores = {cores}\n{BASE}");
        assert_eq!(
            problems(&cfg),
            vec![Problem::MachineCoresOutOfRange {
                cores,
                board_cores: 4
            }]
        );
    }
}

#[test]
fn rejects_unknown_device() {
    let cfg = base_with(&[(r#""mbox1""#, r#""virtio32""#)]);
    assert_problem(&cfg, |p| {
        matches!(p, Problem::UnknownDevice { partition, device, .. }
            if partition == "linux" && device == "virtio32")
    });
}

#[test]
fn rejects_hypervisor_devices() {
    for dev in ["uart0", "gicd", "gicr"] {
        let cfg = base_with(&[(r#"["rtc"]"#, &format!("[{dev:?}]"))]);
        assert_problem(&cfg, |p| {
            matches!(p, Problem::HypervisorDevice { partition, device }
                if partition == "rtos" && device == dev)
        });
    }
}

#[test]
fn rejects_device_given_to_two_partitions() {
    let cfg = base_with(&[(r#""mbox1""#, r#""rtc""#)]);
    assert_problem(&cfg, |p| {
        matches!(p, Problem::DeviceTaken { partition, device, owner }
            if partition == "linux" && device == "rtc" && owner == "rtos")
    });
}

#[test]
fn rejects_device_listed_twice() {
    let cfg = base_with(&[(r#""mbox1""#, r#""mbox0""#)]);
    assert_problem(&cfg, |p| {
        matches!(p, Problem::DeviceTaken { partition, device, owner }
            if partition == "linux" && device == "mbox0" && owner == "linux")
    });
}

#[test]
fn rejects_devices_of_two_partitions_in_one_page() {
    // mbox2 (0x0c00_0400) is in the page of linux's mbox0 and mbox1.
    let cfg = base_with(&[
        (r#"["rtc"]"#, r#"["mbox2"]"#),
        (r#""mbox0", "mbox1", "mbox2""#, r#""mbox0", "mbox1""#),
    ]);
    let shared = |device: &str| Problem::DevicePageShared {
        partition: "linux".into(),
        device: device.into(),
        other: "rtos".into(),
        other_device: "mbox2".into(),
        page: 0x0c00_0000,
    };
    assert_eq!(problems(&cfg), vec![shared("mbox0"), shared("mbox1")]);
    let shown = shared("mbox0").to_string();
    for needle in [
        "\"linux\"",
        "\"mbox0\"",
        "\"rtos\"",
        "\"mbox2\"",
        "0xc000000",
    ] {
        assert!(shown.contains(needle), "{needle} missing in {shown}");
    }
}

#[test]
fn allows_devices_in_one_page_for_one_partition() {
    // BASE gives linux all three devices of page 0x0c00_0000; mbox3 starts the next page.
    let cfg = base_with(&[(r#"["rtc"]"#, r#"["mbox3"]"#)]);
    assert_eq!(problems(&cfg), vec![]);
}

#[test]
fn rejects_a_device_page_holding_a_device_no_partition_owns() {
    let cfg = base_with(&[(r#""mbox0", "mbox1", "mbox2""#, r#""mbox0""#)]);
    let unowned = |other: &str| Problem::DevicePageHoldsUnowned {
        partition: "linux".into(),
        device: "mbox0".into(),
        other_device: other.into(),
        page: 0x0c00_0000,
    };
    assert_eq!(problems(&cfg), vec![unowned("mbox1"), unowned("mbox2")]);
    let shown = unowned("mbox2").to_string();
    for needle in ["\"linux\"", "\"mbox0\"", "\"mbox2\"", "0xc000000"] {
        assert!(shown.contains(needle), "{needle} missing in {shown}");
    }
}

#[test]
fn rejects_a_device_page_holding_a_hypervisor_device() {
    let cfg = base_with(&[(r#"["rtc"]"#, r#"["mbox4"]"#)]);
    assert_eq!(
        problems(&cfg),
        vec![Problem::DevicePageHoldsUnowned {
            partition: "rtos".into(),
            device: "mbox4".into(),
            other_device: "hvbox".into(),
            page: 0x0c00_2000,
        }]
    );
}

#[test]
fn rejects_dma_without_an_iommu() {
    // The virtio-mmio transports bypass every SMMU; all eight of one page, so only DMA is wrong.
    let all: Vec<String> = (0..8).map(|n| format!("\"virtio{n}\"")).collect();
    let cfg = base_with(&[(r#""mbox0", "mbox1", "mbox2""#, &all.join(", "))]);
    let found = problems(&cfg);
    let dma: Vec<&Problem> = found
        .iter()
        .filter(|p| matches!(p, Problem::DmaWithoutIommu { .. }))
        .collect();
    assert_eq!(dma.len(), 8, "{found:#?}");
    assert_eq!(dma.len(), found.len(), "{found:#?}");
    let shown = dma[0].to_string();
    assert!(
        shown.contains("\"virtio0\"") && shown.contains("DMA"),
        "{shown}"
    );
}

#[test]
fn allows_the_pci_root_complex_behind_the_smmu() {
    let cfg = base_with(&[(r#""mbox0", "mbox1", "mbox2""#, r#""pcie""#)]);
    assert_eq!(problems(&cfg), vec![]);
}

#[test]
fn rejects_the_smmu_and_windows_of_other_partitions() {
    // The SMMU is the hypervisor's; the root complex is one partition's.
    let cfg = base_with(&[(r#"["rtc"]"#, r#"["smmu"]"#)]);
    assert_problem(
        &cfg,
        |p| matches!(p, Problem::HypervisorDevice { device, .. } if device == "smmu"),
    );
}

#[test]
fn rejects_entry_outside_ram() {
    let cfg = base_with(&[("entry = 0x4820_0000", "entry = 0x8800_0000")]);
    assert_problem(
        &cfg,
        |p| matches!(p, Problem::EntryOutsideRam { partition, entry: 0x8800_0000 } if partition == "linux"),
    );
    // One past the end is outside too.
    let cfg = base_with(&[("entry = 0x4400_0000", "entry = 0x4800_0000")]);
    assert_problem(
        &cfg,
        |p| matches!(p, Problem::EntryOutsideRam { partition, .. } if partition == "rtos"),
    );
}

#[test]
fn rejects_partition_without_vcpu() {
    let cfg = base_with(&[("vcpus = [{ core = 0 }]", "vcpus = []")]);
    assert_problem(
        &cfg,
        |p| matches!(p, Problem::NoVcpu { partition } if partition == "rtos"),
    );
    let cfg = base_with(&[("vcpus = [{ core = 0 }]", "")]);
    assert_problem(
        &cfg,
        |p| matches!(p, Problem::NoVcpu { partition } if partition == "rtos"),
    );
}

fn many_partitions(count: usize) -> String {
    let mut s = String::from("board = \"qemu-virt\"\n");
    for i in 0..count {
        let base = 0x4800_0000 + i as u64 * 0x10_0000;
        s += &format!(
            "[[partition]]\nname = \"p{i}\"\nimage = \"img\"\nram = [{{ base = {base:#x}, size = 0x10_0000 }}]\nentry = {base:#x}\nvcpus = [{{ core = {} }}]\n",
            i % 4
        );
    }
    s
}

#[test]
fn rejects_more_partitions_than_console_channels() {
    let max = usize::from(spumone_abi::chan::GUEST_LAST - spumone_abi::chan::GUEST_BASE) + 1;
    let too_many = |p: &Problem| matches!(p, Problem::TooManyPartitions { .. });
    assert!(!problems(&many_partitions(max)).iter().any(too_many));
    assert_problem(&many_partitions(max + 1), |p| {
        *p == Problem::TooManyPartitions {
            count: max + 1,
            max,
        }
    });
}

#[test]
fn rejects_no_partition() {
    assert_problem("board = \"qemu-virt\"\n", |p| *p == Problem::NoPartition);
}

#[test]
fn rejects_duplicate_partition_names() {
    let cfg = base_with(&[(r#"name = "linux""#, r#"name = "rtos""#)]);
    assert_problem(
        &cfg,
        |p| matches!(p, Problem::DuplicatePartition { name } if name == "rtos"),
    );
}

#[test]
fn rejects_bad_names() {
    for bad in ["Linux", "linux_1", "linux 1", "", "lïnux"] {
        let cfg = base_with(&[(r#"name = "linux""#, &format!("name = {bad:?}"))]);
        assert_problem(
            &cfg,
            |p| matches!(p, Problem::BadName { what: "partition", name } if name == bad),
        );
        let cfg = base_with(&[(r#"image = "linux""#, &format!("image = {bad:?}"))]);
        assert_problem(
            &cfg,
            |p| matches!(p, Problem::BadName { what: "image", name } if name == bad),
        );
    }
}

#[test]
fn collects_several_problems() {
    let cfg = base_with(&[
        ("{ core = 2 }", "{ core = 9 }"),
        (r#"["rtc"]"#, r#"["uart0"]"#),
    ]);
    let found = problems(&cfg);
    assert!(found
        .iter()
        .any(|p| matches!(p, Problem::CoreOutOfRange { .. })));
    assert!(found
        .iter()
        .any(|p| matches!(p, Problem::HypervisorDevice { .. })));
}

// ---------------------------------------------------------------------------------------------
// Linux partitions: one valid layout, broken in exactly one way per test.

const LINUX: &str = r#"
board = "qemu-virt"

[[partition]]
name = "rtos"
image = "rtos"
ram = [{ base = 0x4400_0000, size = 0x0400_0000 }]
entry = 0x4400_0000
vcpus = [{ core = 0 }]

[[partition]]
name = "linux"
kind = "linux"
image = "linux"
ram = [{ base = 0x4800_0000, size = 0x4000_0000 }, { base = 0x9000_0000, size = 0x1000_0000 }]
devices = ["mbox3"]
kernel_offset = 0x20_0000
kernel_size = 0x0400_0000
dtb = 0x4FE0_0000
initrd = { base = 0x5000_0000, size = 0x0800_0000 }
bootargs = "console=ttyAMA0"
vcpus = [{ core = 1 }, { core = 2 }, { core = 3 }]
"#;

fn linux_with(edits: &[(&str, &str)]) -> String {
    let mut s = LINUX.to_string();
    for (from, to) in edits {
        assert!(s.contains(from), "{from:?} not in the config");
        s = s.replacen(from, to, 1);
    }
    s
}

fn linux_partition(config: &str) -> PartitionInfo {
    let raw: RawConfig = parse(Path::new("test.toml"), config).unwrap();
    let mut parts = check_partitions(&raw, &board()).unwrap();
    parts.remove(1)
}

#[test]
fn linux_layout_is_valid_and_derived() {
    let p = linux_partition(LINUX);
    assert_eq!(p.kind, Kind::Linux);
    assert_eq!(p.entry, 0x4820_0000);
    assert_eq!(p.boot_arg, 0);
    let l = p.linux.unwrap();
    assert_eq!(l.kernel, MemRange::new(0x4820_0000, 0x0400_0000));
    assert_eq!(l.initrd, MemRange::new(0x5000_0000, 0x0800_0000));
    assert_eq!(l.dtb, MemRange::new(0x4FE0_0000, LINUX_DTB_MAX));
    assert_eq!(l.bootargs, "console=ttyAMA0");
    assert_eq!(l.console, 0x0900_0000);
    let rtos = &check_partitions(&parse(Path::new("t.toml"), LINUX).unwrap(), &board()).unwrap()[0];
    assert_eq!((rtos.kind, rtos.linux.is_none()), (Kind::Rtos, true));
}

#[test]
fn linux_defaults() {
    let p = linux_partition(&linux_with(&[
        ("kernel_size = 0x0400_0000\n", ""),
        ("bootargs = \"console=ttyAMA0\"\n", ""),
    ]));
    let l = p.linux.unwrap();
    assert_eq!(l.kernel.size, LINUX_KERNEL_SIZE_DEFAULT);
    assert_eq!(l.bootargs, "");
    let p = linux_partition(&linux_with(&[(
        "kind = \"linux\"",
        "kind = \"linux\"\nconsole = 0x0a10_0000",
    )]));
    assert_eq!(p.linux.unwrap().console, 0x0a10_0000);
}

#[test]
fn rejects_unknown_kind() {
    let cfg = linux_with(&[("kind = \"linux\"", "kind = \"windows\"")]);
    let err = parse::<RawConfig>(Path::new("x.toml"), &cfg).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Syntax { .. }), "{err}");
}

#[test]
fn rejects_rtos_without_entry() {
    let cfg = linux_with(&[("entry = 0x4400_0000\n", "")]);
    assert_problem(
        &cfg,
        |p| matches!(p, Problem::NoEntry { partition } if partition == "rtos"),
    );
}

#[test]
fn rejects_linux_fields_on_rtos() {
    for (key, line) in [
        ("kernel_offset", "kernel_offset = 0"),
        ("kernel_size", "kernel_size = 0x1000"),
        ("initrd", "initrd = { base = 0x4500_0000, size = 0x1000 }"),
        ("dtb", "dtb = 0x4500_0000"),
        ("bootargs", "bootargs = \"\""),
        ("console", "console = 0x0900_0000"),
        (
            "reset_copy",
            "reset_copy = { base = 0xA000_0000, size = 0x1000_0000 }",
        ),
        ("dsm", "dsm = { period_ms = 100, policy = \"log\" }"),
        ("on_panic", "on_panic = \"stop\""),
        ("watchdog_s", "watchdog_s = 10"),
    ] {
        let cfg = linux_with(&[(
            "entry = 0x4400_0000",
            &format!("entry = 0x4400_0000\n{line}"),
        )]);
        assert_problem(
            &cfg,
            |p| matches!(p, Problem::LinuxOnlyField { partition, field } if partition == "rtos" && *field == key),
        );
    }
}

#[test]
fn rejects_entry_or_boot_arg_on_linux() {
    for (key, line) in [
        ("entry", "entry = 0x4820_0000"),
        ("boot_arg", "boot_arg = 0"),
    ] {
        let cfg = linux_with(&[("kind = \"linux\"", &format!("kind = \"linux\"\n{line}"))]);
        assert_problem(
            &cfg,
            |p| matches!(p, Problem::LinuxFixedField { partition, field } if partition == "linux" && *field == key),
        );
    }
}

#[test]
fn rejects_missing_linux_fields() {
    for (key, line) in [
        ("kernel_offset", "kernel_offset = 0x20_0000\n"),
        (
            "initrd",
            "initrd = { base = 0x5000_0000, size = 0x0800_0000 }\n",
        ),
        ("dtb", "dtb = 0x4FE0_0000\n"),
    ] {
        let cfg = linux_with(&[(line, "")]);
        assert_problem(
            &cfg,
            |p| matches!(p, Problem::MissingLinuxField { partition, field } if partition == "linux" && *field == key),
        );
    }
}

#[test]
fn rejects_unaligned_kernel() {
    let cfg = linux_with(&[("kernel_offset = 0x20_0000", "kernel_offset = 0x10_0000")]);
    assert_problem(&cfg, |p| {
        *p == Problem::UnalignedKernel {
            partition: "linux".into(),
            offset: 0x10_0000,
        }
    });
}

#[test]
fn rejects_bad_linux_regions() {
    for (what, from, to) in [
        ("kernel", "kernel_size = 0x0400_0000", "kernel_size = 0"),
        ("initrd", "size = 0x0800_0000 }", "size = 0 }"),
        ("initrd", "base = 0x5000_0000", "base = 0x5000_0800"),
        ("dtb", "dtb = 0x4FE0_0000", "dtb = 0x4FE0_0004"),
    ] {
        let cfg = linux_with(&[(from, to)]);
        assert_problem(
            &cfg,
            |p| matches!(p, Problem::BadLinuxRegion { partition, what: w, .. } if partition == "linux" && *w == what),
        );
    }
}

#[test]
fn rejects_linux_regions_outside_ram() {
    for (what, from, to) in [
        (
            "kernel",
            "kernel_size = 0x0400_0000",
            "kernel_size = 0x4000_0000",
        ),
        ("initrd", "base = 0x5000_0000", "base = 0x8800_0000"),
        ("dtb", "dtb = 0x4FE0_0000", "dtb = 0x8FFF_F000"),
    ] {
        let cfg = linux_with(&[(from, to)]);
        assert_problem(
            &cfg,
            |p| matches!(p, Problem::LinuxRegionOutsideRam { partition, what: w, .. } if partition == "linux" && *w == what),
        );
    }
}

#[test]
fn rejects_overlapping_linux_regions() {
    for (what, other, from, to) in [
        (
            "initrd",
            "kernel",
            "base = 0x5000_0000",
            "base = 0x4A00_0000",
        ),
        ("dtb", "kernel", "dtb = 0x4FE0_0000", "dtb = 0x4A00_0000"),
        ("dtb", "initrd", "dtb = 0x4FE0_0000", "dtb = 0x5200_0000"),
    ] {
        let cfg = linux_with(&[(from, to)]);
        assert_problem(&cfg, |p| {
            matches!(p, Problem::LinuxRegionOverlap { partition, what: w, other: o, .. }
                if partition == "linux" && *w == what && *o == other)
        });
    }
}

#[test]
fn rejects_dtb_across_2mib() {
    let cfg = linux_with(&[("dtb = 0x4FE0_0000", "dtb = 0x4FFF_8000")]);
    assert_problem(
        &cfg,
        |p| matches!(p, Problem::DtbCrosses2MiB { partition, dtb } if partition == "linux" && dtb.base == 0x4FFF_8000),
    );
    // Ending exactly on the boundary is fine.
    let cfg = linux_with(&[("dtb = 0x4FE0_0000", "dtb = 0x4FFF_0000")]);
    assert_eq!(problems(&cfg), vec![]);
}

#[test]
fn rejects_long_bootargs() {
    let long = "x".repeat(LINUX_BOOTARGS_MAX + 1);
    let cfg = linux_with(&[("\"console=ttyAMA0\"", &format!("{long:?}"))]);
    assert_problem(
        &cfg,
        |p| matches!(p, Problem::BootargsTooLong { partition, len, .. } if partition == "linux" && *len == LINUX_BOOTARGS_MAX + 1),
    );
    let fits = "x".repeat(LINUX_BOOTARGS_MAX);
    let cfg = linux_with(&[("\"console=ttyAMA0\"", &format!("{fits:?}"))]);
    assert_eq!(problems(&cfg), vec![]);
}

#[test]
fn rejects_control_chars_in_bootargs() {
    for bad in [r#""a\u0000b""#, r#""a\nb""#] {
        let cfg = linux_with(&[("\"console=ttyAMA0\"", bad)]);
        assert_problem(
            &cfg,
            |p| matches!(p, Problem::BootargsBadChar { partition } if partition == "linux"),
        );
    }
}

#[test]
fn rejects_bad_console() {
    let with_console = |addr: &str| {
        linux_with(&[(
            "kind = \"linux\"",
            &format!("kind = \"linux\"\nconsole = {addr}"),
        )])
    };
    assert_problem(
        &with_console("0x0900_0800"),
        |p| matches!(p, Problem::UnalignedConsole { partition, console: 0x0900_0800 } if partition == "linux"),
    );
    assert_problem(
        &with_console("0x4900_0000"),
        |p| matches!(p, Problem::ConsoleOverlap { partition, what, .. } if partition == "linux" && what == "RAM"),
    );
    assert_problem(
        &with_console("0x0c00_1000"),
        |p| matches!(p, Problem::ConsoleOverlap { partition, what, .. } if partition == "linux" && what.contains("mbox3")),
    );
}

#[test]
fn console_interrupt_comes_from_the_boards_uart() {
    assert_eq!(board().console_intid(), Some(33));
    let uart = "size = 0x1000\nirqs = [33]\nhypervisor = true";
    let without = |edit: &str| {
        let text = edited(&format!("{BOARD}{TEST_DEVICES}"), &[(uart, edit)]);
        parse_board(Path::new("b.toml"), &text, "qemu-virt").unwrap()
    };
    // Another SPI is taken as it is; a PPI, no interrupt or a UART spumone does not own is
    // not the console's.
    assert_eq!(
        without("size = 0x1000\nirqs = [40]\nhypervisor = true").console_intid(),
        Some(40)
    );
    for edit in [
        "size = 0x1000\nirqs = [27]\nhypervisor = true",
        "size = 0x1000\nhypervisor = true",
        "size = 0x1000\nirqs = [33]",
    ] {
        assert_eq!(without(edit).console_intid(), None, "{edit}");
    }
    // A Linux partition needs it.
    let raw: RawConfig = parse(Path::new("test.toml"), LINUX).unwrap();
    let found = check_partitions(&raw, &without("size = 0x1000\nhypervisor = true")).unwrap_err();
    assert!(
        found.iter().any(
            |p| matches!(p, Problem::NoConsoleInterrupt { partition } if partition == "linux")
        ),
        "{found:?}"
    );
}

/// `LINUX` with a `dsm` line.
fn linux_dsm(settings: &str) -> String {
    linux_with(&[(
        "bootargs = ",
        &format!("dsm = {{ {settings} }}\nbootargs = "),
    )])
}

#[test]
fn linux_dsm_is_optional_and_kept() {
    assert_eq!(linux_partition(LINUX).linux.unwrap().dsm, None);
    for (policy, want) in [
        ("log", DsmPolicy::Log),
        ("pause", DsmPolicy::Pause),
        ("stop", DsmPolicy::Stop),
    ] {
        let cfg = linux_dsm(&format!("period_ms = 250, policy = \"{policy}\""));
        assert_eq!(
            linux_partition(&cfg).linux.unwrap().dsm,
            Some(Dsm {
                period_ms: 250,
                policy: want,
                share_permille: DSM_SHARE_PERMILLE_DEFAULT,
            })
        );
    }
    for share in [1, 25, DSM_SHARE_PERMILLE_MAX] {
        let cfg = linux_dsm(&format!(
            "period_ms = 250, policy = \"log\", share_permille = {share}"
        ));
        let dsm = linux_partition(&cfg).linux.unwrap().dsm.unwrap();
        assert_eq!(dsm.share_permille, share);
    }
}

#[test]
fn rejects_bad_dsm_settings() {
    assert_problem(
        &linux_dsm("period_ms = 100, policy = \"reboot\""),
        |p| matches!(p, Problem::UnknownDsmPolicy { partition, policy } if partition == "linux" && policy == "reboot"),
    );
    for period in [0, DSM_PERIOD_MS_MIN - 1, DSM_PERIOD_MS_MAX + 1] {
        assert_problem(
            &linux_dsm(&format!("period_ms = {period}, policy = \"stop\"")),
            |p| matches!(p, Problem::DsmPeriodOutOfRange { period_ms, .. } if *period_ms == period),
        );
    }
    for share in [0, u32::from(DSM_SHARE_PERMILLE_MAX) + 1, 70_000] {
        assert_problem(
            &linux_dsm(&format!(
                "period_ms = 100, policy = \"stop\", share_permille = {share}"
            )),
            |p| matches!(p, Problem::DsmShareOutOfRange { share_permille, partition } if *share_permille == share && partition == "linux"),
        );
    }
    let err = Problem::DsmShareOutOfRange {
        partition: "linux".into(),
        share_permille: 0,
    }
    .to_string();
    assert!(
        err.contains("share_permille 0 is outside 1..=1000"),
        "{err}"
    );
    // Both keys are required and no other is accepted.
    for bad in [
        "period_ms = 100",
        "policy = \"log\"",
        "period_ms = 100, policy = \"log\", x = 1",
    ] {
        let err = parse::<RawConfig>(Path::new("x.toml"), &linux_dsm(bad)).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Syntax { .. }),
            "{bad}: {err}"
        );
    }
}

/// `LINUX` with a `reset_copy` line; the valid one sits just above the Linux RAM and holds
/// exactly `kernel_size` + the initrd room.
fn linux_reset_copy(range: &str) -> String {
    linux_with(&[(
        "bootargs = ",
        &format!("reset_copy = {{ {range} }}\nbootargs = "),
    )])
}

const RESET_COPY: &str = "base = 0xA000_0000, size = 0x0C00_0000";

#[test]
fn linux_reset_copy_is_optional_and_kept() {
    assert_eq!(linux_partition(LINUX).linux.unwrap().reset_copy, None);
    let l = linux_partition(&linux_reset_copy(RESET_COPY))
        .linux
        .unwrap();
    assert_eq!(l.reset_copy, Some(MemRange::new(0xA000_0000, 0x0C00_0000)));
}

/// `LINUX` with extra lines before `bootargs` (and a valid `reset_copy` when `copy`).
fn linux_lines(copy: bool, lines: &str) -> String {
    let copy = if copy {
        format!("reset_copy = {{ {RESET_COPY} }}\n")
    } else {
        String::new()
    };
    linux_with(&[("bootargs = ", &format!("{copy}{lines}\nbootargs = "))])
}

#[test]
fn on_panic_defaults_to_restart_only_with_a_reset_copy() {
    let without = linux_partition(LINUX).linux.unwrap();
    assert_eq!(without.on_panic, OnPanic::Stop);
    assert_eq!(without.watchdog_s, WATCHDOG_S_DEFAULT);
    let with = linux_partition(&linux_reset_copy(RESET_COPY))
        .linux
        .unwrap();
    assert_eq!(with.on_panic, OnPanic::Restart);
    let stop = linux_partition(&linux_lines(true, "on_panic = \"stop\"\nwatchdog_s = 30"))
        .linux
        .unwrap();
    assert_eq!((stop.on_panic, stop.watchdog_s), (OnPanic::Stop, 30));
}

#[test]
fn rejects_bad_on_panic_and_watchdog() {
    assert_problem(&linux_lines(true, "on_panic = \"reboot\""), |p| {
        matches!(p, Problem::UnknownOnPanic { partition, on_panic }
            if partition == "linux" && on_panic == "reboot")
    });
    let cfg = linux_lines(false, "on_panic = \"restart\"");
    assert_problem(
        &cfg,
        |p| matches!(p, Problem::RestartWithoutResetCopy { partition } if partition == "linux"),
    );
    let shown = Problem::RestartWithoutResetCopy {
        partition: "linux".into(),
    }
    .to_string();
    assert!(
        shown.contains("has no reset_copy to restart from"),
        "{shown}"
    );
    for bad in [0, 1, 3601, 70_000] {
        assert_problem(
            &linux_lines(true, &format!("watchdog_s = {bad}")),
            |p| matches!(p, Problem::WatchdogOutOfRange { watchdog_s, .. } if *watchdog_s == bad),
        );
    }
}

#[test]
fn rejects_bad_reset_copy_ranges() {
    let found = problems(&linux_reset_copy("base = 0xA000_0000, size = 0"));
    assert!(
        found.contains(&Problem::EmptyResetCopy {
            partition: "linux".into(),
            range: MemRange::new(0xA000_0000, 0),
        }),
        "{found:#?}"
    );
    assert_problem(
        &linux_reset_copy("base = 0xFFFF_FFFF_F000_0000, size = 0x1000_0000"),
        |p| matches!(p, Problem::ResetCopyOverflows { partition, .. } if partition == "linux"),
    );
    for range in [
        "base = 0xA000_0800, size = 0x0C00_0000",
        "base = 0xA000_0000, size = 0x0C00_0800",
    ] {
        assert_problem(
            &linux_reset_copy(range),
            |p| matches!(p, Problem::UnalignedResetCopy { partition, .. } if partition == "linux"),
        );
    }
}

#[test]
fn rejects_reset_copy_outside_board_ram() {
    assert_problem(
        &linux_reset_copy("base = 0xB800_0000, size = 0x0C00_0000"),
        |p| {
            matches!(p, Problem::ResetCopyOutsideBoard { partition, range, .. }
                if partition == "linux" && range.base == 0xB800_0000)
        },
    );
}

#[test]
fn rejects_reset_copy_overlapping_hypervisor() {
    assert_problem(
        &linux_reset_copy("base = 0x4000_0000, size = 0x0C00_0000"),
        |p| {
            matches!(p, Problem::ResetCopyOverlapsHypervisor { partition, hypervisor, .. }
                if partition == "linux" && *hypervisor == board().hypervisor_ram)
        },
    );
}

#[test]
fn rejects_reset_copy_overlapping_partition_ram() {
    // Its own RAM: the guest could overwrite the copy.
    assert_problem(
        &linux_reset_copy("base = 0x8C00_0000, size = 0x0C00_0000"),
        |p| {
            matches!(p, Problem::ResetCopyOverlapsRam { partition, other, other_range, .. }
                if partition == "linux" && other == "linux" && other_range.base == 0x9000_0000)
        },
    );
    // Another partition's RAM.
    assert_problem(
        &linux_reset_copy("base = 0x4400_0000, size = 0x0400_0000"),
        |p| {
            matches!(p, Problem::ResetCopyOverlapsRam { partition, other, .. }
                if partition == "linux" && other == "rtos")
        },
    );
}

/// A small Linux partition with 512 MiB of RAM at `base`, a 32 MiB Image and initrd room,
/// and the given `reset_copy` range.
fn small_linux(name: &str, base: u64, copy: &str, core: u8) -> String {
    format!(
        "[[partition]]\nname = {name:?}\nkind = \"linux\"\nimage = \"linux\"\n\
         ram = [{{ base = {base:#x}, size = 0x2000_0000 }}]\n\
         kernel_offset = 0x20_0000\nkernel_size = 0x0200_0000\ndtb = {:#x}\n\
         initrd = {{ base = {:#x}, size = 0x0200_0000 }}\n\
         reset_copy = {{ {copy} }}\nvcpus = [{{ core = {core} }}]\n",
        base + 0x0BE0_0000,
        base + 0x0C00_0000,
    )
}

#[test]
fn rejects_reset_copies_overlapping_each_other() {
    // Two Linux partitions whose copies share 0xB000_0000..0xB400_0000.
    let two = |second: &str| {
        format!(
            "board = \"qemu-virt\"\n{}{}",
            small_linux(
                "one",
                0x4400_0000,
                "base = 0xA800_0000, size = 0x0C00_0000",
                0
            ),
            small_linux("two", 0x6400_0000, second, 1)
        )
    };
    assert_eq!(
        problems(&two("base = 0xB400_0000, size = 0x0400_0000")),
        vec![]
    );
    let found = problems(&two("base = 0xB000_0000, size = 0x0400_0000"));
    assert_eq!(
        found,
        vec![Problem::ResetCopyOverlap {
            partition: "two".into(),
            range: MemRange::new(0xB000_0000, 0x0400_0000),
            other: "one".into(),
            other_range: MemRange::new(0xA800_0000, 0x0C00_0000),
        }]
    );
}

#[test]
fn rejects_reset_copy_too_small_for_image_and_initrd() {
    // kernel_size 0x0400_0000 + initrd 0x0800_0000 = 0x0C00_0000; one page less fails.
    let found = problems(&linux_reset_copy("base = 0xA000_0000, size = 0x0BFF_F000"));
    let want = Problem::ResetCopyTooSmall {
        partition: "linux".into(),
        range: MemRange::new(0xA000_0000, 0x0BFF_F000),
        kernel_size: 0x0400_0000,
        initrd_size: 0x0800_0000,
    };
    assert_eq!(found, vec![want.clone()]);
    let shown = want.to_string();
    assert!(
        shown.contains("0xc000000") && shown.contains("always fits"),
        "{shown}"
    );
    // A bigger kernel_size needs a bigger copy.
    let cfg = linux_reset_copy(RESET_COPY).replacen(
        "kernel_size = 0x0400_0000",
        "kernel_size = 0x0400_1000",
        1,
    );
    assert_problem(&cfg, |p| {
        matches!(
            p,
            Problem::ResetCopyTooSmall {
                kernel_size: 0x0400_1000,
                ..
            }
        )
    });
    // Without the key, the default kernel_size counts.
    let size = LINUX_KERNEL_SIZE_DEFAULT + 0x0800_0000 - PAGE_SIZE;
    let cfg = linux_reset_copy(&format!("base = 0xA000_0000, size = {size:#x}")).replacen(
        "kernel_size = 0x0400_0000\n",
        "",
        1,
    );
    assert_problem(&cfg, |p| {
        matches!(p, Problem::ResetCopyTooSmall { kernel_size, .. }
            if *kernel_size == LINUX_KERNEL_SIZE_DEFAULT)
    });
}

#[test]
fn shipped_linux_configs() {
    for name in ["linux", "demo"] {
        let cfg = load_config(&crate_path(&format!("configs/{name}.toml"))).unwrap();
        let p = cfg.partition("linux").unwrap();
        assert_eq!(p.kind, Kind::Linux);
        assert_eq!(
            p.vcpus,
            vec![Vcpu { core: 1 }, Vcpu { core: 2 }, Vcpu { core: 3 }]
        );
        let devices: Vec<&str> = p.devices.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(devices, ["pcie"]);
        assert!(p.ram.iter().map(|r| r.size).sum::<u64>() >= 1 << 30);
        let l = p.linux.as_ref().unwrap();
        assert_eq!(p.entry, l.kernel.base);
        assert_eq!(l.console, LINUX_CONSOLE_DEFAULT);
        let copy = l.reset_copy.unwrap();
        assert!(copy.size >= l.kernel.size + l.initrd.size);
        assert!(!p.ram.iter().any(|r| r.overlaps(&copy)));
        assert_eq!(
            l.on_panic,
            OnPanic::Restart,
            "{name}: a copy to restart from"
        );
    }
    let shared = load_config(&crate_path("configs/shared-1.toml")).unwrap();
    let l = shared.partition("linux").unwrap().linux.clone().unwrap();
    assert_eq!(l.on_panic, OnPanic::Stop, "shared-1 has no reset_copy");
    let demo = load_config(&crate_path("configs/demo.toml")).unwrap();
    assert_eq!(
        demo.partition("rtos").unwrap().vcpus,
        vec![Vcpu { core: 0 }]
    );
}

// ---------------------------------------------------------------------------------------------
// Board file checks.

#[test]
fn board_name_must_match() {
    let err = parse_board(Path::new("b.toml"), BOARD, "other").unwrap_err();
    assert!(err.problems().iter().any(|p| matches!(p,
        Problem::BoardNameMismatch { expected, found } if expected == "other" && found == "qemu-virt")));
}

#[test]
fn board_hypervisor_region_inside_ram() {
    let text = BOARD.replacen(
        "hypervisor = { base = 0x4000_0000",
        "hypervisor = { base = 0x3000_0000",
        1,
    );
    assert_ne!(text, BOARD);
    let err = parse_board(Path::new("b.toml"), &text, "qemu-virt").unwrap_err();
    assert!(err
        .problems()
        .iter()
        .any(|p| matches!(p, Problem::HypervisorOutsideRam { .. })));
}

#[test]
fn board_device_names_unique() {
    let text = BOARD.replacen(r#"name = "rtc""#, r#"name = "gpio""#, 1);
    assert_ne!(text, BOARD);
    let err = parse_board(Path::new("b.toml"), &text, "qemu-virt").unwrap_err();
    assert!(err
        .problems()
        .iter()
        .any(|p| matches!(p, Problem::DuplicateDevice { name } if name == "gpio")));
}

#[test]
fn board_marks_hypervisor_devices() {
    let b = board();
    let owned: Vec<&str> = b
        .devices
        .iter()
        .filter(|d| d.hypervisor_owned)
        .map(|d| d.name.as_str())
        .collect();
    for name in ["uart0", "gicd", "gicr"] {
        assert!(owned.contains(&name), "{name} should be hypervisor-owned");
    }
    for n in 0..32u64 {
        let d = b.device(&format!("virtio{n}")).unwrap();
        assert_eq!(d.base, 0x0a00_0000 + n * 0x200);
        assert_eq!(d.irqs, [48 + n as u32]);
        assert!(!d.hypervisor_owned);
        assert!(
            d.dma && d.iommu.is_none(),
            "virtio{n} does DMA outside the SMMU"
        );
    }
}

#[test]
fn board_puts_the_pci_root_complex_behind_its_smmu() {
    let b = board();
    let smmu = b.device("smmu").unwrap();
    assert_eq!((smmu.kind.as_str(), smmu.base), (SMMU_V3_KIND, 0x0905_0000));
    assert!(smmu.hypervisor_owned);
    let pcie = b.device("pcie").unwrap();
    assert!(pcie.dma);
    assert_eq!(
        pcie.iommu,
        Some(IommuLink {
            smmu: "smmu".into(),
            first_stream: 0,
            streams: 0x100
        })
    );
    assert_eq!(pcie.irqs, [35, 36, 37, 38]);
    let spaces: Vec<Space> = pcie.windows.iter().map(|w| w.space).collect();
    assert_eq!(spaces, [Space::Io, Space::Mem32]);
    // The ECAM and the windows are what its owner reaches.
    assert_eq!(pcie.ranges().count(), 3);
}

/// The board with `from` replaced by `to` once, and the problems it has.
fn board_problems(edits: &[(&str, &str)]) -> Vec<Problem> {
    let text = edited(&format!("{BOARD}{TEST_DEVICES}"), edits);
    match parse_board(Path::new("b.toml"), &text, "qemu-virt") {
        Ok(_) => Vec::new(),
        Err(e) => e.problems().to_vec(),
    }
}

const PCIE_IOMMU: &str = r#"iommu = { smmu = "smmu", first_stream = 0x0, streams = 0x100 }"#;

#[test]
fn board_rejects_an_iommu_that_cannot_isolate() {
    let why = |edit: &str| {
        let found = board_problems(&[(PCIE_IOMMU, edit)]);
        match found.as_slice() {
            [Problem::BadIommu { device, why, .. }] if device == "pcie" => *why,
            other => panic!("{other:#?}"),
        }
    };
    assert!(
        why(r#"iommu = { smmu = "nope", first_stream = 0, streams = 1 }"#).contains("not a device")
    );
    assert!(why(r#"iommu = { smmu = "gpio", first_stream = 0, streams = 1 }"#).contains("SMMUv3"));
    assert!(
        why(r#"iommu = { smmu = "smmu", first_stream = 0, streams = 0 }"#).contains("no stream")
    );
    let found = board_problems(&[
        (
            PCIE_IOMMU,
            r#"iommu = { smmu = "smmu", first_stream = 0, streams = 1 }"#,
        ),
        (
            "size = 0x2_0000\nirqs = [106, 107, 108, 109]\nhypervisor = true",
            "size = 0x2_0000\nirqs = [106]",
        ),
    ]);
    assert!(
        matches!(found.as_slice(), [Problem::BadIommu { why, .. }] if why.contains("hypervisor")),
        "{found:#?}"
    );
}

#[test]
fn board_rejects_streams_claimed_twice() {
    let found = board_problems(&[(
        "name = \"mbox3\"\nkind = \"test,mailbox\"",
        "name = \"mbox3\"\niommu = { smmu = \"smmu\", first_stream = 0xff, streams = 2 }\nkind = \"test,mailbox\"",
    )]);
    assert_eq!(
        found,
        vec![Problem::StreamsOverlap {
            device: "mbox3".into(),
            other: "pcie".into(),
            smmu: "smmu".into()
        }]
    );
}

#[test]
fn board_rejects_bad_windows() {
    let io = r#"{ space = "io", base = 0x3EFF_0000, size = 0x1_0000 }"#;
    let found = board_problems(&[(
        io,
        r#"{ space = "cfg", base = 0x3EFF_0000, size = 0x1_0000 }"#,
    )]);
    assert!(
        matches!(found.as_slice(), [Problem::UnknownWindowSpace { device, space }] if device == "pcie" && space == "cfg"),
        "{found:#?}"
    );
    let found = board_problems(&[(
        io,
        r#"{ space = "io", base = 0x4800_0000, size = 0x1_0000 }"#,
    )]);
    assert!(
        matches!(found.as_slice(), [Problem::WindowOverlapsRam { .. }]),
        "{found:#?}"
    );
    let found = board_problems(&[(
        io,
        r#"{ space = "io", base = 0x3EFF_0800, size = 0x1_0000 }"#,
    )]);
    assert!(
        matches!(found.as_slice(), [Problem::BoardBadRange { what, .. }] if what.contains("window")),
        "{found:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Errors and messages.

#[test]
fn unknown_field_is_a_syntax_error_with_line() {
    let cfg = base_with(&[("entry = 0x4820_0000", "entyr = 0x4820_0000")]);
    let line = cfg.lines().position(|l| l.starts_with("entyr")).unwrap() + 1;
    let err = parse::<RawConfig>(Path::new("x.toml"), &cfg).unwrap_err();
    match err.kind() {
        ErrorKind::Syntax {
            line: l, message, ..
        } => {
            assert_eq!(*l, line);
            assert!(message.contains("entyr"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let shown = err.to_string();
    assert!(shown.starts_with(&format!("x.toml:{line}:")), "{shown}");
    assert_eq!(shown.lines().count(), 1, "{shown}");
}

#[test]
fn bad_toml_reports_line_and_column() {
    let text = "board = \"qemu-virt\"\n\n[[partition]\nname = \"x\"\n";
    let err = parse::<RawConfig>(Path::new("x.toml"), text).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Syntax { line: 3, .. }),
        "{err}"
    );
}

#[test]
fn display_names_file_partition_and_values() {
    let err = invalid(
        Path::new("board/configs/x.toml"),
        vec![
            Problem::RamOverlap {
                partition: "linux".into(),
                range: MemRange::new(0x4400_0000, 0x0400_0000),
                other: "rtos".into(),
                other_range: MemRange::new(0x4400_0000, 0x0400_0000),
            },
            Problem::NoVcpu {
                partition: "linux".into(),
            },
        ],
    );
    assert_eq!(
        err.to_string(),
        "board/configs/x.toml: partition \"linux\" RAM 0x44000000..0x48000000 overlaps partition \"rtos\" RAM 0x44000000..0x48000000\n\
         board/configs/x.toml: partition \"linux\" has no vCPU"
    );
}

#[test]
fn every_problem_is_one_line() {
    let cfg = base_with(&[
        ("{ core = 2 }", "{ core = 0 }"),
        (r#""mbox1""#, r#""nope""#),
        ("size = 0x4000_0000", "size = 0x8000_0100"),
    ]);
    let found = problems(&cfg);
    assert!(found.len() >= 3, "{found:#?}");
    let shown = invalid(Path::new("c.toml"), found.clone()).to_string();
    assert_eq!(shown.lines().count(), found.len(), "{shown}");
    assert!(shown.lines().all(|l| l.starts_with("c.toml: ")), "{shown}");
}

#[test]
fn board_is_resolved_next_to_configs() {
    assert_eq!(
        board_path_for(Path::new("board/configs/rtos.toml"), "qemu-virt"),
        Path::new("board/boards/qemu-virt.toml")
    );
    assert_eq!(
        board_path_for(Path::new("rtos.toml"), "b"),
        Path::new("../boards/b.toml")
    );
}

#[test]
fn load_reports_missing_board_file() {
    let dir = std::env::temp_dir().join(format!("board-test-{}", std::process::id()));
    let configs = dir.join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    let path = configs.join("c.toml");
    std::fs::write(&path, base_with(&[("\"qemu-virt\"", "\"no-such-board\"")])).unwrap();
    let err = load_config(&path).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(err.kind(), ErrorKind::Io(_)), "{err}");
    assert_eq!(err.file(), dir.join("boards").join("no-such-board.toml"));
}

#[test]
fn load_rejects_invalid_config_naming_it() {
    let path = crate_path("configs/rtos.toml");
    let dir = std::env::temp_dir().join(format!("board-test-bad-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("configs")).unwrap();
    std::fs::create_dir_all(dir.join("boards")).unwrap();
    std::fs::write(dir.join("boards/qemu-virt.toml"), BOARD).unwrap();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("core = 0", "core = 7");
    let bad = dir.join("configs/bad.toml");
    std::fs::write(&bad, text).unwrap();
    let err = load_config(&bad).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(err.file(), bad);
    assert_eq!(
        err.problems(),
        [Problem::CoreOutOfRange {
            partition: "rtos".into(),
            core: 7,
            cores: 4
        }]
    );
}

// ---------------------------------------------------------------------------------------------
// Core sharing: a Linux vCPU marked `shared` joins the RTOS vCPU of its core.

const SHARED: &str = include_str!("../../configs/shared.toml");

fn shared_with(edits: &[(&str, &str)]) -> String {
    edited(SHARED, edits)
}

#[test]
fn shared_config_places_linux_vcpu_0_beside_the_rtos() {
    assert_eq!(problems(SHARED), vec![]);
    let raw: RawConfig = parse(Path::new("shared.toml"), SHARED).unwrap();
    let parts = check_partitions(&raw, &board()).unwrap();
    let linux = &parts[1];
    assert_eq!(linux.vcpus[0], Vcpu { core: 0 });
    assert_eq!(parts[0].vcpus, vec![Vcpu { core: 0 }]);
    assert_eq!(linux.vcpus.len(), 4);
    assert_eq!(
        linux.linux.as_ref().map(|l| l.policy),
        Some(MigrationPolicy::Pinned)
    );
}

#[test]
fn sharing_needs_the_shared_flag() {
    let cfg = shared_with(&[("{ core = 0, shared = true }", "{ core = 0 }")]);
    assert_problem(&cfg, |p| {
        matches!(p, Problem::CoreTaken { partition, core: 0, owner }
            if partition == "linux" && owner == "rtos")
    });
}

#[test]
fn only_linux_vcpus_may_be_shared() {
    let cfg = shared_with(&[(
        "vcpus = [{ core = 0 }]",
        "vcpus = [{ core = 0, shared = true }]",
    )]);
    assert_problem(
        &cfg,
        |p| matches!(p, Problem::SharedNotLinux { partition, core: 0 } if partition == "rtos"),
    );
}

#[test]
fn shared_vcpu_needs_an_rtos_on_its_core() {
    let cfg = shared_with(&[
        ("{ core = 0, shared = true }", "{ core = 3, shared = true }"),
        ("{ core = 3 }]", "{ core = 0 }]"),
    ]);
    let found = problems(&cfg);
    assert!(
        found.iter().any(
            |p| matches!(p, Problem::SharedWithoutRtos { partition, core: 3 } if partition == "linux")
        ),
        "{found:#?}"
    );
}

#[test]
fn only_vcpu_0_may_share_for_now() {
    let cfg = shared_with(&[(
        "[{ core = 0, shared = true }, { core = 1 }",
        "[{ core = 1 }, { core = 0, shared = true }",
    )]);
    assert_problem(
        &cfg,
        |p| matches!(p, Problem::SharedNotFirst { partition, core: 0, vcpu: 1 } if partition == "linux"),
    );
}

#[test]
fn two_linux_vcpus_never_share_a_core() {
    let cfg = shared_with(&[("{ core = 1 }", "{ core = 0, shared = true }")]);
    assert_problem(&cfg, |p| {
        matches!(p, Problem::CoreTaken { partition, core: 0, owner }
            if partition == "linux" && owner == "linux")
    });
}

#[test]
fn migration_policy_is_parsed_and_checked() {
    for (name, want) in [
        ("spumone", MigrationPolicy::Spumone),
        ("load", MigrationPolicy::Load),
        ("pinned", MigrationPolicy::Pinned),
        ("rotate", MigrationPolicy::Rotate),
    ] {
        let cfg = shared_with(&[("policy = \"pinned\"", &format!("policy = \"{name}\""))]);
        let raw: RawConfig = parse(Path::new("t.toml"), &cfg).unwrap();
        let parts = check_partitions(&raw, &board()).unwrap();
        assert_eq!(parts[1].linux.as_ref().unwrap().policy, want);
        assert_eq!(want.name(), name);
    }
    let cfg = shared_with(&[("policy = \"pinned\"", "policy = \"fastest\"")]);
    assert_problem(&cfg, |p| {
        matches!(p, Problem::UnknownMigrationPolicy { partition, policy }
            if partition == "linux" && policy == "fastest")
    });
    let cfg = shared_with(&[(
        "boot_arg = 0x3_E804",
        "boot_arg = 0x3_E804\npolicy = \"load\"",
    )]);
    assert_problem(
        &cfg,
        |p| matches!(p, Problem::LinuxOnlyField { partition, field } if partition == "rtos" && *field == "policy"),
    );
}

#[test]
fn migration_policy_defaults_to_pinned_and_is_generated() {
    let cfg = shared_with(&[("policy = \"pinned\"\n", "")]);
    let raw: RawConfig = parse(Path::new("t.toml"), &cfg).unwrap();
    let parts = check_partitions(&raw, &board()).unwrap();
    assert_eq!(
        parts[1].linux.as_ref().unwrap().policy,
        MigrationPolicy::Pinned
    );
    let src = load_config(&crate_path("configs/shared.toml"))
        .unwrap()
        .to_rust();
    assert!(
        src.contains("policy: board::rt::MigrationPolicy::Pinned,"),
        "{src}"
    );
}

#[test]
fn preload_ns_is_the_rtos_own_with_a_default_and_a_bound() {
    let parts = |cfg: &str| {
        let raw: RawConfig = parse(Path::new("test.toml"), cfg).unwrap();
        check_partitions(&raw, &board()).unwrap()
    };
    let defaults = parts(LINUX);
    assert_eq!(defaults[0].preload_ns, crate::rt::DEFAULT_PRELOAD_NS);
    assert_eq!(defaults[1].preload_ns, 0, "Linux is never loaded ahead");
    for ns in [0, 5_000, crate::rt::MAX_PRELOAD_NS] {
        let cfg = linux_with(&[(
            "entry = 0x4400_0000",
            &format!("entry = 0x4400_0000\npreload_ns = {ns}"),
        )]);
        assert_eq!(parts(&cfg)[0].preload_ns, ns);
    }
    let too_long = linux_with(&[(
        "entry = 0x4400_0000",
        &format!(
            "entry = 0x4400_0000\npreload_ns = {}",
            crate::rt::MAX_PRELOAD_NS + 1
        ),
    )]);
    assert_problem(
        &too_long,
        |p| matches!(p, Problem::PreloadTooLong { partition, .. } if partition == "rtos"),
    );
    let on_linux = linux_with(&[("kind = \"linux\"", "kind = \"linux\"\npreload_ns = 1000")]);
    assert_problem(
        &on_linux,
        |p| matches!(p, Problem::RtosOnlyField { partition, field } if partition == "linux" && *field == "preload_ns"),
    );
}
