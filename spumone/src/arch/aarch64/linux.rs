//! Linux partitions: the boot-info blob, the generated DTB, the emulated console UART and
//! the entry registers.

use board::rt::{LinuxBoot, MemRange, Partition};
use spumone_abi::bootinfo::{self, BootInfo};

use super::config::CONFIG;
pub use super::config::LINUX;
use super::gic;
use super::guest::MMIO;
use super::log;
use crate::hvcore::linux::{check_image, ImageError, HEADER_SIZE};
use crate::hvcore::mmio::MmioAccess;
use crate::hvcore::vfdt::{self, LinuxDt};
use crate::hvcore::vuart::Vuart;
use crate::hvcore::MAX_PARTITIONS;

/// Size of the emulated UART's frame.
const UART_SIZE: u64 = 0x1000;
/// Bytes of console output gathered before they go out as one frame.
const LINE: usize = 128;

struct Console {
    uart: Vuart,
    line: heapless::Vec<u8, LINE>,
}

static CONSOLES: [spin::Mutex<Console>; MAX_PARTITIONS] = [const {
    spin::Mutex::new(Console {
        uart: Vuart::new(),
        line: heapless::Vec::new(),
    })
}; MAX_PARTITIONS];

unsafe extern "C" {
    /// End of spumone's image, BSS and stacks included (from the linker script).
    static __image_end: u8;
}

/// The host tools' boot-info blob, if they loaded one.
fn boot_info() -> Option<BootInfo<'static>> {
    let image_end = &raw const __image_end as u64;
    if image_end > bootinfo::ADDR {
        error!(
            "spumone's image ends at {:#x}, over the boot-info blob at {:#x}",
            image_end,
            bootinfo::ADDR
        );
        return None;
    }
    // SAFETY: the blob's page lies in spumone's own region, identity mapped as normal
    // memory, and nothing of spumone is placed there (the image and its stacks sit far
    // below); it is only read.
    let blob = unsafe {
        core::slice::from_raw_parts(bootinfo::ADDR as usize as *const u8, bootinfo::SIZE)
    };
    BootInfo::parse(blob)
}

