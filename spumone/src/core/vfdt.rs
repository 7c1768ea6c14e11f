//! The device tree a Linux partition boots with: only its own RAM, vCPUs and devices.
//!
//! The blob is written by a small FDT writer of our own: `vm-fdt` needs `alloc` (it builds
//! into `Vec`s and a `BTreeMap`) and spumone has no heap. Layout: header, an empty memory
//! reservation block, the structure block, then the strings block.

use core::fmt::{self, Write as _};

use board::rt::{LinuxBoot, MemRange, Partition, Space};

use super::vgic::{GICD_SIZE, GICR_FRAME_SIZE};

/// The architected timer PPIs (secure phys, non-secure phys, virtual, hyp), as QEMU `virt`.
pub const TIMER_PPIS: [u32; 4] = [13, 14, 11, 10];

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_END: u32 = 9;
const HEADER_SIZE: usize = 40;
// One all-zero entry terminates the (empty) reservation map.
const RSVMAP_SIZE: usize = 16;
const STRINGS_MAX: usize = 512;

// Interrupt specifier cells (GIC binding).
const GIC_SPI: u32 = 0;
const GIC_PPI: u32 = 1;
const IRQ_EDGE_RISING: u32 = 1;
const IRQ_LEVEL_HIGH: u32 = 4;
const GIC_PHANDLE: u32 = 1;

/// What the DTB is built from besides the partition's static tables.
#[derive(Debug, Clone, Copy)]
pub struct LinuxDt<'a> {
    pub partition: &'a Partition,
    pub boot: &'a LinuxBoot,
    /// Guest-visible distributor base (`GICD_SIZE` long).
    pub gicd: u64,
    /// Guest-visible base of vCPU 0's redistributor; vCPU n's follows at n × `GICR_FRAME_SIZE`.
    pub gicr: u64,
    pub timer_ppis: [u32; 4],
    /// SPI number (INTID - 32) of the emulated console UART.
    pub console_spi: u32,
    /// Where the initrd actually lies (`None`: no initrd).
    pub initrd: Option<MemRange>,
    pub kaslr_seed: u64,
    /// `/chosen/rng-seed` (the kernel credits it to its entropy pool and wipes it).
    pub rng_seed: [u8; 32],
    /// Appended to the config's bootargs after a space (empty: nothing).
    pub extra_bootargs: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The buffer cannot hold the tree.
    BufferTooSmall,
    /// More distinct property names than the strings block holds (a bug here).
    StringsFull,
    /// A device has no SPI (INTID 32 and up) to describe.
    DeviceWithoutSpi { base: u64 },
}

