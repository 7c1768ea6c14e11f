//! The QEMU command line for a scenario.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::firmware::Firmware;
use crate::scenario::Kind;
use crate::setup::QEMU;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QemuOptions {
    /// Deterministic guest time: one instruction per virtual nanosecond.
    pub icount: bool,
    /// Stop at the first instruction and wait for a debugger on TCP port 1234.
    pub gdb: bool,
    /// A raw disk image attached as virtio-blk (`/dev/vda` in Linux).
    pub disk: Option<Disk>,
    /// More disks, each a `virtio-blk-pci` function in a fixed slot of the root bus (the
    /// probes' scratch disks); writes go to an overlay.
    pub pci_disks: Vec<PciDisk>,
    /// A TCG plugin to load (the path-length plugin, [`crate::pathlen`]).
    pub plugin: Option<crate::pathlen::QemuPlugin>,
}

/// A disk on the PCIe root bus at a fixed slot, so the guest finds it by its PCI address
/// (`0000:00:SS.0`) and the SMMU sees it as stream `slot << 3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciDisk {
    pub path: PathBuf,
    pub slot: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub path: PathBuf,
    /// Without it QEMU keeps writes in a temporary overlay (`snapshot=on`): the image stays as
    /// it was.
    pub writable: bool,
}

/// Linux's devices are virtio-pci functions on the root bus of the PCIe root complex, which
/// the SMMU translates under spumone (the board's `pcie`). Their slots are fixed so their
/// stream IDs (requester IDs, `slot << 3`) are known: the disk is 00:02.0 (stream 0x10), the
/// network card 00:03.0 (stream 0x18).
pub const PCI_BUS: &str = "pcie.0";
/// Without `iommu_platform=on` QEMU's virtio devices do DMA straight to physical memory,
/// past the SMMU; it needs the modern interface only (a legacy driver could not accept
/// VIRTIO_F_ACCESS_PLATFORM, and QEMU refuses a driver that does not).
pub const VIRTIO_PCI_OPTIONS: &str = "iommu_platform=on,disable-legacy=on";
pub const DISK_SLOT: u8 = 2;
pub const NET_SLOT: u8 = 3;

/// The machine: QEMU `virt` with a GICv3; under spumone with EL2 and the SMMUv3 in front of
/// the PCIe root complex. `highmem=off` keeps the ECAM and PCI windows below 4 GiB, where
/// the board file has them.
pub const HYPERVISOR_MACHINE: &str =
    "virt,virtualization=on,gic-version=3,iommu=smmuv3,highmem=off";
pub const NATIVE_MACHINE: &str = "virt,gic-version=3,highmem=off";

/// The arguments after the program name.
pub fn args(firmware: &Firmware, options: &QemuOptions) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
    match firmware.scenario.kind {
        Kind::Hypervisor { .. } => push(&["-M", HYPERVISOR_MACHINE]),
        Kind::Native { .. } => push(&["-M", NATIVE_MACHINE]),
    }
    push(&["-cpu", "cortex-a72", "-smp", &firmware.cpus.to_string()]);
    // A guest reset ends the run rather than looping through boot again.
    push(&["-m", "2G", "-nographic", "-no-reboot"]);
    if options.icount {
        push(&["-icount", "shift=0,align=off,sleep=off"]);
    }
    if options.gdb {
        push(&["-s", "-S"]);
    }
    if let Some(plugin) = &options.plugin {
        // `-d plugin` shows what the plugin prints (QEMU's log goes to stderr).
        push(&["-plugin", &plugin.option(), "-d", "plugin"]);
    }
    if let Some(disk) = &options.disk {
        let mut drive = OsString::from("file=");
        drive.push(&disk.path);
        drive.push(",if=none,id=d0,format=raw");
        if !disk.writable {
            drive.push(",snapshot=on");
        }
        args.push("-drive".into());
        args.push(drive);
        args.push("-device".into());
        args.push(
            format!(
                "virtio-blk-pci,drive=d0,bus={PCI_BUS},addr={DISK_SLOT:#x},{VIRTIO_PCI_OPTIONS}"
            )
            .into(),
        );
    }
    if firmware.consoles.iter().any(|c| c == crate::linux::CONSOLE) {
        // User networking: the host is 10.0.2.2 to the guest, which gets 10.0.2.15 by DHCP.
        for arg in [
            "-netdev".to_string(),
            "user,id=net0".to_string(),
            "-device".to_string(),
            format!(
                "virtio-net-pci,netdev=net0,bus={PCI_BUS},addr={NET_SLOT:#x},{VIRTIO_PCI_OPTIONS}"
            ),
        ] {
            args.push(arg.into());
        }
    } else {
        // Otherwise QEMU adds a network card of its own.
        args.push("-nic".into());
        args.push("none".into());
    }
    for disk in &options.pci_disks {
        let id = format!("pd{}", disk.slot);
        let mut drive = OsString::from("file=");
        drive.push(&disk.path);
        drive.push(format!(",if=none,id={id},format=raw,snapshot=on"));
        args.push("-drive".into());
        args.push(drive);
        args.push("-device".into());
        // Behind the SMMU like Linux's own disk: a scratch disk is a device Linux has.
        args.push(
            format!(
                "virtio-blk-pci,drive={id},bus={PCI_BUS},addr={:#x},{VIRTIO_PCI_OPTIONS}",
                disk.slot
            )
            .into(),
        );
    }
    args.push("-kernel".into());
    args.push(firmware.kernel.clone().into_os_string());
    if let Some(initrd) = &firmware.initrd {
        args.push("-initrd".into());
        args.push(initrd.clone().into_os_string());
    }
    if let Some(append) = &firmware.append {
        args.push("-append".into());
        args.push(append.into());
    }
    for image in &firmware.loads {
        args.push("-device".into());
        let mut spec = OsString::from("loader,file=");
        spec.push(image);
        args.push(spec);
    }
    for (image, addr) in &firmware.raw_loads {
        args.push("-device".into());
        let mut spec = OsString::from("loader,file=");
        spec.push(image);
        spec.push(format!(",addr={addr:#x},force-raw=on"));
        args.push(spec);
    }
    args.extend(extra_args(
        std::env::var("SPUMONE_QEMU_EXTRA").ok().as_deref(),
    ));
    args
}

