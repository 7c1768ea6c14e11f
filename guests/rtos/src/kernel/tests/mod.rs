//! Host tests of the kernel. Each test drives the kernel the way the arch
//! layer would: call a service, then `dispatch`, checking invariants.

mod errors;
mod random;
mod scheduler;
mod sync;
mod timing;

use super::*;

extern crate std;
use std::format;
use std::string::String;

pub(super) fn task(priority: u8) -> TaskConfig {
    TaskConfig {
        priority,
        entry: 0x1000 + usize::from(priority),
        arg: usize::from(priority) * 10,
        activate: false,
    }
}

pub(super) fn active(priority: u8) -> TaskConfig {
    TaskConfig {
        activate: true,
        ..task(priority)
    }
}

pub(super) fn tid(n: u8) -> TaskId {
    TaskId(n)
}

pub(super) fn boot(config: &Config<'_>) -> Kernel {
    let kernel = Kernel::new(config, 0).expect("valid configuration");
    kernel.check_invariants().expect("consistent after boot");
    kernel
}

/// Dispatches as the arch would and checks the state stays consistent.
pub(super) fn dispatch(kernel: &mut Kernel) -> Dispatch {
    let decision = kernel.dispatch().expect("dispatch from task level");
    kernel
        .check_invariants()
        .expect("consistent after dispatch");
    assert_eq!(kernel.running(), decision.to);
    assert!(!kernel.needs_dispatch());
    decision
}

/// Dispatches and returns only the task to run.
pub(super) fn run(kernel: &mut Kernel) -> Option<TaskId> {
    dispatch(kernel).to
}

/// A full snapshot of the state, to prove a failed call changed nothing.
pub(super) fn snapshot(kernel: &Kernel) -> String {
    format!("{kernel:?}")
}
