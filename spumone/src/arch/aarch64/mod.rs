//! aarch64 EL2 mechanism: entry, vectors, MMU, GIC, timer, PSCI and guest entry.

pub mod boot;
pub mod config;
mod copy;
pub mod cpu;
pub mod dsm;
mod dtb;
pub mod exception;
mod fatal;
pub mod gic;
pub mod guest;
pub mod integrity;
pub mod linux;
pub mod log;
pub mod mgmt;
pub mod migrate;
pub mod mmu;
pub mod percore;
pub mod psci;
pub mod sha256;
pub mod smmu;
pub mod switch;
pub mod timer;
pub mod uart;
pub mod vgic;

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use aarch64_cpu::asm::sev;

use crate::hvcore::platform::{self, LayoutProblem};
use crate::hvcore::smp::{self, KICK_SGI};
use crate::hvcore::vgic::IrqRoute;
use config::CONFIG;
pub use cpu::park;

/// Set by the boot core once everything shared (stage-2 tables, ...) is ready; secondaries
/// wait for it before they enter guests.
static RELEASED: AtomicBool = AtomicBool::new(false);
static HYP_TIMER_INTID: AtomicU32 = AtomicU32::new(timer::HYP_TIMER_INTID);
static CORES_ONLINE: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" {
    fn secondary_entry();
}

/// The boot core's first Rust code. `x0` is whatever the loader left in that register.
extern "C" fn boot_main(x0: u64) -> ! {
    let Some((fdt, dtb_addr)) = dtb::find(x0, CONFIG.board_ram, CONFIG.dtb_hint) else {
        error!(
            "no device tree: x0 {:#x} and the board's hint {:#x} hold none",
            x0, CONFIG.dtb_hint
        );
        park()
    };
    let platform = match dtb::parse(&fdt) {
        Ok(platform) => platform,
        Err(what) => {
            error!("device tree at {:#x}: {}", dtb_addr, what);
            park()
        }
    };
    uart::set_base(platform.uart.base as usize);
    info!(
        "spumone {} on board {}: DTB at {:#x}, {} CPUs, timer {} Hz",
        env!("CARGO_PKG_VERSION"),
        CONFIG.board,
        dtb_addr,
        platform.cpus.len(),
        timer::frequency_hz()
    );
    for bank in &platform.ram {
        info!("RAM {:#x}..{:#x}", bank.base, bank.end());
    }
    if platform.cpus_ignored > 0 {
        warn!(
            "{} CPUs beyond the supported maximum are left off",
            platform.cpus_ignored
        );
    }
    if !check_layout(&platform) {
        error!(
            "config {} does not fit this machine; not starting any partition",
            CONFIG.board
        );
        shutdown(1);
    }
    match mmu::build(&platform) {
        Ok(tables) => info!("EL2 identity map: {} tables", tables),
        Err(err) => {
            error!("cannot build the EL2 map: {}", map_error_name(err));
            park()
        }
    }
    mmu::enable();

    let gic = gic::init_distributor(platform.gicd.base, platform.gicr.base, platform.gicr.size);
    info!(
        "GICv{} at {:#x}, redistributors at {:#x}, {} SPIs",
        gic.arch_rev, platform.gicd.base, platform.gicr.base, gic.spis
    );
    HYP_TIMER_INTID.store(platform.hyp_timer_intid, Ordering::Relaxed);
    vgic::init(gic.spis);
    // Before the vGIC's fast paths are computed: which cores vCPUs may migrate to.
    migrate::init();
    info!(
        "virtual CPU interface: {} list registers",
        vgic::list_regs()
    );

    let me = cpu::mpidr();
    let Some(cores) = platform::logical_cores(me, &platform.cpus) else {
        error!("boot core mpidr {:#x} is not in the device tree", me);
        park()
    };
    init_this_core(0, me);
    mark_online(0);
    start_secondaries(&cores);
    // DMA bypasses an SMMU until it is enabled: before any partition is prepared.
    smmu::init(&platform, &cores);
    guest::prepare_partitions();
    dsm::init();
    integrity::baseline();
    RELEASED.store(true, Ordering::Release);
    sev();
    run_core(0)
}

fn map_error_name(err: crate::hvcore::el2map::MapError) -> &'static str {
    use crate::hvcore::el2map::MapError;
    match err {
        MapError::BadRange => "unaligned range",
        MapError::OutOfTables => "out of page tables",
        MapError::Conflict => "overlapping ranges",
        MapError::Unmapped => "range not mapped",
    }
}