/// Writes the tree of `dt` into `buf` and returns its length.
pub fn build(dt: &LinuxDt<'_>, buf: &mut [u8]) -> Result<usize, Error> {
    let mut w = Writer::new(buf)?;
    let p = dt.partition;
    let b = dt.boot;

    w.begin_node(format_args!(""))?;
    w.prop_u32("#address-cells", 2)?;
    w.prop_u32("#size-cells", 2)?;
    w.prop_str("compatible", "linux,dummy-virt")?;
    w.prop_str("model", "linux,dummy-virt")?;
    w.prop_u32("interrupt-parent", GIC_PHANDLE)?;

    w.begin_node(format_args!("chosen"))?;
    w.prop_with("bootargs", |w| {
        w.bytes(b.bootargs.as_bytes())?;
        if !dt.extra_bootargs.is_empty() {
            w.bytes(b" ")?;
            w.bytes(dt.extra_bootargs.as_bytes())?;
        }
        w.bytes(&[0])
    })?;
    let mut path = PathBuf::default();
    let _ = write!(path, "/pl011@{:x}", b.console);
    w.prop_str("stdout-path", path.as_str())?;
    if let Some(initrd) = dt.initrd {
        w.prop_u64("linux,initrd-start", initrd.base)?;
        w.prop_u64("linux,initrd-end", initrd.end())?;
    }
    w.prop_u64("kaslr-seed", dt.kaslr_seed)?;
    w.prop_with("rng-seed", |w| w.bytes(&dt.rng_seed))?;
    w.end_node()?;

    if let Some(first) = p.ram.first() {
        w.begin_node(format_args!("memory@{:x}", first.base))?;
        w.prop_str("device_type", "memory")?;
        w.prop_with("reg", |w| {
            p.ram.iter().try_for_each(|r| w.pair(r.base, r.size))
        })?;
        w.end_node()?;
    }

    w.begin_node(format_args!("cpus"))?;
    w.prop_u32("#address-cells", 1)?;
    w.prop_u32("#size-cells", 0)?;
    for n in 0..p.vcpus.len() {
        w.begin_node(format_args!("cpu@{n:x}"))?;
        w.prop_str("device_type", "cpu")?;
        w.prop_str("compatible", "arm,cortex-a72")?;
        // vCPU n's virtual MPIDR has Aff0 = n.
        w.prop_u32("reg", n as u32)?;
        w.prop_str("enable-method", "psci")?;
        w.end_node()?;
    }
    w.end_node()?;

    w.begin_node(format_args!("psci"))?;
    w.prop_strs("compatible", &["arm,psci-1.0", "arm,psci-0.2", "arm,psci"])?;
    w.prop_str("method", "smc")?;
    w.end_node()?;

    w.begin_node(format_args!("intc@{:x}", dt.gicd))?;
    w.prop_str("compatible", "arm,gic-v3")?;
    w.prop_u32("#interrupt-cells", 3)?;
    w.prop_empty("interrupt-controller")?;
    // No unit address in an `interrupt-map` entry that names it (the PCI host's).
    w.prop_u32("#address-cells", 0)?;
    w.prop_u32("#redistributor-regions", 1)?;
    let gicr_size = p.vcpus.len() as u64 * GICR_FRAME_SIZE;
    w.prop_with("reg", |w| {
        w.pair(dt.gicd, GICD_SIZE)?;
        w.pair(dt.gicr, gicr_size)
    })?;
    w.prop_u32("phandle", GIC_PHANDLE)?;
    w.end_node()?;

    w.begin_node(format_args!("timer"))?;
    w.prop_strs("compatible", &["arm,armv8-timer", "arm,armv7-timer"])?;
    w.prop_with("interrupts", |w| {
        dt.timer_ppis
            .iter()
            .try_for_each(|&ppi| w.cells(&[GIC_PPI, ppi, IRQ_LEVEL_HIGH]))
    })?;
    w.prop_empty("always-on")?;
    w.end_node()?;

    w.begin_node(format_args!("pl011@{:x}", b.console))?;
    w.prop_str("compatible", "arm,sbsa-uart")?;
    w.prop_with("reg", |w| w.pair(b.console, board::rt::LINUX_CONSOLE_SIZE))?;
    w.prop_cells("interrupts", &[GIC_SPI, dt.console_spi, IRQ_LEVEL_HIGH])?;
    w.prop_u32("current-speed", 115_200)?;
    w.end_node()?;

    for (d, kind) in p.devices.iter().zip(b.device_kinds) {
        if *kind != "virtio,mmio" {
            continue;
        }
        let spi = match d.irqs.first() {
            Some(&intid) if intid >= 32 => intid - 32,
            _ => return Err(Error::DeviceWithoutSpi { base: d.base }),
        };
        w.begin_node(format_args!("virtio_mmio@{:x}", d.base))?;
        w.prop_str("compatible", "virtio,mmio")?;
        w.prop_with("reg", |w| w.pair(d.base, d.size))?;
        w.prop_cells("interrupts", &[GIC_SPI, spi, IRQ_EDGE_RISING])?;
        w.prop_empty("dma-coherent")?;
        w.end_node()?;
    }
    for (d, kind) in p.devices.iter().zip(b.device_kinds) {
        if *kind == PCI_HOST_KIND {
            pci_host(&mut w, d)?;
        }
    }

    w.end_node()?;
    w.finish()
}

/// The board `kind` of a generic ECAM PCIe host bridge.
pub const PCI_HOST_KIND: &str = "pci-host-ecam-generic";

