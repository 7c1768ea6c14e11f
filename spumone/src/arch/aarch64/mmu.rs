//! spumone's EL2 stage-1 MMU: an identity map of RAM (normal, write-back) and the devices it
//! uses (Device-nGnRE, the SMMUs among them), built once by the boot core and shared by all
//! cores.

use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    ReadWriteable, Readable, Writeable, ID_AA64MMFR0_EL1, MAIR_EL2, SCTLR_EL2, TCR_EL2, TTBR0_EL2,
};

use crate::hvcore::el2map::{El2Map, MapError, MemKind, Table, MAIR_EL2 as MAIR_VALUE, VA_BITS};
use crate::hvcore::platform::Platform;

const POOL_TABLES: usize = 16;

static TABLES: super::cpu::Lock<[Table; POOL_TABLES]> =
    super::cpu::Lock::new([const { Table::EMPTY }; POOL_TABLES]);

static ROOT: AtomicU64 = AtomicU64::new(0);

/// Builds the tables from the platform description. Returns how many tables it used.
pub fn build(platform: &Platform) -> Result<usize, MapError> {
    let mut tables = TABLES.lock();
    let mut map = El2Map::new(&mut tables[..]);
    for bank in &platform.ram {
        map.map(bank.base, bank.size, MemKind::Normal)?;
    }
    let page = |r: board::rt::MemRange| {
        let base = r.base & !0xfff;
        (base, (r.end() - base + 0xfff) & !0xfff)
    };
    let mut devices = [
        Some(platform.gicd),
        Some(platform.gicr),
        Some(platform.uart),
        platform.virtio,
    ];
    for device in devices.iter_mut().filter_map(Option::take) {
        let (base, size) = page(device);
        map.map(base, size, MemKind::Device)?;
    }
    // spumone programs every SMMU the machine has (no guest ever maps one).
    for &smmu in &platform.smmus {
        let (base, size) = page(smmu);
        map.map(base, size, MemKind::Device)?;
    }
    ROOT.store(map.root_addr(), Ordering::Release);
    Ok(map.tables_used())
}

/// Turns this core's MMU on with the shared tables.
pub fn enable() {
    let root = ROOT.load(Ordering::Acquire);
    let pa_range = ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange).min(0b101);
    MAIR_EL2.set(MAIR_VALUE);
    TCR_EL2.write(
        TCR_EL2::T0SZ.val(u64::from(64 - VA_BITS))
            + TCR_EL2::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL2::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL2::SH0::Inner
            + TCR_EL2::TG0::KiB_4
            + TCR_EL2::PS.val(pa_range),
    );
    TTBR0_EL2.set(root);
    barrier::dsb(barrier::ISH);
    // SAFETY: drops stale EL2 translations before the new tables go live.
    unsafe { core::arch::asm!("tlbi alle2", options(nostack)) };
    barrier::dsb(barrier::ISH);
    barrier::isb(barrier::SY);
    SCTLR_EL2.modify(
        SCTLR_EL2::M::Enable
            + SCTLR_EL2::C::Cacheable
            + SCTLR_EL2::I::Cacheable
            + SCTLR_EL2::WXN::Disable
            + SCTLR_EL2::A::Disable,
    );
    barrier::isb(barrier::SY);
}
