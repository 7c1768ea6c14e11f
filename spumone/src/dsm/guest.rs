//! `dsm_api::Guest` for a Linux partition: reads bounded to its RAM, vCPU registers as the
//! hypervisor captured them at EL2, and the kernel's place once Linux has mapped itself.

use dsm_api::walk::PAGE_SIZE;
use dsm_api::{
    exception_level, kaslr, Access, Finding, Guest, GuestError, KernelInfo, KernelSymbols,
    PhysRange, SysReg, WatchId,
};

use crate::hvcore::watch::{self, Watch, WatchKind, WatchTable};

/// Stage-2 permissions of guest pages (reads are always allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perms {
    pub write: bool,
    pub exec: bool,
}

impl Perms {
    /// What a page has without a watch.
    pub const ALL: Perms = Perms {
        write: true,
        exec: true,
    };

    /// What a page under a watch of `kind` keeps.
    pub const fn under(kind: WatchKind) -> Perms {
        match kind {
            WatchKind::Write => Perms {
                write: false,
                exec: true,
            },
            WatchKind::Execute => Perms {
                write: true,
                exec: false,
            },
        }
    }
}

/// Most RAM ranges a partition has (as the board allows).
pub const MAX_RAM: usize = 8;
/// Findings kept between two drains by the runtime; more are counted, not kept.
pub const MAX_FINDINGS: usize = 16;
/// `SCTLR_EL1.M`: the vCPU's stage-1 MMU is on.
const SCTLR_M: u64 = 1;
/// `TTBRn_EL1.BADDR` (bits 47:1; the ASID and CnP left out).
const TTBR_BADDR: u64 = 0x0000_ffff_ffff_fffe;

/// A vCPU's registers as the hypervisor saved them while the vCPU was stopped at EL2.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VcpuRegs {
    pub ttbr0: u64,
    pub ttbr1: u64,
    pub tcr: u64,
    pub sctlr: u64,
    pub vbar: u64,
    pub mair: u64,
    pub pc: u64,
    pub pstate: u64,
}

impl VcpuRegs {
    fn get(&self, reg: SysReg) -> u64 {
        match reg {
            SysReg::Ttbr0El1 => self.ttbr0,
            SysReg::Ttbr1El1 => self.ttbr1,
            SysReg::TcrEl1 => self.tcr,
            SysReg::SctlrEl1 => self.sctlr,
            SysReg::VbarEl1 => self.vbar,
            SysReg::MairEl1 => self.mair,
            SysReg::Pc => self.pc,
            SysReg::Pstate => self.pstate,
        }
    }
}

/// The mechanism under a [`LinuxGuest`], implemented by `arch` (and by fakes in tests).
pub trait Backend {
    /// Copies guest RAM at `pa` into `buf`; the range was checked to lie in the partition's
    /// RAM.
    fn read_ram(&self, pa: u64, buf: &mut [u8]);
    /// `vcpu`'s registers as last captured, or `None` if they could not be captured.
    fn regs(&self, vcpu: usize) -> Option<VcpuRegs>;
    /// Holds every vCPU of the partition in the hypervisor; `false` if one did not stop.
    fn pause(&mut self) -> bool;
    fn resume(&mut self);
    /// Gives the pages `[base, base + size)` the stage-2 permissions `perms`, with the TLB
    /// maintenance that needs; `false` if it could not.
    fn protect(&mut self, base: u64, size: u64, perms: Perms) -> bool {
        let _ = (base, size, perms);
        false
    }
    /// The digest service (see `Guest::sha256_compress`); software unless overridden.
    fn sha256_compress(&self, state: &mut [u32; 8], blocks: &[[u8; 64]]) {
        dsm_api::digest::compress_soft(state, blocks);
    }
}

/// A Linux partition as the checkers see it.
pub struct LinuxGuest<B> {
    backend: B,
    ram: [PhysRange; MAX_RAM],
    nram: usize,
    vcpus: usize,
    symbols: &'static KernelSymbols,
    /// Where the hypervisor loaded the `Image` and how much of RAM it takes.
    image_pa: u64,
    kernel: Option<KernelInfo>,
    /// The kernel's own TTBR1 table (`swapper_pg_dir`), as found at boot.
    swapper: Option<u64>,
    findings: heapless::Deque<Finding, MAX_FINDINGS>,
    /// Findings that did not fit the queue.
    dropped: u32,
    /// Completed checker passes (the heartbeat a host-side proxy will be sent).
    heartbeats: u32,
    /// Write watches (stage-2 read-only pages) and execute watches (execute-never pages).
    watches: WatchTable,
}