/// One bus takes 1 MiB of ECAM (32 devices × 8 functions × 4 KiB).
const ECAM_BUS_SIZE: u64 = 0x10_0000;
// PCI address cells (`phys.hi`): the space code in bits 24-25.
const PCI_SPACE_IO: u32 = 0x0100_0000;
const PCI_SPACE_MEM32: u32 = 0x0200_0000;
/// `interrupt-map-mask`: the device number (bits 11-15 of `phys.hi`, of which the swizzle
/// needs the low two) and the pin.
const PCI_IRQ_MASK: [u32; 4] = [0x1800, 0, 0, 7];

/// A generic ECAM host bridge: its ECAM, windows and legacy INTx lines. No `msi-map`: without
/// an ITS the functions use INTx. No `iommu-map`: the SMMU is spumone's, and Linux's DMA
/// addresses are physical addresses.
fn pci_host(w: &mut Writer<'_>, d: &board::rt::Device) -> Result<(), Error> {
    let spis = match d.irqs {
        [a, b, c, e] if [a, b, c, e].iter().all(|&i| *i >= 32) => [a - 32, b - 32, c - 32, e - 32],
        _ => return Err(Error::DeviceWithoutSpi { base: d.base }),
    };
    w.begin_node(format_args!("pcie@{:x}", d.base))?;
    w.prop_str("compatible", PCI_HOST_KIND)?;
    w.prop_str("device_type", "pci")?;
    w.prop_with("reg", |w| w.pair(d.base, d.size))?;
    w.prop_u32("#address-cells", 3)?;
    w.prop_u32("#size-cells", 2)?;
    w.prop_u32("#interrupt-cells", 1)?;
    let last_bus = (d.size / ECAM_BUS_SIZE).clamp(1, 256) as u32 - 1;
    w.prop_cells("bus-range", &[0, last_bus])?;
    w.prop_u32("linux,pci-domain", 0)?;
    w.prop_empty("dma-coherent")?;
    w.prop_with("ranges", |w| {
        d.windows.iter().try_for_each(|win| {
            let (space, bus_addr) = match win.space {
                Space::Io => (PCI_SPACE_IO, 0),
                Space::Mem32 => (PCI_SPACE_MEM32, win.base),
            };
            w.cells(&[space])?;
            w.pair(bus_addr, win.base)?;
            w.cells(&[(win.size >> 32) as u32, win.size as u32])
        })
    })?;
    w.prop_cells("interrupt-map-mask", &PCI_IRQ_MASK)?;
    // Device `slot`'s pin INTx (1-4) is wired to line (slot + pin - 1) mod 4 of the bridge.
    w.prop_with("interrupt-map", |w| {
        (0..4u32).try_for_each(|slot| {
            (0..4u32).try_for_each(|pin| {
                let spi = spis[((slot + pin) % 4) as usize];
                w.cells(&[slot << 11, 0, 0, pin + 1, GIC_PHANDLE])?;
                w.cells(&[GIC_SPI, spi, IRQ_LEVEL_HIGH])
            })
        })
    })?;
    w.end_node()
}

/// Room for `/pl011@<hex>`.
#[derive(Default)]
struct PathBuf {
    bytes: [u8; 32],
    len: usize,
}

impl PathBuf {
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for PathBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.bytes
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Appends the structure block after header and reservation map; names go to `strings`
/// and are copied behind it at the end.
struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
    strings: heapless::Vec<u8, STRINGS_MAX>,
}

impl<'b> Writer<'b> {
    fn new(buf: &'b mut [u8]) -> Result<Self, Error> {
        let start = HEADER_SIZE + RSVMAP_SIZE;
        let head = buf.get_mut(..start).ok_or(Error::BufferTooSmall)?;
        head.fill(0);
        Ok(Self {
            buf,
            pos: start,
            strings: heapless::Vec::new(),
        })
    }

    fn bytes(&mut self, data: &[u8]) -> Result<(), Error> {
        let end = self.pos + data.len();
        self.buf
            .get_mut(self.pos..end)
            .ok_or(Error::BufferTooSmall)?
            .copy_from_slice(data);
        self.pos = end;
        Ok(())
    }