/// Logs every mismatch between the config and the DTB; `false` if one is fatal.
fn check_layout(platform: &platform::Platform) -> bool {
    let mut fatal = false;
    for problem in platform::check_layout(&CONFIG, platform) {
        match problem {
            LayoutProblem::BoardRamMissing(r) => {
                fatal = true;
                error!(
                    "board {} RAM {:#x}..{:#x} is not RAM in the device tree",
                    CONFIG.board,
                    r.base,
                    r.end()
                );
            }
            LayoutProblem::DtbRamUnknown(r) => warn!(
                "device tree RAM {:#x}..{:#x} is not in board {}",
                r.base,
                r.end(),
                CONFIG.board
            ),
            LayoutProblem::PartitionRamOutside { partition, range } => {
                fatal = true;
                error!(
                    "partition {} RAM {:#x}..{:#x} is outside the machine's RAM",
                    CONFIG.partitions[partition].name,
                    range.base,
                    range.end()
                );
            }
            LayoutProblem::TooFewCpus { config, dtb } => {
                fatal = true;
                error!(
                    "config needs {} cores, the device tree lists {}",
                    config, dtb
                );
            }
        }
    }
    !fatal
}

/// Per-core setup shared by every core: GIC redistributor and CPU interface, the tick.
fn init_this_core(core: usize, mpidr: u64) {
    let state = &percore::CORES[core];
    state.mpidr.store(mpidr, Ordering::Relaxed);
    if let Err(what) = gic::init_core(mpidr) {
        error!("core {}: GIC: {}", core, what);
        park()
    }
    gic::enable_private(mpidr, HYP_TIMER_INTID.load(Ordering::Relaxed));
    gic::enable_private(mpidr, KICK_SGI);
    vgic::init_core(mpidr);
    match u8::try_from(core) {
        Ok(id) if wants_tick(id) => timer::start_tick(),
        _ => timer::stop_tick(),
    }
}

/// Whether `core` keeps its EL2 tick: a shared core, or the DSM's.
pub fn wants_tick(core: u8) -> bool {
    crate::hvcore::vcpu::needs_tick(&CONFIG, core) || dsm::runs_on(core)
}

/// Sends the kick SGI to `core` (which may be this one) so it looks at its mailboxes.
pub fn kick(core: usize) {
    let Some(state) = percore::CORES.get(core) else {
        return;
    };
    let mpidr = state.mpidr.load(Ordering::Relaxed);
    gic::send_sgi(smp::sgi1r_to(KICK_SGI, mpidr));
}

/// Counts this core as online (after its "online" line, so the boot core's summary follows
/// every core's own line).
fn mark_online(core: usize) {
    percore::CORES[core].online.store(true, Ordering::Release);
    CORES_ONLINE.fetch_add(1, Ordering::AcqRel);
}

fn start_secondaries(cores: &[u64]) {
    let entry = secondary_entry as *const () as u64;
    for (core, &mpidr) in cores.iter().enumerate().skip(1) {
        if let Err(code) = psci::cpu_on(mpidr, entry, core as u64) {
            error!(
                "core {} (mpidr {:#x}): CPU_ON failed with {}",
                core, mpidr, code
            );
        }
    }
    // Give them up to a second to come up.
    let deadline = timer::uptime_us() + 1_000_000;
    while CORES_ONLINE.load(Ordering::Acquire) < cores.len() && timer::uptime_us() < deadline {
        core::hint::spin_loop();
    }
    let online = CORES_ONLINE.load(Ordering::Acquire);
    if online == cores.len() {
        info!("{}/{} cores online", online, cores.len());
    } else {
        error!("only {}/{} cores online", online, cores.len());
    }
}

/// A secondary core's first Rust code, started by `CPU_ON` with its logical number.
extern "C" fn secondary_main(core: u64) -> ! {
    let core = core as usize;
    mmu::enable();
    let mpidr = cpu::mpidr();
    init_this_core(core, mpidr);
    info!("core {} online (mpidr {:#x})", core, mpidr);
    mark_online(core);
    while !RELEASED.load(Ordering::Acquire) {
        aarch64_cpu::asm::wfe();
    }
    run_core(core)
}

/// Runs this core's vCPU, or idles taking ticks when it has none.
fn run_core(core: usize) -> ! {
    if u8::try_from(core).is_ok_and(switch::is_shared_core) {
        switch::run_shared(core)
    }
    guest::run_vcpu_on(core);
    idle()
}

