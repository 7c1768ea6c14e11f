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