impl<B: Backend> LinuxGuest<B> {
    /// `ram` beyond [`MAX_RAM`] ranges is left out (reads there fail as outside RAM).
    pub fn new(
        backend: B,
        ram: &[PhysRange],
        vcpus: usize,
        symbols: &'static KernelSymbols,
        image_pa: u64,
    ) -> Self {
        let mut r = [PhysRange::new(0, 0); MAX_RAM];
        let nram = ram.len().min(MAX_RAM);
        r[..nram].copy_from_slice(&ram[..nram]);
        Self {
            backend,
            ram: r,
            nram,
            vcpus,
            symbols,
            image_pa,
            kernel: None,
            swapper: None,
            findings: heapless::Deque::new(),
            dropped: 0,
            heartbeats: 0,
            watches: WatchTable::new(),
        }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Whether Linux has finished the boot steps a baseline must follow: `vcpu` runs at EL1
    /// with its MMU on, its TTBR1 maps the `Image` at a slide (found with
    /// `dsm_api::kaslr`), and `mark_rodata_ro` has run (the start of rodata is mapped
    /// read-only). Records the kernel's place once it is known.
    pub fn boot_complete(&mut self, vcpu: usize) -> bool {
        let Some(regs) = self.backend.regs(vcpu) else {
            return false;
        };
        if exception_level(regs.pstate) != 1 || regs.sctlr & SCTLR_M == 0 {
            return false;
        }
        let layout = self.symbols.layout;
        let s1 = dsm_api::Stage1Regs {
            ttbr0: regs.ttbr0,
            ttbr1: regs.ttbr1,
            tcr: regs.tcr,
        };
        let mut read = |pa| {
            self.read_u64_phys(pa)
                .map_err(|_| dsm_api::WalkError::OutsideRam { pa })
        };
        let kernel = match self.kernel {
            Some(k) => k,
            None => {
                let probes = [layout.stext, layout.etext.saturating_sub(PAGE_SIZE)];
                match kaslr::find_kernel(&s1, self.image_pa, layout.image_size, &probes, &mut read)
                {
                    Ok(k) => k,
                    Err(_) => return false,
                }
            }
        };
        // Early boot runs on `init_pg_dir`; the table that maps rodata read-only is the
        // kernel's own for good (`swapper_pg_dir`).
        let sealed = dsm_api::walk::translate(&s1, kernel.text_va + layout.etext, &mut read)
            .is_ok_and(|t| !t.el1_writable());
        self.kernel = Some(kernel);
        if sealed {
            self.swapper = Some(regs.ttbr1 & TTBR_BADDR);
        }
        sealed
    }

    /// Forgets the kernel's place (the partition restarted with a new slide) and its
    /// watches (the restart made its memory writable again).
    pub fn forget_kernel(&mut self) {
        self.kernel = None;
        self.swapper = None;
        self.watches.clear();
    }

    /// How many watches are set (write and execute).
    pub fn watch_count(&self) -> usize {
        self.watches.iter().count()
    }

    /// The write watch holding any byte of `[pa, pa + len)`.
    pub fn watched(&self, pa: u64, len: u64) -> Option<WatchId> {
        self.watches
            .find(pa, len, WatchKind::Write)
            .map(|w| WatchId(w.id))
    }

    /// Whether a write fault at `pa` comes from a watch: its page is write-protected.
    pub fn page_watched(&self, pa: u64) -> bool {
        self.watches.page_watched(pa, WatchKind::Write)
    }

    /// The execute watch whose page holds `pa`: an instruction fetch there faulted because
    /// of it (stage 2 makes whole pages execute-never, so a fetch next to the range counts).
    pub fn exec_watched(&self, pa: u64) -> Option<WatchId> {
        self.watches
            .find(pa & !0xFFF, 0x1000, WatchKind::Execute)
            .map(|w| WatchId(w.id))
    }

    /// Makes the page holding `pa` executable again and keeps it so, for a fetch the
    /// policy let through (`log`); the rest of the watch stays armed. `false` if stage 2
    /// could not be changed.
    pub fn lift_exec_page(&mut self, pa: u64) -> bool {
        self.backend.protect(pa & !0xFFF, 0x1000, Perms::ALL)
    }

    /// `vcpu`'s captured registers, unless they were caught mid-switch: at EL1 with a TTBR1
    /// other than the kernel's own table, as in the KPTI trampoline between the exception
    /// entry and the switch to `swapper_pg_dir` (or just before the return to EL0). Such a
    /// view is not consistent; the next capture is.
    fn consistent_regs(&self, vcpu: usize) -> Option<VcpuRegs> {
        let regs = self.backend.regs(vcpu)?;
        match self.swapper {
            Some(swapper)
                if exception_level(regs.pstate) == 1 && regs.ttbr1 & TTBR_BADDR != swapper =>
            {
                None
            }
            _ => Some(regs),
        }
    }

    /// The oldest finding not yet taken.
    pub fn take_finding(&mut self) -> Option<Finding> {
        self.findings.pop_front()
    }

    /// Completed checker passes so far.
    pub fn heartbeats(&self) -> u32 {
        self.heartbeats
    }

    /// Findings lost because the queue was full, since the last call.
    pub fn take_dropped(&mut self) -> u32 {
        core::mem::take(&mut self.dropped)
    }
}

impl<B: Backend> Guest for LinuxGuest<B> {
    fn ram(&self) -> &[PhysRange] {
        &self.ram[..self.nram]
    }

