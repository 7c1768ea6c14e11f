//! The DSM runtime on the real Debian `Image` in memory (`dsm_api::test_support::MemGuest`):
//! the spumone-side `Guest` finds the slide as it does at run time, the compiled-in checkers
//! take their baselines and stay quiet on a clean kernel, and a hooked syscall is caught and
//! answered by the policy.
#![cfg(all(
    feature = "dsm-vectors",
    feature = "dsm-syscall-table",
    feature = "dsm-text-hash"
))]

use board::rt::DsmPolicy;
use dsm_api::test_support::MemGuest;
use dsm_api::{Checker, Guest, GuestError, KernelSymbols, SysReg};
use spumone::dsm::guest::{Backend, LinuxGuest, VcpuRegs};
use spumone::dsm::runtime::{Event, Phase, Response, Runtime};

/// EL1h, as a vCPU interrupted in the kernel.
const EL1H: u64 = 0x3c5;

/// The in-memory kernel as the hypervisor's mechanism would show it.
struct Mem(MemGuest);

impl Backend for Mem {
    fn read_ram(&self, pa: u64, buf: &mut [u8]) {
        self.0
            .read_phys(pa, buf)
            .expect("LinuxGuest checked the range");
    }
    fn regs(&self, vcpu: usize) -> Option<VcpuRegs> {
        let r = |reg| self.0.sysreg(vcpu, reg).ok();
        Some(VcpuRegs {
            ttbr0: r(SysReg::Ttbr0El1)?,
            ttbr1: r(SysReg::Ttbr1El1)?,
            tcr: r(SysReg::TcrEl1)?,
            sctlr: r(SysReg::SctlrEl1)?,
            vbar: r(SysReg::VbarEl1)?,
            mair: r(SysReg::MairEl1)?,
            pc: r(SysReg::Pc)?,
            pstate: r(SysReg::Pstate)?,
        })
    }
    fn pause(&mut self) -> bool {
        true
    }
    fn resume(&mut self) {}
}

fn booted_guest() -> LinuxGuest<Mem> {
    let mut mem = MemGuest::linux();
    let symbols: &'static KernelSymbols = Box::leak(Box::new(*mem.symbols()));
    let ram = mem.ram().to_vec();
    let vcpus = mem.vcpus();
    for v in 0..vcpus {
        mem.set_sysreg(v, SysReg::Pstate, EL1H);
    }
    let text_pa = mem.config.text_pa;
    let mut g = LinuxGuest::new(Mem(mem), &ram, vcpus, symbols, text_pa);
    assert_eq!(g.kernel(), Err(GuestError::KernelUnknown));
    assert!(g.boot_complete(0), "slide not found in the real tables");
    g
}

#[test]
fn finds_the_slide_and_refuses_a_mid_switch_view() {
    let mut g = booted_guest();
    assert_eq!(g.kernel().unwrap(), g.backend().0.kernel().unwrap());
    // vCPU 1 at EL1 on another TTBR1 (the KPTI trampoline's window): not a consistent view.
    let ttbr1 = g.sysreg(1, SysReg::Ttbr1El1).unwrap();
    g.backend_mut()
        .0
        .set_sysreg(1, SysReg::Ttbr1El1, ttbr1 + 0x1000);
    assert_eq!(
        g.sysreg(1, SysReg::VbarEl1),
        Err(GuestError::RegisterUnavailable(SysReg::VbarEl1))
    );
    // The ASID bits do not matter, and at EL0 the trampoline's table is the normal one.
    g.backend_mut()
        .0
        .set_sysreg(1, SysReg::Ttbr1El1, ttbr1 | 5 << 48);
    assert!(g.sysreg(1, SysReg::VbarEl1).is_ok());
    g.backend_mut()
        .0
        .set_sysreg(1, SysReg::Ttbr1El1, ttbr1 + 0x1000);
    g.backend_mut().0.set_sysreg(1, SysReg::Pstate, 0);
    assert!(g.sysreg(1, SysReg::VbarEl1).is_ok());
}

#[test]
fn clean_kernel_is_quiet_and_a_hooked_syscall_stops_linux() {
    let mut g = booted_guest();
    let mut vectors = monitor_vectors::VectorsChecker::new();
    let mut syscalls = monitor_syscall_table::SyscallTableChecker::new();
    let mut text = Box::new(monitor_text_hash::TextHashChecker::new());
    let mut rt = Runtime::new(100, DsmPolicy::Stop, [16, 8 * 512, 4 * 64 * 1024]);
    let mut events = Vec::new();
    let mut clock = 0u64;
    let mut drain = |g: &mut LinuxGuest<Mem>| g.take_finding();
    {
        let mut checkers: [&mut dyn Checker; 3] = [&mut vectors, &mut syscalls, &mut *text];
        rt.baseline(0, &mut || 0, &mut g, &mut drain, &mut checkers, &mut |e| {
            events.push(e)
        });
        // Two seconds of 10 ms ticks: every checker completes passes, nothing is found.
        for t in (0..2_000_000).step_by(10_000) {
            rt.step(
                t,
                &mut || {
                    clock += 1;
                    clock
                },
                &mut g,
                &mut drain,
                &mut checkers,
                &mut |e| events.push(e),
            );
        }
    }
    assert!(
        !events.iter().any(|e| matches!(e, Event::Alert(_))),
        "{events:?}"
    );
    for name in ["vectors", "syscall-table", "text-hash"] {
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::PassDone { checker, .. } if *checker == name)),
            "no pass of {name}"
        );
    }
    assert_eq!(rt.phase(), Phase::Running);

    // Hook `kill` (syscall 129 on arm64) as hook_syscall does.
    let table = g.symbols().sys_call_table.unwrap();
    let k = g.kernel().unwrap();
    let slot = k.text_pa + table.offset + 8 * 129;
    g.backend_mut()
        .0
        .write_u64_phys(slot, k.text_va + 0x1234)
        .unwrap();
    events.clear();
    let mut checkers: [&mut dyn Checker; 3] = [&mut vectors, &mut syscalls, &mut *text];
    for t in (2_000_000..2_500_000).step_by(10_000) {
        rt.step(t, &mut || 0, &mut g, &mut drain, &mut checkers, &mut |e| {
            events.push(e)
        });
    }
    let alert = events.iter().find_map(|e| match e {
        Event::Alert(f) => Some(*f),
        _ => None,
    });
    let alert = alert.expect("the hook was not found");
    assert_eq!(alert.checker, "syscall-table");
    assert_eq!(alert.at, k.text_va + table.offset + 8 * 129);
    assert!(events.contains(&Event::Respond(Response::Stop)));
    assert_eq!(rt.phase(), Phase::Stopped);
}
