//! Reports for things that must never happen at EL2, and the panic handler. Both print, then
//! park the core with interrupts masked: never a silent hang.

use aarch64_cpu::registers::{Readable, ESR_EL2, FAR_EL2};

use super::exception::{TrapFrame, VectorKind};
use super::{cpu, log, percore};

/// An exception taken from EL2 itself.
pub fn unexpected_el2_exception(frame: &TrapFrame, kind: VectorKind) -> ! {
    let esr = ESR_EL2.get();
    let far = FAR_EL2.get();
    let core = cpu::core_index();
    let ec = (esr >> 26) & 0x3f;
    let running = percore::running_description(core);
    error!(
        "core {}: unexpected {} exception from {}: EC {:#x} ({}), ESR {:#x}, FAR {:#x}, ELR {:#x}, SPSR {:#x}, vcpu {}",
        core,
        kind.type_name(),
        kind.group_name(),
        ec,
        crate::hvcore::esr::ExceptionClass::from_code(ec as u8).name(),
        esr,
        far,
        frame.elr,
        frame.spsr,
        running.as_str()
    );
    // Also as plain text, for readers that cannot decode defmt.
    #[cfg(not(feature = "plain-log"))]
    log::text(format_args!(
        "core {} stopped: unexpected {} exception at EL2, EC {:#x}, ELR {:#x}, FAR {:#x}",
        core,
        kind.type_name(),
        ec,
        frame.elr,
        far
    ));
    cpu::park()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    cpu::mask_all();
    let core = cpu::core_index();
    #[cfg(not(feature = "plain-log"))]
    defmt::error!("core {}: panic: {}", core, defmt::Display2Format(info));
    log::text(format_args!("core {} panic: {}", core, info));
    cpu::park()
}
