//! Per-core state. One slot per logical core; each field is atomic so any core (a fatal
//! report, for instance) can read it without locks.

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::hvcore::MAX_CORES;

pub struct CoreState {
    pub online: AtomicBool,
    pub mpidr: AtomicU64,
    /// Index (config order) of the partition whose vCPU runs here, or [`NONE`].
    running_partition: AtomicUsize,
    running_vcpu: AtomicUsize,
    /// Entry point of a vCPU that PSCI `CPU_ON` asked this core to start (0: none).
    start_entry: AtomicU64,
    start_context: AtomicU64,
}

const NONE: usize = usize::MAX;

pub static CORES: [CoreState; MAX_CORES] = [const {
    CoreState {
        online: AtomicBool::new(false),
        mpidr: AtomicU64::new(0),
        running_partition: AtomicUsize::new(NONE),
        running_vcpu: AtomicUsize::new(NONE),
        start_entry: AtomicU64::new(0),
        start_context: AtomicU64::new(0),
    }
}; MAX_CORES];

pub fn this_core() -> &'static CoreState {
    &CORES[super::cpu::core_index()]
}

impl CoreState {
    pub fn set_running(&self, vcpu: Option<(usize, usize)>) {
        let (p, v) = vcpu.unwrap_or((NONE, NONE));
        self.running_vcpu.store(v, Ordering::Relaxed);
        // Release: a core waiting for this one to leave a partition (a reset) fences after
        // seeing the change, and then sees everything the departed vCPU did.
        self.running_partition.store(p, Ordering::Release);
    }

    /// Asks this core to start its vCPU at `entry` with `context` in `x0`.
    pub fn request_start(&self, entry: u64, context: u64) {
        self.start_context.store(context, Ordering::Relaxed);
        self.start_entry.store(entry, Ordering::Release);
    }

    /// Takes a pending start request: `(entry, context)`.
    pub fn take_start_request(&self) -> Option<(u64, u64)> {
        match self.start_entry.swap(0, Ordering::Acquire) {
            0 => None,
            entry => Some((entry, self.start_context.load(Ordering::Relaxed))),
        }
    }

    /// Whether a start request waits (left in place).
    pub fn start_requested(&self) -> bool {
        self.start_entry.load(Ordering::Acquire) != 0
    }

    /// `(partition index, vCPU number)` running here, if any.
    pub fn running(&self) -> Option<(usize, usize)> {
        let p = self.running_partition.load(Ordering::Relaxed);
        let v = self.running_vcpu.load(Ordering::Relaxed);
        (p != NONE).then_some((p, v))
    }
}

/// "rtos vcpu 0" or "none", for reports.
pub fn running_description(core: usize) -> heapless::String<48> {
    let mut out = heapless::String::new();
    let running = CORES.get(core).and_then(CoreState::running);
    let _ = match running {
        Some((p, v)) => {
            let name = super::config::CONFIG
                .partitions
                .get(p)
                .map_or("?", |p| p.name);
            write!(out, "{} vcpu {}", name, v)
        }
        None => write!(out, "none"),
    };
    out
}
