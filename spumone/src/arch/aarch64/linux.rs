//! Linux partitions: the boot-info blob, the generated DTB, the emulated console UART and
//! the entry registers.

use core::fmt::Write;
use core::sync::atomic::{AtomicU32, Ordering};

use aarch64_cpu::registers::{Readable, CNTPCT_EL0};
use board::rt::{LinuxBoot, MemRange, Partition};
use spumone_abi::bootinfo::{self, BootInfo};

use super::config::CONFIG;
pub use super::config::LINUX;
use super::gic;
use super::guest::MMIO;
use super::log;
use crate::hvcore::linux::{
    boot_seeds, check_image, image_len, pristine_layout, ImageError, HEADER_SIZE,
};
use crate::hvcore::mmio::MmioAccess;
use crate::hvcore::operator::{Command, Escapes};
use crate::hvcore::vfdt::{self, LinuxDt};
use crate::hvcore::vuart::{self, Vuart};
use crate::hvcore::MAX_PARTITIONS;

/// Whether partition `index` runs an RTOS (anything the config does not boot as Linux).
pub fn is_rtos(index: u8) -> bool {
    LinuxBoot::kind(LINUX, index) == board::rt::Kind::Rtos
}

/// Size of the emulated UART's frame.
const UART_SIZE: u64 = 0x1000;
/// Bytes of console output gathered before they go out as one frame.
const LINE: usize = 128;

struct Console {
    uart: Vuart,
    line: heapless::Vec<u8, LINE>,
}

