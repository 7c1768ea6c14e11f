//! Running guest vCPUs and handling their traps.

use super::exception::{TrapFrame, VectorKind};

/// Builds what partitions share (stage-2 tables) before any core enters a guest.
pub fn prepare_partitions() {}

/// Enters the vCPU placed on `core`, if any. Returns only if there is none.
pub fn run_vcpu_on(core: usize) {
    let _ = core;
}

pub fn handle_sync(frame: &mut TrapFrame) {
    let _ = frame;
}

pub fn handle_irq(frame: &mut TrapFrame) {
    let _ = frame;
}

pub fn handle_unexpected(frame: &mut TrapFrame, kind: VectorKind) {
    let _ = (frame, kind);
}
