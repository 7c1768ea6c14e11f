//! The interrupt handler table. The kernel only records what the arch must
//! program into the interrupt controller; it never touches hardware.

use super::error::ErrorCode;
use super::system::Kernel;
use super::types::{MAX_INTID, TMAX_INTPRI, TMIN_INTPRI};

/// One interrupt line: what the arch programs and whom it calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterruptLine {
    /// GIC interrupt id (SGI 0-15, PPI 16-31, SPI 32-1019).
    pub intid: u32,
    /// Kernel priority, `TMIN_INTPRI..=TMAX_INTPRI`, 1 most urgent.
    pub priority: u8,
    /// Opaque to the kernel: which function the arch calls.
    pub handler: usize,
    pub enabled: bool,
}

impl InterruptLine {
    /// The GIC priority byte: lower is more urgent, the top nibble is used
    /// so it survives controllers that implement only 4 priority bits, and
    /// 0 stays free for anything above the kernel.
    pub const fn gic_priority(&self) -> u8 {
        self.priority << 4
    }
}

impl Kernel {
    fn check_intid(intid: u32) -> Result<(), ErrorCode> {
        if intid > MAX_INTID {
            Err(ErrorCode::Parameter)
        } else {
            Ok(())
        }
    }

    fn interrupt_slot(&self, intid: u32) -> Option<usize> {
        self.interrupts.iter().position(|line| line.intid == intid)
    }

    /// `def_inh` + `cfg_int`: installs (or replaces) the handler and
    /// priority of an interrupt; a new line starts disabled. Returns the
    /// line for the arch to program. Task context only. `E_PAR` for a bad
    /// id or priority, `E_NOID` when the table is full.
    pub fn define_interrupt(
        &mut self,
        intid: u32,
        priority: u8,
        handler: usize,
    ) -> Result<InterruptLine, ErrorCode> {
        self.require_task_context()?;
        Self::check_intid(intid)?;
        if !(TMIN_INTPRI..=TMAX_INTPRI).contains(&priority) {
            return Err(ErrorCode::Parameter);
        }
        match self.interrupt_slot(intid) {
            Some(slot) => {
                let line = &mut self.interrupts[slot];
                line.priority = priority;
                line.handler = handler;
                Ok(*line)
            }
            None => {
                let line = InterruptLine {
                    intid,
                    priority,
                    handler,
                    enabled: false,
                };
                self.interrupts.push(line).map_err(|_| ErrorCode::NoId)?;
                Ok(line)
            }
        }
    }

    fn set_interrupt_enabled(
        &mut self,
        intid: u32,
        enabled: bool,
    ) -> Result<InterruptLine, ErrorCode> {
        Self::check_intid(intid)?;
        let slot = self.interrupt_slot(intid).ok_or(ErrorCode::ObjectState)?;
        self.interrupts[slot].enabled = enabled;
        Ok(self.interrupts[slot])
    }

    /// `ena_int`: marks a defined interrupt enabled and returns what the
    /// arch must program. Task or interrupt context. `E_OBJ` if undefined.
    pub fn enable_interrupt(&mut self, intid: u32) -> Result<InterruptLine, ErrorCode> {
        self.set_interrupt_enabled(intid, true)
    }

    /// `dis_int`: marks a defined interrupt disabled. Task or interrupt
    /// context. `E_OBJ` if undefined.
    pub fn disable_interrupt(&mut self, intid: u32) -> Result<InterruptLine, ErrorCode> {
        self.set_interrupt_enabled(intid, false)
    }

    /// The line for an acknowledged interrupt: whom the arch calls.
    pub fn interrupt_line(&self, intid: u32) -> Option<InterruptLine> {
        self.interrupt_slot(intid).map(|slot| self.interrupts[slot])
    }

    /// Every defined line, e.g. to program the controller at boot.
    pub fn interrupt_lines(&self) -> &[InterruptLine] {
        &self.interrupts
    }
}