static CONSOLES: [super::cpu::Lock<Console>; MAX_PARTITIONS] = [const {
    super::cpu::Lock::new(Console {
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

/// The guest image range the host tools asked spumone to digest (the RTOS's), if any.
pub fn measured_range() -> Option<(u64, u64)> {
    boot_info().and_then(|info| info.measured)
}

/// Whether the host tools asked to leave the DSM off for this run (`--no-dsm`).
pub fn dsm_off_for_run() -> bool {
    boot_info().is_some_and(|info| info.flags & bootinfo::FLAG_NO_DSM != 0)
}

/// The migration policy the host tools chose for this run (`--policy`), if any.
pub fn policy_for_run() -> Option<&'static str> {
    boot_info().and_then(|info| info.policy())
}

/// Whether the host tools asked the DSM to pause Linux on a finding this run (`--dsm-pause`).
pub fn dsm_pause_for_run() -> bool {
    boot_info().is_some_and(|info| info.flags & bootinfo::FLAG_DSM_PAUSE != 0)
}

/// Operator commands found in the console input so far (an escape may end one read).
static ESCAPES: super::cpu::Lock<Escapes> = super::cpu::Lock::new(Escapes::new());

/// Where a partition's pristine `Image` and initrd copies are, for restarts.
#[derive(Clone, Copy)]
struct Pristine {
    kernel: MemRange,
    initrd: MemRange,
}

static PRISTINE: [super::cpu::Lock<Option<Pristine>>; MAX_PARTITIONS] =
    [const { super::cpu::Lock::new(None) }; MAX_PARTITIONS];
/// Restarts of each partition so far.
static RESETS: [AtomicU32; MAX_PARTITIONS] = [const { AtomicU32::new(0) }; MAX_PARTITIONS];
/// The config's extra bootargs plus `spumone.resets=N`, for a restart's DTB.
static RESTART_BOOTARGS: super::cpu::Lock<heapless::String<{ bootinfo::MAX_BOOTARGS + 32 }>> =
    super::cpu::Lock::new(heapless::String::new());

/// Prepares Linux partition `partition`: checks its `Image`, writes its DTB, keeps pristine
/// copies for restarts, registers its console; or says why it cannot boot.
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
    write_dtb(partition, boot, 0, info.map_or("", |i| i.bootargs))?;
    let index = usize::from(partition.index);
    MMIO[index]
        .lock()
        .register(boot.console..boot.console + UART_SIZE, uart_access)
        .map_err(|_| "cannot register its console")?;
    super::vgic::add_virtual_spi(index, console_intid());
    // Input goes to the first Linux partition, taken on the core of its vCPU 0.
    if LINUX.first().map(|l| l.partition) == Some(partition.index) {
        if let Some(core) = partition.vcpus.first() {
            let mpidr = super::percore::CORES[usize::from(core.core)]
                .mpidr
                .load(Ordering::Relaxed);
            INPUT.store(index, Ordering::Relaxed);
            super::uart::enable_rx_interrupt();
            gic::configure_spi(console_intid(), true, gic::DEFAULT_PRIORITY, mpidr);
        }
    }
    Ok(())
}

/// The initrd the host tools loaded, as the boot-info blob sizes it.
fn initrd_range(boot: &LinuxBoot) -> Option<MemRange> {
    boot_info()
        .filter(|i| i.initrd_size > 0 && i.initrd_size <= boot.initrd.size)
        .map(|i| MemRange::new(boot.initrd.base, i.initrd_size))
}

/// Writes the partition's DTB for its `resets`-th start, with `extra_bootargs`.
fn write_dtb(
    partition: &'static Partition,
    boot: &'static LinuxBoot,
    resets: u32,
    extra_bootargs: &str,
) -> Result<(), &'static str> {
    let initrd = initrd_range(boot);
    let secret = boot_info().map_or(0, |i| i.kaslr_seed);
    // The counter at this boot: two restarts never draw the same seeds.
    let seeds = boot_seeds(secret, resets, CNTPCT_EL0.get());
    let dt = LinuxDt {
        partition,
        boot,
        gicd: gic::distributor_base(),
        gicr: gic::redistributor_base(),
        timer_ppis: vfdt::TIMER_PPIS,
        // An SPI: the board check gives a config with Linux one.
        console_spi: console_intid() - 32,
        initrd,
        kaslr_seed: seeds.kaslr,
        rng_seed: seeds.rng,
        extra_bootargs,
    };
    // SAFETY: the DTB range lies in the partition's RAM (validated config), identity mapped
    // at EL2, and no vCPU of the partition runs (before the first start, or during a reset).
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
    Ok(())
}

/// Copies the freshly loaded `Image` and initrd of Linux partition `partition` into its
/// `reset_copy` range, so a `SYSTEM_RESET` can restart it; without room, a reset will stop it
/// instead. Called on the core of its vCPU 0 just before the first entry, so the copy delays
/// only Linux, never another partition's start.
pub fn keep_pristine(partition: &Partition) {
    let Some(boot) = LinuxBoot::find(LINUX, partition.index) else {
        return;
    };
    let Some(room) = boot.reset_copy else {
        return;
    };
    // SAFETY: as in `prepare`: the header of the Image the loader placed, read only.
    let header = unsafe { &*(boot.kernel.base as usize as *const [u8; HEADER_SIZE]) };
    let image_len = image_len(header, boot.kernel);
    let initrd = initrd_range(boot);
    let initrd_len = initrd.map_or(0, |r| r.size);
    let Some((kernel_copy, initrd_copy)) = pristine_layout(room, image_len, initrd_len) else {
        warn!(
            "partition {}: Image ({} bytes) and initrd ({} bytes) do not fit reset_copy {:#x}+{:#x}: SYSTEM_RESET will stop it",
            partition.name, image_len, initrd_len, room.base, room.size
        );
        return;
    };
    copy(
        kernel_copy.base,
        MemRange::new(boot.kernel.base, kernel_copy.size),
    );
    copy(
        initrd_copy.base,
        MemRange::new(boot.initrd.base, initrd_copy.size),
    );
    *PRISTINE[usize::from(partition.index)].lock() = Some(Pristine {
        kernel: kernel_copy,
        initrd: initrd_copy,
    });
    info!(
        "partition {}: pristine Image and initrd kept at {:#x} for restarts",
        partition.name, room.base
    );
}

/// Copies `from.size` bytes at `from.base` to `to`, both in RAM spumone owns or a partition
/// that is not running.
fn copy(to: u64, from: MemRange) {
    if from.size == 0 {
        return;
    }
    // SAFETY: both ranges are validated RAM (a partition's, with none of its vCPUs running,
    // and spumone's `reset_copy`, which no partition maps), identity mapped at EL2, and they do
    // not overlap (the config keeps `reset_copy` apart from every partition).
    unsafe {
        core::ptr::copy_nonoverlapping(
            from.base as usize as *const u8,
            to as usize as *mut u8,
            from.size as usize,
        )
    };
}

/// How often partition `index` has been restarted.
pub fn resets(index: usize) -> u32 {
    RESETS.get(index).map_or(0, |r| r.load(Ordering::Relaxed))
}

/// Whether Linux partition `partition` can be restarted (its pristine copies exist).
pub fn can_restart(partition: &Partition) -> bool {
    PRISTINE
        .get(usize::from(partition.index))
        .is_some_and(|p| p.lock().is_some())
}

/// Puts the pristine `Image` and initrd back, resets the console and writes a new DTB (a fresh
/// KASLR seed, `spumone.resets=N` on the command line); returns vCPU 0's entry and registers.
/// The partition's vGIC must have been reset first, and none of its vCPUs may run.
pub fn restore(partition: &'static Partition) -> Result<(u64, [u64; 3]), &'static str> {
    let boot = LinuxBoot::find(LINUX, partition.index).ok_or("not a Linux partition")?;
    let index = usize::from(partition.index);
    let pristine = (*PRISTINE[index].lock()).ok_or("no pristine copy to restart from")?;
    copy(boot.kernel.base, pristine.kernel);
    copy(boot.initrd.base, pristine.initrd);
    // The guest starts with its MMU off: its first reads bypass the caches.
    super::cpu::clean_dcache_range(boot.kernel.base, pristine.kernel.size);
    super::cpu::clean_dcache_range(boot.initrd.base, pristine.initrd.size);
    {
        let mut console = CONSOLES[index].lock();
        console.uart = Vuart::new();
        console.line.clear();
    }
    super::vgic::add_virtual_spi(index, console_intid());
    let resets = RESETS[index].fetch_add(1, Ordering::Relaxed) + 1;
    let mut bootargs = RESTART_BOOTARGS.lock();
    bootargs.clear();
    let extra = boot_info().map_or("", |i| i.bootargs);
    let _ = write!(bootargs, "{extra} spumone.resets={resets}");
    write_dtb(partition, boot, resets, bootargs.trim_start())?;
    entry(partition).ok_or("not a Linux partition")
}

/// INTID of the console UART, physical and virtual (from the board description; a config
/// with Linux has one).
pub fn console_intid() -> u32 {
    CONFIG.console_intid
}

/// The partition that gets console input.
static INPUT: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(usize::MAX);

/// Commands one drain of the receive FIFO can hold: QEMU's PL011 FIFO holds 16 bytes, and
/// the shortest command takes 2.
pub const MAX_COMMANDS: usize = 8;

/// The physical UART's interrupt: its input goes to the input partition's emulated UART, less
/// the operator's commands, which are returned.
pub fn console_input() -> heapless::Vec<Command, MAX_COMMANDS> {
    let partition = INPUT.load(Ordering::Relaxed);
    let mut commands = heapless::Vec::new();
    let mut escapes = ESCAPES.lock();
    let mut take = |command: Option<Command>| {
        if let Some(command) = command {
            let _ = commands.push(command);
        }
    };
    match CONSOLES.get(partition) {
        None => super::uart::drain_rx(|b| take(escapes.feed(b, &mut |_| {}))),
        Some(console) => {
            let mut console = console.lock();
            let before = console.uart.irq_level();
            super::uart::drain_rx(|b| {
                // A full FIFO drops the byte, as the hardware would (overrun).
                let forward = &mut |b| {
                    let _ = console.uart.push_rx(b);
                };
                take(escapes.feed(b, forward));
            });
            if !before && console.uart.irq_level() {
                super::vgic::raise_virtual_spi(partition, console_intid());
            }
        }
    }
    commands
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
        super::vgic::raise_virtual_spi(partition, console_intid());
    }
    if let Some(byte) = effects.tx {
        let _ = console.line.push(byte);
        if byte == b'\n' || console.line.is_full() {
            flush(partition, &mut console.line);
        }
    } else if access.write && offset == vuart::reg::IMSC && !console.line.is_empty() {
        // Linux's PL011 driver masks its transmit interrupt once it has sent all it had: a
        // prompt (no newline) goes out then, not with the next line.
        flush(partition, &mut console.line);
    }
    Some(u64::from(effects.value))
}

fn flush(partition: usize, line: &mut heapless::Vec<u8, LINE>) {
    if let Some(p) = CONFIG.partitions.get(partition) {
        log::guest_console(partition, p.name, line);
    }
    line.clear();
}