/// Waits for interrupts forever, with interrupts masked at EL2: `wfi` wakes the core and the
/// pending interrupts are handled by polling the CPU interface.
pub fn idle() -> ! {
    // What the departing guest had suppressed here is told before it goes.
    log::flush_all_suppressed();
    // A shared core goes on with its other vCPUs (returns only when none is left).
    if switch::here() {
        switch::leave_loaded();
    }
    let state = percore::this_core();
    vgic::leave_vcpu(state.running());
    state.set_running(None);
    match u8::try_from(cpu::core_index()) {
        Ok(core) if wants_tick(core) => timer::start_tick(),
        _ => timer::stop_tick(),
    }
    loop {
        integrity::serve_due(cpu::core_index());
        // A request posted before this core got here came with a kick that is still pending
        // (so `wfi` returns at once); checking first only saves the round trip.
        if let Some((entry, context)) = state.take_start_request() {
            guest::start_requested_vcpu(cpu::core_index(), entry, context);
        }
        cpu::wait_for_interrupt();
        handle_pending_interrupts();
    }
}

/// A pass of `handle_pending_interrupts` was cut short (reported once).
static PASS_CUT_LOGGED: AtomicBool = AtomicBool::new(false);

/// Acknowledges and handles every pending physical interrupt on this core: the tick here,
/// interrupts of the vCPU running here into its list registers, others switched off.
pub fn handle_pending_interrupts() {
    let running = percore::this_core().running();
    // Bounded (`vgic::drain_acks`): one left pending is taken on the next pass.
    let drained = crate::hvcore::vgic::drain_acks(
        || {
            let intid = gic::acknowledge();
            (intid < gic::SPECIAL_INTID_START).then_some(intid)
        },
        |intid| handle_acknowledged(running, intid),
    );
    if !drained && !PASS_CUT_LOGGED.swap(true, Ordering::Relaxed) {
        warn!(
            "core {}: more than {} interrupts in one pass; the rest wait for the next",
            cpu::core_index(),
            crate::hvcore::vgic::MAX_ACKS_PER_PASS
        );
    }
    if running.is_some() {
        vgic::refill();
    }
}

/// A physical IRQ taken from the guest on this core. The common case, its own timer PPI
/// with a free list register, is forwarded without locks (`true`); anything else (or anything
/// still pending, which traps again right after the return) takes the general path.
pub fn handle_guest_interrupt() -> bool {
    let intid = gic::acknowledge();
    if intid >= gic::SPECIAL_INTID_START {
        return false;
    }
    if vgic::fast_forward(cpu::core_index(), intid) {
        return true;
    }
    slow_guest_interrupt(intid);
    false
}

/// Kept out of line so the fast path saves no callee-saved registers.
#[cold]
#[inline(never)]
fn slow_guest_interrupt(intid: u32) {
    if switch::here() {
        switch::interrupt(intid);
        switch::poll();
        return;
    }
    handle_acknowledged(percore::this_core().running(), intid);
    handle_pending_interrupts();
}

fn handle_acknowledged(running: Option<(usize, usize)>, intid: u32) {
    if intid == KICK_SGI {
        // What it announces is read after the EOI, so a kick sent meanwhile is not lost.
        gic::end_of_interrupt(intid);
        if running.is_some() {
            vgic::deliver_posted();
            dsm::on_kick(running);
            guest::on_kick(running);
        }
        return;
    }
    if smmu::handle_interrupt(intid) {
        gic::end_of_interrupt(intid);
        return;
    }
    if intid == linux::console_intid() && !linux::LINUX.is_empty() {
        let commands = linux::console_input();
        gic::end_of_interrupt(intid);
        // After the EOI: a stop or a restart may not return here.
        for command in commands {
            mgmt::serve(command);
        }
        return;
    }
    let tick = HYP_TIMER_INTID.load(Ordering::Relaxed);
    if vgic::dispatch(running, intid, tick) == IrqRoute::Hypervisor {
        timer::rearm();
        gic::end_of_interrupt(intid);
        if intid == tick {
            dsm::on_tick(running);
        }
    }
}

/// Reports the machine-wide result and powers off.
pub fn shutdown(code: i64) -> ! {
    log::event(format_args!("shutdown code={}", code));
    info!("all partitions stopped; powering off (code {})", code);
    psci::system_off()
}