    fn sha256_compress(&self, state: &mut [u32; 8], blocks: &[[u8; 64]]) {
        self.backend.sha256_compress(state, blocks);
    }

    fn read_phys(&self, pa: u64, buf: &mut [u8]) -> Result<(), GuestError> {
        let len = buf.len() as u64;
        if !self.ram().iter().any(|r| r.contains_range(pa, len)) {
            return Err(GuestError::OutsideRam { pa, len });
        }
        self.backend.read_ram(pa, buf);
        Ok(())
    }

    fn vcpus(&self) -> usize {
        self.vcpus
    }

    fn sysreg(&self, vcpu: usize, reg: SysReg) -> Result<u64, GuestError> {
        if vcpu >= self.vcpus {
            return Err(GuestError::NoSuchVcpu(vcpu));
        }
        self.consistent_regs(vcpu)
            .map(|r| r.get(reg))
            .ok_or(GuestError::RegisterUnavailable(reg))
    }

    fn kernel(&self) -> Result<KernelInfo, GuestError> {
        self.kernel.ok_or(GuestError::KernelUnknown)
    }

    fn symbols(&self) -> &KernelSymbols {
        self.symbols
    }

    fn pause(&mut self) -> Result<(), GuestError> {
        if self.backend.pause() {
            Ok(())
        } else {
            self.backend.resume();
            Err(GuestError::PauseFailed)
        }
    }

    fn resume(&mut self) {
        self.backend.resume();
    }

    /// Stage-2 protection of whole pages inside the partition's RAM: read-only for a write
    /// watch, execute-never for an execute watch. A page carries one kind of watch.
    fn watch(&mut self, range: PhysRange, access: Access) -> Result<WatchId, GuestError> {
        let inside = self
            .ram()
            .iter()
            .any(|r| r.contains_range(range.start, range.len));
        if range.len == 0 || !inside {
            return Err(GuestError::WatchUnavailable);
        }
        let kind = match access {
            Access::Write => WatchKind::Write,
            Access::Execute => WatchKind::Execute,
        };
        let w = self
            .watches
            .add(range.start, range.len, kind)
            .ok_or(GuestError::WatchUnavailable)?;
        let (base, size) = watch::pages(range.start, range.len);
        if !self.backend.protect(base, size, Perms::under(kind)) {
            self.watches.remove(w.id);
            return Err(GuestError::WatchUnavailable);
        }
        Ok(WatchId(w.id))
    }

    fn unwatch(&mut self, id: WatchId) {
        let Some(w) = self.watches.remove(id.0) else {
            return;
        };
        let (base, size) = watch::pages(w.base, w.size);
        self.backend.protect(base, size, Perms::ALL);
        // Pages shared with the remaining watches (of the same kind) stay protected.
        let rest: heapless::Vec<Watch, { watch::MAX_WATCHES }> = self.watches.iter().collect();
        for w in rest {
            let (base, size) = watch::pages(w.base, w.size);
            self.backend.protect(base, size, Perms::under(w.kind));
        }
    }

    fn report(&mut self, finding: Finding) {
        if self.findings.push_back(finding).is_err() {
            self.dropped = self.dropped.saturating_add(1);
        }
    }