/// Prepares Linux partition `partition`: checks its `Image`, writes its DTB, registers its
/// console; or says why it cannot boot.
pub fn prepare(partition: &'static Partition) -> Result<(), &'static str> {
    let Some(boot) = LinuxBoot::find(LINUX, partition.index) else {
        return Ok(());
    };
    // SAFETY: the kernel range lies in the partition's RAM, identity mapped at EL2; the
    // loader put the Image there before spumone started and only the header is read.
    let header = unsafe { &*(boot.kernel.base as usize as *const [u8; HEADER_SIZE]) };
    match check_image(header, boot.kernel) {
        Ok(_) => {}
        Err(ImageError::NoMagic) => return Err("no arm64 Image at the kernel address"),
        Err(ImageError::Misplaced { .. }) => {
            return Err("Image text_offset does not fit its 2 MiB-aligned base")
        }
        Err(ImageError::TooBig { .. }) => return Err("Image image_size exceeds kernel_size"),
    }
    let info = boot_info();
    if info.is_none() {
        warn!(
            "partition {}: no boot-info blob at {:#x}: no initrd, no KASLR seed",
            partition.name,
            bootinfo::ADDR
        );
    }
    let initrd = info
        .filter(|i| i.initrd_size > 0 && i.initrd_size <= boot.initrd.size)
        .map(|i| MemRange::new(boot.initrd.base, i.initrd_size));
    let dt = LinuxDt {
        partition,
        boot,
        gicd: gic::distributor_base(),
        gicr: gic::redistributor_base(),
        timer_ppis: vfdt::TIMER_PPIS,
        console_spi: vfdt::CONSOLE_SPI,
        initrd,
        kaslr_seed: info.map_or(0, |i| i.kaslr_seed),
        extra_bootargs: info.map_or("", |i| i.bootargs),
    };
    // SAFETY: the DTB range lies in the partition's RAM (validated config), identity mapped
    // at EL2, and no vCPU of the partition runs yet.
    let buf = unsafe {
        core::slice::from_raw_parts_mut(boot.dtb.base as usize as *mut u8, boot.dtb.size as usize)
    };
    let len = vfdt::build(&dt, buf).map_err(|_| "cannot build its device tree")?;
    // The guest starts with its MMU off: make the DTB visible to uncached reads.
    super::cpu::clean_dcache_range(boot.dtb.base, len as u64);
    info!(
        "partition {}: DTB at {:#x} ({} bytes), initrd {:#x}+{:#x}",
        partition.name,
        boot.dtb.base,
        len,
        boot.initrd.base,
        initrd.map_or(0, |r| r.size)
    );
    let index = usize::from(partition.index);
    MMIO[index]
        .lock()
        .register(boot.console..boot.console + UART_SIZE, uart_access)
        .map_err(|_| "cannot register its console")?;
    super::vgic::add_virtual_spi(index, CONSOLE_INTID);
    // Input goes to the first Linux partition, taken on the core of its vCPU 0.
    if LINUX.first().map(|l| l.partition) == Some(partition.index) {
        if let Some(core) = partition.vcpus.first() {
            let mpidr = super::percore::CORES[usize::from(core.core)]
                .mpidr
                .load(core::sync::atomic::Ordering::Relaxed);
            INPUT.store(index, core::sync::atomic::Ordering::Relaxed);
            super::uart::enable_rx_interrupt();
            gic::configure_spi(CONSOLE_INTID, true, gic::DEFAULT_PRIORITY, mpidr);
        }
    }
    Ok(())
}

/// INTID of the console UART, physical and virtual.
pub const CONSOLE_INTID: u32 = 32 + vfdt::CONSOLE_SPI;

/// The partition that gets console input.
static INPUT: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(usize::MAX);

/// The physical UART's interrupt: its input goes to the input partition's emulated UART.
pub fn console_input() {
    let partition = INPUT.load(core::sync::atomic::Ordering::Relaxed);
    let Some(console) = CONSOLES.get(partition) else {
        super::uart::drain_rx(|_| {});
        return;
    };
    let mut console = console.lock();
    let before = console.uart.irq_level();
    super::uart::drain_rx(|b| {
        // A full FIFO drops the byte, as the hardware would (overrun).
        let _ = console.uart.push_rx(b);
    });
    if !before && console.uart.irq_level() {
        super::vgic::raise_virtual_spi(partition, CONSOLE_INTID);
    }
}

/// Entry point and `x0..x2` of vCPU 0 of Linux partition `partition`, if it is one.
pub fn entry(partition: &Partition) -> Option<(u64, [u64; 3])> {
    let boot = LinuxBoot::find(LINUX, partition.index)?;
    Some((boot.kernel.base, [boot.dtb.base, 0, 0]))
}

fn uart_access(partition: usize, offset: u64, access: &MmioAccess) -> Option<u64> {
    let mut console = CONSOLES.get(partition)?.lock();
    let effects = if access.write {
        console.uart.write(offset, access.size, access.value as u32)
    } else {
        console.uart.read(offset, access.size)
    };
    if effects.irq_changed && console.uart.irq_level() {
        super::vgic::raise_virtual_spi(partition, CONSOLE_INTID);
    }
    if let Some(byte) = effects.tx {
        let _ = console.line.push(byte);
        if byte == b'\n' || console.line.is_full() {
            flush(partition, &mut console.line);
        }
    }
    Some(u64::from(effects.value))
}

fn flush(partition: usize, line: &mut heapless::Vec<u8, LINE>) {
    if let Some(p) = CONFIG.partitions.get(partition) {
        log::guest_console(partition, p.name, line);
    }
    line.clear();
}
