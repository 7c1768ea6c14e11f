//! The contracts shared by spumone, its guests and the host tools.
//!
//! - [`frame`]: how several byte streams (spumone's defmt log, each guest's console) share the
//!   one physical UART.
//! - [`hvc`]: the hypercall ABI a paravirtual guest (the RTOS) uses.
//! - [`latency`]: the RTOS's latency histogram line, which the host tools plot.
//! - [`operator`]: commands the operator types on the console (pause and resume Linux).
//! - [`mgmt`]: the management channel: requests on the console input, answers on
//!   [`chan::HV_MGMT`] (`cargo xtask ctl`).
//!
//! `no_std`, no allocation: the encoder runs in the hypervisor, the decoder in xtask.
#![no_std]
#![forbid(unsafe_code)]

pub mod bootinfo;
pub mod frame;
pub mod hvc;
pub mod latency;
pub mod mgmt;
pub mod operator;

/// Channel numbers on the multiplexed UART.
pub mod chan {
    /// spumone's defmt log (raw defmt encoding, one log record per frame).
    pub const HV_LOG: u8 = 0;
    /// spumone's plain-text messages (bring-up, panics before defmt is usable).
    pub const HV_TEXT: u8 = 1;
    /// Machine-readable events for the host tools, one ASCII record per frame:
    /// `partition-stopped name=<name> code=<n>` and `shutdown code=<n>`.
    pub const HV_EVENT: u8 = 2;
    /// Answers to management requests ([`crate::mgmt`]), one line of text per frame.
    pub const HV_MGMT: u8 = 3;
    /// Guest consoles: partition `n` (in config order) writes on `GUEST_BASE + n`.
    pub const GUEST_BASE: u8 = 0x10;
    /// Highest channel number a guest console can use.
    pub const GUEST_LAST: u8 = 0x3f;

    /// The console channel of partition number `index`, if it has one.
    pub const fn guest(index: usize) -> Option<u8> {
        if index <= (GUEST_LAST - GUEST_BASE) as usize {
            Some(GUEST_BASE + index as u8)
        } else {
            None
        }
    }

    /// The partition number that owns console channel `channel`, if any.
    pub const fn guest_index(channel: u8) -> Option<usize> {
        if channel >= GUEST_BASE && channel <= GUEST_LAST {
            Some((channel - GUEST_BASE) as usize)
        } else {
            None
        }
    }
}
