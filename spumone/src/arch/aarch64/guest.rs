//! Running guest vCPUs and handling their traps.

use super::exception::{TrapFrame, VectorKind};

pub fn handle_sync(frame: &mut TrapFrame) {
    let _ = frame;
}

pub fn handle_irq(frame: &mut TrapFrame) {
    let _ = frame;
}

pub fn handle_unexpected(frame: &mut TrapFrame, kind: VectorKind) {
    let _ = (frame, kind);
}