    fn heartbeat(&mut self, _checker: &'static str) {
        self.heartbeats = self.heartbeats.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsm_api::symbols::Layout;

    static SYMS: KernelSymbols = KernelSymbols {
        symbols: &[],
        layout: Layout {
            stext: 0x1_0000,
            etext: 0x20_0000,
            rodata_end: 0x30_0000,
            init_begin: 0x40_0000,
            image_size: 0x50_0000,
        },
        sys_call_table: None,
        tramp_vectors: None,
        jump_table: None,
    };

    struct Fake {
        base: u64,
        mem: std::vec::Vec<u8>,
        regs: Option<VcpuRegs>,
        pauses: usize,
        resumes: usize,
        pause_ok: bool,
        protect_ok: bool,
        protects: std::vec::Vec<(u64, u64, Perms)>,
    }

    impl Backend for Fake {
        fn read_ram(&self, pa: u64, buf: &mut [u8]) {
            let off = (pa - self.base) as usize;
            buf.copy_from_slice(&self.mem[off..off + buf.len()]);
        }
        fn regs(&self, vcpu: usize) -> Option<VcpuRegs> {
            self.regs.filter(|_| vcpu == 0)
        }
        fn pause(&mut self) -> bool {
            self.pauses += 1;
            self.pause_ok
        }
        fn resume(&mut self) {
            self.resumes += 1;
        }
        fn protect(&mut self, base: u64, size: u64, perms: Perms) -> bool {
            if self.protect_ok {
                self.protects.push((base, size, perms));
            }
            self.protect_ok
        }
    }

    fn guest(regs: Option<VcpuRegs>) -> LinuxGuest<Fake> {
        let fake = Fake {
            base: 0x4800_0000,
            mem: (0..0x2000u32).map(|i| i as u8).collect(),
            regs,
            pauses: 0,
            resumes: 0,
            pause_ok: true,
            protect_ok: true,
            protects: std::vec::Vec::new(),
        };
        let ram = [
            PhysRange::new(0x4800_0000, 0x1000),
            PhysRange::new(0x4800_1000, 0x1000),
        ];
        LinuxGuest::new(fake, &ram, 2, &SYMS, 0x4820_0000)
    }

    #[test]
    fn reads_stay_inside_ram() {
        let g = guest(None);
        let mut b = [0u8; 4];
        assert_eq!(g.read_phys(0x4800_1ffc, &mut b), Ok(()));
        assert_eq!(b, [0xfc, 0xfd, 0xfe, 0xff]);
        assert!(
            g.read_phys(0x4800_0ffe, &mut b).is_err(),
            "one range must hold a read"
        );
        let mut b = [0u8; 16];
        assert_eq!(
            g.read_phys(0x4800_1ff8, &mut b),
            Err(GuestError::OutsideRam {
                pa: 0x4800_1ff8,
                len: 16
            })
        );
        assert!(g.read_phys(u64::MAX - 3, &mut b).is_err(), "no wrap-around");
        assert!(g.read_phys(0x47ff_fff8, &mut b).is_err());
    }

    #[test]
    fn registers_come_from_the_capture() {
        let regs = VcpuRegs {
            vbar: 0xffff_8000_0801_0800,
            pstate: 0x3c5,
            ..Default::default()
        };
        let g = guest(Some(regs));
        assert_eq!(g.sysreg(0, SysReg::VbarEl1), Ok(regs.vbar));
        assert_eq!(g.sysreg(0, SysReg::Pstate), Ok(0x3c5));
        assert_eq!(
            g.sysreg(1, SysReg::VbarEl1),
            Err(GuestError::RegisterUnavailable(SysReg::VbarEl1))
        );
        assert_eq!(g.sysreg(2, SysReg::Pc), Err(GuestError::NoSuchVcpu(2)));
        assert_eq!(g.kernel(), Err(GuestError::KernelUnknown));
    }

    #[test]
    fn not_booted_without_el1_and_mmu() {
        let mut g = guest(None);
        assert!(!g.boot_complete(0), "no registers");
        let el0 = VcpuRegs {
            sctlr: 1,
            pstate: 0,
            ..Default::default()
        };
        g.backend_mut().regs = Some(el0);
        assert!(!g.boot_complete(0), "EL0");
        let mmu_off = VcpuRegs {
            sctlr: 0,
            pstate: 0x3c5,
            ..Default::default()
        };
        g.backend_mut().regs = Some(mmu_off);
        assert!(!g.boot_complete(0), "MMU off");
        // EL1 with the MMU on, but TTBR1 points outside RAM: no slide, not booted.
        let bad_tables = VcpuRegs {
            sctlr: 1,
            pstate: 0x3c5,
            ttbr1: 0x1000,
            tcr: 16 << 16 | 16,
            ..Default::default()
        };
        g.backend_mut().regs = Some(bad_tables);
        assert!(!g.boot_complete(0));
        assert_eq!(g.kernel(), Err(GuestError::KernelUnknown));
    }

    #[test]
    fn findings_queue_then_count() {
        let mut g = guest(None);
        let f = Finding {
            checker: "x",
            what: "y",
            at: 1,
            expected: 2,
            found: 3,
        };
        for i in 0..MAX_FINDINGS + 3 {
            g.report(Finding { at: i as u64, ..f });
        }
        assert_eq!(g.take_dropped(), 3);
        assert_eq!(g.take_dropped(), 0);
        assert_eq!(g.take_finding().map(|f| f.at), Some(0));
        let mut n = 1;
        while g.take_finding().is_some() {
            n += 1;
        }
        assert_eq!(n, MAX_FINDINGS);
    }

    #[test]
    fn a_failed_pause_resumes() {
        let mut g = guest(None);
        g.backend_mut().pause_ok = false;
        assert_eq!(g.pause(), Err(GuestError::PauseFailed));
        assert_eq!((g.backend.pauses, g.backend.resumes), (1, 1));
        g.backend_mut().pause_ok = true;
        {
            let _stw = dsm_api::StopTheWorld::new(&mut g).unwrap();
        }
        assert_eq!((g.backend.pauses, g.backend.resumes), (2, 2));
    }

    #[test]
    fn write_watches_protect_whole_pages_and_unwatch_keeps_shared_ones() {
        const RO: Perms = Perms::under(WatchKind::Write);
        let mut g = guest(None);
        // The backend refuses: no watch.
        g.backend_mut().protect_ok = false;
        assert_eq!(
            g.watch(PhysRange::new(0x4800_0000, 8), Access::Write),
            Err(GuestError::WatchUnavailable)
        );
        assert_eq!(g.watched(0x4800_0000, 8), None);
        g.backend_mut().protect_ok = true;
        for bad in [
            (PhysRange::new(0x4800_1ff8, 16), Access::Write),
            (PhysRange::new(0x4800_0000, 0), Access::Write),
            (PhysRange::new(0x4800_1ff8, 16), Access::Execute),
        ] {
            assert_eq!(g.watch(bad.0, bad.1), Err(GuestError::WatchUnavailable));
        }
        let a = g
            .watch(PhysRange::new(0x4800_0010, 8), Access::Write)
            .unwrap();
        let b = g
            .watch(PhysRange::new(0x4800_0800, 0x800), Access::Write)
            .unwrap();
        assert_eq!(g.watched(0x4800_0014, 4), Some(a));
        assert_eq!(g.watched(0x4800_0ffc, 4), Some(b));
        assert_eq!(g.watched(0x4800_0100, 4), None);
        assert!(g.page_watched(0x4800_0100), "on a protected page");
        assert_eq!(g.exec_watched(0x4800_0100), None, "writes only");
        assert_eq!(
            g.backend.protects,
            [(0x4800_0000, 0x1000, RO), (0x4800_0000, 0x1000, RO)]
        );
        g.backend_mut().protects.clear();
        g.unwatch(a);
        assert_eq!(g.watched(0x4800_0010, 8), None);
        // Unprotected, then the page shared with `b` protected again.
        assert_eq!(
            g.backend.protects,
            [(0x4800_0000, 0x1000, Perms::ALL), (0x4800_0000, 0x1000, RO)]
        );
        g.forget_kernel();
        assert_eq!(g.watched(0x4800_0ffc, 4), None, "a restart drops them");
    }

    #[test]
    fn execute_watches_make_pages_execute_never_apart_from_write_watches() {
        const XN: Perms = Perms::under(WatchKind::Execute);
        let mut g = guest(None);
        let w = g
            .watch(PhysRange::new(0x4800_0000, 0x10), Access::Write)
            .unwrap();
        assert_eq!(
            g.watch(PhysRange::new(0x4800_0800, 0x10), Access::Execute),
            Err(GuestError::WatchUnavailable),
            "a write-watched page cannot be execute-never too"
        );
        g.backend_mut().protects.clear();
        let x = g
            .watch(PhysRange::new(0x4800_1000, 0x800), Access::Execute)
            .unwrap();
        assert_eq!(g.backend.protects, [(0x4800_1000, 0x1000, XN)]);
        assert_eq!(g.exec_watched(0x4800_1ffc), Some(x), "the whole page");
        assert_eq!(g.exec_watched(0x4800_0000), None);
        assert_eq!(g.watched(0x4800_1000, 4), None, "not a write watch");
        assert!(g.lift_exec_page(0x4800_1234));
        assert_eq!(g.backend.protects[1], (0x4800_1000, 0x1000, Perms::ALL));
        g.backend_mut().protects.clear();
        g.unwatch(x);
        // The write watch's page is protected again as read-only, not execute-never.
        assert_eq!(
            g.backend.protects,
            [
                (0x4800_1000, 0x1000, Perms::ALL),
                (0x4800_0000, 0x1000, Perms::under(WatchKind::Write))
            ]
        );
        g.unwatch(w);
    }
}