    fn u32(&mut self, v: u32) -> Result<(), Error> {
        self.bytes(&v.to_be_bytes())
    }

    fn align(&mut self) -> Result<(), Error> {
        while !self.pos.is_multiple_of(4) {
            self.bytes(&[0])?;
        }
        Ok(())
    }

    fn begin_node(&mut self, name: fmt::Arguments<'_>) -> Result<(), Error> {
        self.u32(FDT_BEGIN_NODE)?;
        // Formats straight into the buffer.
        self.write_fmt(name).map_err(|_| Error::BufferTooSmall)?;
        self.bytes(&[0])?;
        self.align()
    }

    fn end_node(&mut self) -> Result<(), Error> {
        self.u32(FDT_END_NODE)
    }

    fn name_offset(&mut self, name: &str) -> Result<u32, Error> {
        let mut at = 0;
        for s in self.strings.split(|&b| b == 0) {
            if s == name.as_bytes() {
                return Ok(at as u32);
            }
            at += s.len() + 1;
        }
        let off = self.strings.len();
        self.strings
            .extend_from_slice(name.as_bytes())
            .map_err(|_| Error::StringsFull)?;
        self.strings.push(0).map_err(|_| Error::StringsFull)?;
        Ok(off as u32)
    }

    /// A property whose value `value` appends; its length is patched in afterwards.
    fn prop_with(
        &mut self,
        name: &str,
        value: impl FnOnce(&mut Self) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let off = self.name_offset(name)?;
        self.u32(FDT_PROP)?;
        let len_at = self.pos;
        self.u32(0)?;
        self.u32(off)?;
        let start = self.pos;
        value(self)?;
        let len = (self.pos - start) as u32;
        self.buf[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
        self.align()
    }

    fn cells(&mut self, cells: &[u32]) -> Result<(), Error> {
        cells.iter().try_for_each(|&c| self.u32(c))
    }

    /// An address/size pair with two cells each.
    fn pair(&mut self, addr: u64, size: u64) -> Result<(), Error> {
        self.bytes(&addr.to_be_bytes())?;
        self.bytes(&size.to_be_bytes())
    }

    fn prop_empty(&mut self, name: &str) -> Result<(), Error> {
        self.prop_with(name, |_| Ok(()))
    }

    fn prop_u32(&mut self, name: &str, v: u32) -> Result<(), Error> {
        self.prop_with(name, |w| w.u32(v))
    }

    fn prop_u64(&mut self, name: &str, v: u64) -> Result<(), Error> {
        self.prop_with(name, |w| w.bytes(&v.to_be_bytes()))
    }

    fn prop_cells(&mut self, name: &str, cells: &[u32]) -> Result<(), Error> {
        self.prop_with(name, |w| w.cells(cells))
    }

    fn prop_str(&mut self, name: &str, v: &str) -> Result<(), Error> {
        self.prop_strs(name, &[v])
    }

    fn prop_strs(&mut self, name: &str, vs: &[&str]) -> Result<(), Error> {
        self.prop_with(name, |w| {
            vs.iter().try_for_each(|s| {
                w.bytes(s.as_bytes())?;
                w.bytes(&[0])
            })
        })
    }

    fn finish(mut self) -> Result<usize, Error> {
        self.u32(FDT_END)?;
        let struct_start = HEADER_SIZE + RSVMAP_SIZE;
        let struct_size = self.pos - struct_start;
        let strings_start = self.pos;
        let strings = self.strings.clone();
        self.bytes(&strings)?;
        let total = self.pos;
        let header = [
            FDT_MAGIC,
            total as u32,
            struct_start as u32,
            strings_start as u32,
            HEADER_SIZE as u32,
            17, // version
            16, // last compatible version
            0,  // boot CPU
            strings.len() as u32,
            struct_size as u32,
        ];
        for (i, v) in header.iter().enumerate() {
            self.buf[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
        }
        Ok(total)
    }
}

impl fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.bytes(s.as_bytes()).map_err(|_| fmt::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use board::rt::{Device, Vcpu};
    use fdt::Fdt;

    static RAM: [MemRange; 2] = [
        MemRange::new(0x4800_0000, 0x4000_0000),
        MemRange::new(0x9000_0000, 0x1000_0000),
    ];
    static DEVICES: [Device; 3] = [
        Device {
            name: "virtio0",
            base: 0x0a00_0000,
            size: 0x200,
            irqs: &[48],
            windows: &[],
        },
        Device {
            name: "gpio",
            base: 0x0903_0000,
            size: 0x1000,
            irqs: &[39],
            windows: &[],
        },
        Device {
            name: "virtio3",
            base: 0x0a00_0600,
            size: 0x200,
            irqs: &[51],
            windows: &[],
        },
    ];
    static PARTITION: Partition = Partition {
        name: "linux",
        index: 1,
        image: "linux",
        ram: &RAM,
        devices: &DEVICES,
        entry: 0x4820_0000,
        boot_arg: 0,
        vcpus: &[Vcpu { core: 1 }, Vcpu { core: 2 }, Vcpu { core: 3 }],
        console_channel: 0x11,
        preload_ns: 0,
    };
    static BOOT: LinuxBoot = LinuxBoot {
        partition: 1,
        kernel: MemRange::new(0x4820_0000, 0x0400_0000),
        initrd: MemRange::new(0x5000_0000, 0x0800_0000),
        dtb: MemRange::new(0x4fe0_0000, 0x1_0000),
        reset_copy: None,
        bootargs: "console=ttyAMA0 earlycon",
        console: 0x0900_0000,
        device_kinds: &["virtio,mmio", "arm,pl061", "virtio,mmio"],
        dsm: None,
        policy: board::rt::MigrationPolicy::Pinned,
        on_panic: board::rt::OnPanic::Stop,
        watchdog_s: board::rt::WATCHDOG_S_DEFAULT,
    };

    fn params<'a>(partition: &'a Partition, boot: &'a LinuxBoot) -> LinuxDt<'a> {
        LinuxDt {
            partition,
            boot,
            gicd: 0x0800_0000,
            gicr: 0x080c_0000,
            timer_ppis: TIMER_PPIS,
            console_spi: 1,
            initrd: Some(MemRange::new(0x5000_0000, 0x0123_4000)),
            kaslr_seed: 0x0123_4567_89ab_cdef,
            rng_seed: [0x5a; 32],
            extra_bootargs: "",
        }
    }

    fn be32s(bytes: &[u8]) -> std::vec::Vec<u32> {
        bytes
            .chunks(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn be64(bytes: &[u8]) -> u64 {
        u64::from_be_bytes(bytes.try_into().unwrap())
    }

    fn strs(bytes: &[u8]) -> std::vec::Vec<&str> {
        bytes
            .strip_suffix(&[0])
            .unwrap()
            .split(|&b| b == 0)
            .map(|s| core::str::from_utf8(s).unwrap())
            .collect()
    }

    fn prop<'a>(fdt: &'a Fdt<'a>, node: &str, name: &str) -> &'a [u8] {
        let n = fdt
            .find_node(node)
            .unwrap_or_else(|| panic!("no node {node}"));
        n.property(name)
            .unwrap_or_else(|| panic!("no {name} in {node}"))
            .value
    }

    /// Parses the blob back and checks every node and property the guest relies on.
    fn check(dt: &LinuxDt<'_>, blob: &[u8]) {
        let fdt = Fdt::new(blob).unwrap();
        let p = dt.partition;
        let b = dt.boot;
        assert_eq!(be32s(prop(&fdt, "/", "#address-cells")), [2]);
        assert_eq!(be32s(prop(&fdt, "/", "#size-cells")), [2]);
        assert_eq!(strs(prop(&fdt, "/", "compatible")), ["linux,dummy-virt"]);
        let gic = format!("/intc@{:x}", dt.gicd);
        let phandle = be32s(prop(&fdt, &gic, "phandle"));
        assert_eq!(be32s(prop(&fdt, "/", "interrupt-parent")), phandle);

        // CPUs: one per vCPU, reg = Aff0 = n.
        let cpus: std::vec::Vec<_> = fdt.cpus().collect();
        assert_eq!(cpus.len(), p.vcpus.len());
        for n in 0..p.vcpus.len() {
            let node = format!("/cpus/cpu@{n:x}");
            assert_eq!(be32s(prop(&fdt, &node, "reg")), [n as u32]);
            assert_eq!(strs(prop(&fdt, &node, "enable-method")), ["psci"]);
            assert_eq!(strs(prop(&fdt, &node, "compatible")), ["arm,cortex-a72"]);
            assert_eq!(strs(prop(&fdt, &node, "device_type")), ["cpu"]);
        }
        assert!(fdt
            .find_node(&format!("/cpus/cpu@{:x}", p.vcpus.len()))
            .is_none());

        assert_eq!(
            strs(prop(&fdt, "/psci", "compatible")),
            ["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]
        );
        assert_eq!(strs(prop(&fdt, "/psci", "method")), ["smc"]);

        let regions: std::vec::Vec<_> = fdt
            .memory()
            .regions()
            .map(|r| (r.starting_address as u64, r.size.unwrap() as u64))
            .collect();
        let want: std::vec::Vec<_> = p.ram.iter().map(|r| (r.base, r.size)).collect();
        assert_eq!(regions, want);
        let mem = format!("/memory@{:x}", p.ram[0].base);
        assert_eq!(strs(prop(&fdt, &mem, "device_type")), ["memory"]);

        assert_eq!(strs(prop(&fdt, &gic, "compatible")), ["arm,gic-v3"]);
        assert_eq!(be32s(prop(&fdt, &gic, "#interrupt-cells")), [3]);
        assert!(prop(&fdt, &gic, "interrupt-controller").is_empty());
        assert_eq!(be32s(prop(&fdt, &gic, "#redistributor-regions")), [1]);
        let gicr_size = p.vcpus.len() as u64 * GICR_FRAME_SIZE;
        let reg = be32s(prop(&fdt, &gic, "reg"));
        let r64 = |i: usize| (u64::from(reg[i]) << 32) | u64::from(reg[i + 1]);
        assert_eq!(
            [r64(0), r64(2), r64(4), r64(6)],
            [dt.gicd, GICD_SIZE, dt.gicr, gicr_size]
        );
        assert!(fdt.find_node(&format!("{gic}/its@8080000")).is_none());

        assert_eq!(
            strs(prop(&fdt, "/timer", "compatible"))[0],
            "arm,armv8-timer"
        );
        assert_eq!(
            be32s(prop(&fdt, "/timer", "interrupts")),
            [1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4]
        );

        let uart = format!("/pl011@{:x}", b.console);
        assert_eq!(strs(prop(&fdt, &uart, "compatible")), ["arm,sbsa-uart"]);
        assert_eq!(
            be32s(prop(&fdt, &uart, "reg")),
            [0, b.console as u32, 0, 0x1000]
        );
        assert_eq!(be32s(prop(&fdt, &uart, "interrupts")), [0, 1, 4]);
        assert_eq!(be32s(prop(&fdt, &uart, "current-speed")), [115_200]);

        let chosen = fdt.chosen();
        assert_eq!(chosen.bootargs(), Some(b.bootargs));
        assert_eq!(strs(prop(&fdt, "/chosen", "stdout-path")), [uart.as_str()]);
        let initrd = dt.initrd.unwrap();
        assert_eq!(
            be64(prop(&fdt, "/chosen", "linux,initrd-start")),
            initrd.base
        );
        assert_eq!(
            be64(prop(&fdt, "/chosen", "linux,initrd-end")),
            initrd.end()
        );
        assert_eq!(be64(prop(&fdt, "/chosen", "kaslr-seed")), dt.kaslr_seed);
        assert_eq!(prop(&fdt, "/chosen", "rng-seed"), dt.rng_seed);

        // Exactly the virtio transports, with SPI = INTID - 32, edge triggered.
        let mut virtio = 0;
        for (d, kind) in p.devices.iter().zip(b.device_kinds) {
            let node = format!("/virtio_mmio@{:x}", d.base);
            if *kind != "virtio,mmio" {
                assert!(fdt.find_node(&node).is_none(), "{node}");
                continue;
            }
            virtio += 1;
            assert_eq!(strs(prop(&fdt, &node, "compatible")), ["virtio,mmio"]);
            assert_eq!(
                be32s(prop(&fdt, &node, "reg")),
                [0, d.base as u32, 0, d.size as u32]
            );
            assert_eq!(
                be32s(prop(&fdt, &node, "interrupts")),
                [0, d.irqs[0] - 32, 1]
            );
            assert!(prop(&fdt, &node, "dma-coherent").is_empty());
        }
        let all_virtio = fdt
            .all_nodes()
            .filter(|n| n.name.starts_with("virtio_mmio@"))
            .count();
        assert_eq!(all_virtio, virtio);

        // Every PCI host bridge with its ECAM, windows and swizzled INTx lines.
        let mut hosts = 0;
        for (d, kind) in p.devices.iter().zip(b.device_kinds) {
            if *kind != PCI_HOST_KIND {
                continue;
            }
            hosts += 1;
            let node = format!("/pcie@{:x}", d.base);
            assert_eq!(strs(prop(&fdt, &node, "compatible")), [PCI_HOST_KIND]);
            assert_eq!(strs(prop(&fdt, &node, "device_type")), ["pci"]);
            let reg = be32s(prop(&fdt, &node, "reg"));
            assert_eq!(reg, [0, d.base as u32, 0, d.size as u32]);
            assert_eq!(be32s(prop(&fdt, &node, "#address-cells")), [3]);
            assert_eq!(be32s(prop(&fdt, &node, "#size-cells")), [2]);
            assert_eq!(be32s(prop(&fdt, &node, "#interrupt-cells")), [1]);
            let buses = (d.size >> 20) as u32;
            assert_eq!(be32s(prop(&fdt, &node, "bus-range")), [0, buses - 1]);
            assert!(prop(&fdt, &node, "dma-coherent").is_empty());
            assert!(fdt.find_node(&node).unwrap().property("msi-map").is_none());
            assert!(fdt
                .find_node(&node)
                .unwrap()
                .property("iommu-map")
                .is_none());
            let ranges = be32s(prop(&fdt, &node, "ranges"));
            assert_eq!(ranges.len(), 7 * d.windows.len());
            for (entry, win) in ranges.chunks(7).zip(d.windows) {
                let (code, bus) = match win.space {
                    Space::Io => (0x0100_0000, 0),
                    Space::Mem32 => (0x0200_0000, win.base),
                };
                let cpu = win.base;
                assert_eq!(
                    entry,
                    [
                        code,
                        (bus >> 32) as u32,
                        bus as u32,
                        (cpu >> 32) as u32,
                        cpu as u32,
                        0,
                        win.size as u32
                    ]
                );
            }
            assert_eq!(
                be32s(prop(&fdt, &node, "interrupt-map-mask")),
                [0x1800, 0, 0, 7]
            );
            let map = be32s(prop(&fdt, &node, "interrupt-map"));
            assert_eq!(map.len(), 16 * 8);
            for (i, entry) in map.chunks(8).enumerate() {
                let (slot, pin) = (i as u32 / 4, i as u32 % 4 + 1);
                let intid = d.irqs[((slot + pin - 1) % 4) as usize];
                assert_eq!(
                    entry,
                    [slot << 11, 0, 0, pin, phandle[0], 0, intid - 32, 4],
                    "slot {slot} pin {pin}"
                );
            }
        }
        let all_hosts = fdt
            .all_nodes()
            .filter(|n| n.name.starts_with("pcie@"))
            .count();
        assert_eq!(all_hosts, hosts);
    }

    #[test]
    fn tree_for_test_partition() {
        let dt = params(&PARTITION, &BOOT);
        let mut buf = [0u8; 4096];
        let len = build(&dt, &mut buf).unwrap();
        assert_eq!(be32s(&buf[4..8]), [len as u32]);
        check(&dt, &buf[..len]);
    }

    mod demo {
        include!("../../../board/tests/golden/demo.rs");
    }

    #[test]
    fn tree_for_shipped_demo_config() {
        // The golden file is `to_rust()` of `board/configs/demo.toml`.
        let boot = &demo::LINUX[0];
        let partition = &demo::CONFIG.partitions[usize::from(boot.partition)];
        assert_eq!(partition.name, "linux");
        let dt = params(partition, boot);
        let mut buf = [0u8; 0x1_0000];
        let len = build(&dt, &mut buf).unwrap();
        assert!(len as u64 <= boot.dtb.size);
        check(&dt, &buf[..len]);
        let fdt = Fdt::new(&buf[..len]).unwrap();
        assert_eq!(fdt.cpus().count(), 3);
        // Linux's devices are on PCI, behind the SMMU: no virtio-mmio transport is left.
        let names: std::vec::Vec<&str> = fdt.all_nodes().map(|n| n.name).collect();
        assert!(
            !names.iter().any(|n| n.starts_with("virtio_mmio@")),
            "{names:?}"
        );
        assert!(names.contains(&"pcie@3f000000"), "{names:?}");
    }

    #[test]
    fn pci_host_without_four_spis_is_an_error() {
        static BAD: [Device; 1] = [Device {
            name: "pcie",
            base: 0x3f00_0000,
            size: 0x100_0000,
            irqs: &[35, 36],
            windows: &[],
        }];
        let partition = Partition {
            devices: &BAD,
            ..PARTITION
        };
        let boot = LinuxBoot {
            device_kinds: &[PCI_HOST_KIND],
            ..BOOT
        };
        let mut buf = [0u8; 4096];
        assert_eq!(
            build(&params(&partition, &boot), &mut buf),
            Err(Error::DeviceWithoutSpi { base: 0x3f00_0000 })
        );
    }

    #[test]
    fn extra_bootargs_follow_the_configured_ones() {
        let dt = LinuxDt {
            extra_bootargs: "quiet spumone.cmd=bnByb2M=",
            ..params(&PARTITION, &BOOT)
        };
        let mut buf = [0u8; 8192];
        let len = build(&dt, &mut buf).unwrap();
        let fdt = Fdt::new(&buf[..len]).unwrap();
        assert_eq!(
            fdt.chosen().bootargs(),
            Some("console=ttyAMA0 earlycon quiet spumone.cmd=bnByb2M=")
        );
    }

    #[test]
    fn without_initrd_no_initrd_properties() {
        let dt = LinuxDt {
            initrd: None,
            ..params(&PARTITION, &BOOT)
        };
        let mut buf = [0u8; 4096];
        let len = build(&dt, &mut buf).unwrap();
        let fdt = Fdt::new(&buf[..len]).unwrap();
        let chosen = fdt.find_node("/chosen").unwrap();
        assert!(chosen.property("linux,initrd-start").is_none());
        assert!(chosen.property("linux,initrd-end").is_none());
    }

    #[test]
    fn buffer_too_small() {
        let dt = params(&PARTITION, &BOOT);
        let mut big = [0u8; 4096];
        let len = build(&dt, &mut big).unwrap();
        for short in [0, 10, HEADER_SIZE + RSVMAP_SIZE, len / 2, len - 1] {
            let mut buf = std::vec![0u8; short];
            assert_eq!(build(&dt, &mut buf), Err(Error::BufferTooSmall), "{short}");
        }
        let mut exact = std::vec![0u8; len];
        assert_eq!(build(&dt, &mut exact), Ok(len));
        assert_eq!(exact[..], big[..len]);
    }

    #[test]
    fn device_without_spi_is_an_error() {
        static BAD: [Device; 1] = [Device {
            name: "virtio0",
            base: 0x0a00_0000,
            size: 0x200,
            irqs: &[],
            windows: &[],
        }];
        let partition = Partition {
            devices: &BAD,
            ..PARTITION
        };
        let boot = LinuxBoot {
            device_kinds: &["virtio,mmio"],
            ..BOOT
        };
        let mut buf = [0u8; 4096];
        assert_eq!(
            build(&params(&partition, &boot), &mut buf),
            Err(Error::DeviceWithoutSpi { base: 0x0a00_0000 })
        );
    }
}