/// `SPUMONE_QEMU_EXTRA`: more QEMU arguments for every run, split at whitespace, for
/// debugging a run that tests or benchmarks start (say `-gdb tcp::1240` to attach to a hung
/// one, or `-d guest_errors -D qemu.log`).
fn extra_args(extra: Option<&str>) -> Vec<OsString> {
    extra
        .unwrap_or("")
        .split_whitespace()
        .map(OsString::from)
        .collect()
}

/// The whole command as one shell-like line, for messages.
pub fn command_line(args: &[OsString]) -> String {
    let mut line = QEMU.to_string();
    for arg in args {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_arguments_split_at_whitespace() {
        assert!(extra_args(None).is_empty());
        assert!(extra_args(Some("  ")).is_empty());
        assert_eq!(
            extra_args(Some(" -gdb  tcp::1240\t-d guest_errors")),
            ["-gdb", "tcp::1240", "-d", "guest_errors"].map(OsString::from)
        );
    }
    use crate::scenario::find;
    use std::path::PathBuf;

    fn hv_firmware() -> Firmware {
        Firmware {
            scenario: find("rtos").unwrap(),
            cpus: 4,
            kernel: PathBuf::from("/img/spumone.elf"),
            loads: vec![PathBuf::from("/img/rtos.elf")],
            consoles: vec!["rtos".into()],
            hv_elf: Some(PathBuf::from("/img/spumone.elf")),
            plain_log: false,
            initrd: None,
            append: None,
            raw_loads: vec![],
            boot_info: None,
        }
    }

    #[test]
    fn hypervisor_command_line() {
        let line = command_line(&args(&hv_firmware(), &QemuOptions::default()));
        assert_eq!(
            line,
            "qemu-system-aarch64 -M virt,virtualization=on,gic-version=3,iommu=smmuv3,highmem=off \
             -cpu cortex-a72 -smp 4 -m 2G -nographic -no-reboot -nic none -kernel /img/spumone.elf \
             -device loader,file=/img/rtos.elf"
        );
    }

    #[test]
    fn smp_follows_the_machine_s_cores() {
        let one_core = Firmware {
            cpus: 1,
            ..hv_firmware()
        };
        let line = command_line(&args(&one_core, &QemuOptions::default()));
        assert!(line.contains(" -cpu cortex-a72 -smp 1 -m 2G "), "{line}");
    }

    #[test]
    fn raw_loads_are_forced_raw_at_their_address() {
        let firmware = Firmware {
            raw_loads: vec![(PathBuf::from("/img/Image"), 0x4820_0000)],
            ..hv_firmware()
        };
        let line = command_line(&args(&firmware, &QemuOptions::default()));
        assert!(
            line.ends_with(" -device loader,file=/img/Image,addr=0x48200000,force-raw=on"),
            "{line}"
        );
    }

    #[test]
    fn icount_and_gdb_flags() {
        let options = QemuOptions {
            icount: true,
            gdb: true,
            ..QemuOptions::default()
        };
        let line = command_line(&args(&hv_firmware(), &options));
        assert!(
            line.contains(" -icount shift=0,align=off,sleep=off "),
            "{line}"
        );
        assert!(line.contains(" -s -S "), "{line}");
    }

    #[test]
    fn a_plugin_is_loaded_with_its_arguments_and_its_log_shown() {
        let options = QemuOptions {
            icount: true,
            plugin: Some(crate::pathlen::QemuPlugin {
                library: PathBuf::from("/lib/libspumone_pathlen.so"),
                args: vec!["out=r.json".into()],
            }),
            ..QemuOptions::default()
        };
        let line = command_line(&args(&hv_firmware(), &options));
        assert!(
            line.contains(
                " -icount shift=0,align=off,sleep=off \
                 -plugin file=/lib/libspumone_pathlen.so,out=r.json -d plugin "
            ),
            "{line}"
        );
    }

    #[test]
    fn disk_is_a_snapshot_on_pci_slot_2_unless_writable() {
        let mut options = QemuOptions {
            disk: Some(Disk {
                path: PathBuf::from("/img/root.ext4"),
                writable: false,
            }),
            ..QemuOptions::default()
        };
        let line = command_line(&args(&hv_firmware(), &options));
        assert!(
            line.contains(
                " -drive file=/img/root.ext4,if=none,id=d0,format=raw,snapshot=on \
                 -device virtio-blk-pci,drive=d0,bus=pcie.0,addr=0x2,iommu_platform=on,disable-legacy=on \
                 -nic none -kernel "
            ),
            "{line}"
        );
        options.disk.as_mut().unwrap().writable = true;
        let line = command_line(&args(&hv_firmware(), &options));
        assert!(
            line.contains(" -drive file=/img/root.ext4,if=none,id=d0,format=raw -device "),
            "{line}"
        );
    }

    #[test]
    fn pci_disks_sit_in_their_slots_as_snapshots() {
        let options = QemuOptions {
            pci_disks: vec![PciDisk {
                path: PathBuf::from("/img/scratch.img"),
                slot: 5,
            }],
            ..QemuOptions::default()
        };
        let line = command_line(&args(&hv_firmware(), &options));
        assert!(
            line.contains(
                " -drive file=/img/scratch.img,if=none,id=pd5,format=raw,snapshot=on \
                 -device virtio-blk-pci,drive=pd5,bus=pcie.0,addr=0x5,iommu_platform=on,\
                 disable-legacy=on -kernel "
            ),
            "{line}"
        );
    }

    #[test]
    fn native_command_line_has_no_virtualization() {
        let firmware = Firmware {
            scenario: find("rtos-native").unwrap(),
            cpus: 1,
            kernel: PathBuf::from("/img/rtos.elf"),
            loads: vec![],
            consoles: vec!["rtos".into()],
            hv_elf: None,
            plain_log: false,
            initrd: None,
            append: None,
            raw_loads: vec![],
            boot_info: None,
        };
        let line = command_line(&args(&firmware, &QemuOptions::default()));
        assert_eq!(
            line,
            "qemu-system-aarch64 -M virt,gic-version=3,highmem=off -cpu cortex-a72 -smp 1 -m 2G \
             -nographic -no-reboot -nic none -kernel /img/rtos.elf"
        );
    }

    #[test]
    fn native_linux_gets_three_cores_initrd_and_append() {
        let firmware = Firmware {
            scenario: find("linux-native").unwrap(),
            cpus: 3,
            kernel: PathBuf::from("/img/Image"),
            loads: vec![],
            consoles: vec!["linux".into()],
            hv_elf: None,
            plain_log: false,
            initrd: Some(PathBuf::from("/img/initramfs.cpio.gz")),
            append: Some("console=ttyAMA0 panic=-1".into()),
            raw_loads: vec![],
            boot_info: None,
        };
        let a = args(&firmware, &QemuOptions::default());
        assert_eq!(
            command_line(&a),
            "qemu-system-aarch64 -M virt,gic-version=3,highmem=off -cpu cortex-a72 -smp 3 -m 2G \
             -nographic -no-reboot -netdev user,id=net0 \
             -device virtio-net-pci,netdev=net0,bus=pcie.0,addr=0x3,iommu_platform=on,disable-legacy=on \
             -kernel /img/Image \
             -initrd /img/initramfs.cpio.gz -append console=ttyAMA0 panic=-1"
        );
        assert_eq!(
            a.last().unwrap(),
            "console=ttyAMA0 panic=-1",
            "one argument"
        );
    }
}
