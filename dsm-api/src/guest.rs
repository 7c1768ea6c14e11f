//! What the hypervisor offers a checker: guest RAM, vCPU registers, kernel facts, symbols,
//! a stop-the-world guard, watches, reports and a heartbeat.

use core::fmt;
use core::ops::{Deref, DerefMut};

use crate::symbols::KernelSymbols;
use crate::walk::{self, Stage1Regs, Translation, WalkError};

/// A range of guest physical addresses (IPA = PA in spumone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhysRange {
    pub start: u64,
    pub len: u64,
}

impl PhysRange {
    pub const fn new(start: u64, len: u64) -> Self {
        Self { start, len }
    }

    /// One past the last address, or `None` if the range wraps.
    pub fn end(&self) -> Option<u64> {
        self.start.checked_add(self.len)
    }

    /// Whether `[pa, pa + len)` lies entirely inside this range.
    pub fn contains_range(&self, pa: u64, len: u64) -> bool {
        match (self.end(), pa.checked_add(len)) {
            (Some(end), Some(last)) => pa >= self.start && last <= end,
            _ => false,
        }
    }
}

/// The vCPU registers a checker may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysReg {
    Ttbr0El1,
    Ttbr1El1,
    TcrEl1,
    SctlrEl1,
    VbarEl1,
    MairEl1,
    /// The guest PC where the vCPU stopped.
    Pc,
    /// PSTATE in SPSR layout (bits 3:2 are the exception level).
    Pstate,
}

/// The exception level in a PSTATE value (SPSR layout).
pub fn exception_level(pstate: u64) -> u8 {
    ((pstate >> 2) & 3) as u8
}

/// Whether `vcpu` is at EL1 now, so its TTBR1 is the kernel's own table (an EL0 vCPU may hold
/// the KPTI trampoline's); `false` for a vCPU whose registers cannot be read now.
pub fn at_el1(guest: &dyn Guest, vcpu: usize) -> Result<bool, GuestError> {
    match guest.sysreg(vcpu, SysReg::Pstate) {
        Ok(pstate) => Ok(exception_level(pstate) == 1),
        Err(GuestError::RegisterUnavailable(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Kind of access a watch traps (through stage-2 permissions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Write,
    Execute,
}

/// Handle of a watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WatchId(pub u32);

/// A trapped access to a watched range. The runtime delivers a write before it emulates it,
/// so a checker sees the old contents in guest memory and the new ones here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchEvent {
    pub id: WatchId,
    pub pa: u64,
    pub access: Access,
    pub vcpu: usize,
    /// The guest PC of the access.
    pub pc: u64,
    /// For a write: the value being stored (little-endian, `len` bytes); 0 otherwise.
    pub value: u64,
    /// For a write: its size in bytes (1, 2, 4 or 8); 0 otherwise.
    pub len: u8,
}

/// Where the kernel image is: the hypervisor knows where it loaded the `Image` (PA), the
/// slide comes from the guest's own page tables ([`crate::kaslr`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelInfo {
    /// PA of `_text` (the first byte of the `Image`).
    pub text_pa: u64,
    /// VA of `_text` after KASLR.
    pub text_va: u64,
    /// Bytes of the loaded image (the header's `image_size`).
    pub image_size: u64,
}

impl KernelInfo {
    /// The KASLR slide: `VA(_text) - KIMAGE_VADDR`.
    pub fn slide(&self) -> u64 {
        self.text_va.wrapping_sub(crate::KIMAGE_VADDR)
    }

    /// The PA of a kernel-image VA (the image is physically contiguous), or `None` outside it.
    pub fn image_va_to_pa(&self, va: u64) -> Option<u64> {
        let off = va.checked_sub(self.text_va)?;
        (off < self.image_size).then(|| self.text_pa + off)
    }

    /// The VA of a PA inside the image, or `None` outside it.
    pub fn image_pa_to_va(&self, pa: u64) -> Option<u64> {
        let off = pa.checked_sub(self.text_pa)?;
        (off < self.image_size).then(|| self.text_va + off)
    }
}

/// One integrity violation. Fixed-size so reporting needs no allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    pub checker: &'static str,
    /// Short description of what is wrong, e.g. `"syscall entry changed"`.
    pub what: &'static str,
    /// The VA or PA concerned (the checker's doc says which).
    pub at: u64,
    pub expected: u64,
    pub found: u64,
}

impl Finding {
    pub const fn new(
        checker: &'static str,
        what: &'static str,
        at: u64,
        expected: u64,
        found: u64,
    ) -> Self {
        Self {
            checker,
            what,
            at,
            expected,
            found,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} at {:#x}: expected {:#x}, found {:#x}",
            self.checker, self.what, self.at, self.expected, self.found
        )
    }
}

/// Why a guest operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestError {
    /// `[pa, pa + len)` is not entirely inside guest RAM.
    OutsideRam {
        pa: u64,
        len: u64,
    },
    NoSuchVcpu(usize),
    /// The register cannot be read now (e.g. the vCPU is running on another core).
    RegisterUnavailable(SysReg),
    /// Stage-1 translation failed.
    Walk(WalkError),
    /// The kernel's location is not known yet (before the slide was found).
    KernelUnknown,
    /// No more watches can be set, or the range cannot be watched.
    WatchUnavailable,
    /// The guest could not be paused.
    PauseFailed,
}

impl From<WalkError> for GuestError {
    fn from(e: WalkError) -> Self {
        GuestError::Walk(e)
    }
}

impl fmt::Display for GuestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestError::OutsideRam { pa, len } => {
                write!(f, "{len:#x} bytes at PA {pa:#x} are outside guest RAM")
            }
            GuestError::NoSuchVcpu(v) => write!(f, "no vCPU {v}"),
            GuestError::RegisterUnavailable(r) => write!(f, "register {r:?} unavailable"),
            GuestError::Walk(e) => write!(f, "stage-1 walk: {e}"),
            GuestError::KernelUnknown => write!(f, "kernel location not known yet"),
            GuestError::WatchUnavailable => write!(f, "watch unavailable"),
            GuestError::PauseFailed => write!(f, "cannot pause the guest"),
        }
    }
}

/// The operations a checker sees. The hypervisor implements this for the Linux partition;
/// [`crate::test_support::MemGuest`] implements it in memory for host tests.
pub trait Guest {
    /// The guest's RAM.
    fn ram(&self) -> &[PhysRange];
    /// Copies guest physical memory into `buf`; fails unless the whole range is RAM.
    fn read_phys(&self, pa: u64, buf: &mut [u8]) -> Result<(), GuestError>;
    /// Number of vCPUs.
    fn vcpus(&self) -> usize;
    /// A vCPU's register as last saved.
    fn sysreg(&self, vcpu: usize, reg: SysReg) -> Result<u64, GuestError>;
    /// Where the kernel image is.
    fn kernel(&self) -> Result<KernelInfo, GuestError>;
    /// The kernel's symbols (offsets from `_text`, derived at build time).
    fn symbols(&self) -> &KernelSymbols;
    /// Stops every vCPU of the guest. Prefer [`StopTheWorld`], which resumes on drop.
    fn pause(&mut self) -> Result<(), GuestError>;
    /// Undoes [`Guest::pause`].
    fn resume(&mut self);
    /// Traps `access` to `range` (stage-2 permissions); events reach [`crate::Checker::on_watch`].
    fn watch(&mut self, range: PhysRange, access: Access) -> Result<WatchId, GuestError>;
    fn unwatch(&mut self, id: WatchId);
    /// Raises a finding; the runtime applies its response policy.
    fn report(&mut self, finding: Finding);
    /// Tells the runtime (and the external proxy) that `checker` completed a pass.
    fn heartbeat(&mut self, checker: &'static str);

    /// Reads a little-endian `u64` at `pa`.
    fn read_u64_phys(&self, pa: u64) -> Result<u64, GuestError> {
        let mut b = [0u8; 8];
        self.read_phys(pa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// The stage-1 registers of `vcpu`.
    fn stage1(&self, vcpu: usize) -> Result<Stage1Regs, GuestError> {
        Ok(Stage1Regs {
            ttbr0: self.sysreg(vcpu, SysReg::Ttbr0El1)?,
            ttbr1: self.sysreg(vcpu, SysReg::Ttbr1El1)?,
            tcr: self.sysreg(vcpu, SysReg::TcrEl1)?,
        })
    }

    /// Translates `va` with `vcpu`'s current stage-1 tables.
    fn translate(&self, vcpu: usize, va: u64) -> Result<Translation, GuestError> {
        let regs = self.stage1(vcpu)?;
        walk::translate(&regs, va, &mut |pa| {
            self.read_u64_phys(pa)
                .map_err(|_| WalkError::OutsideRam { pa })
        })
        .map_err(GuestError::Walk)
    }

    /// Reads guest virtual memory through `vcpu`'s stage-1 tables, one page at a time.
    fn read_virt(&self, vcpu: usize, va: u64, buf: &mut [u8]) -> Result<(), GuestError> {
        let mut done = 0usize;
        while done < buf.len() {
            let cur = va
                .checked_add(done as u64)
                .ok_or(GuestError::Walk(WalkError::VaOutOfRange { va }))?;
            let t = self.translate(vcpu, cur)?;
            let in_page = (walk::PAGE_SIZE - (cur & (walk::PAGE_SIZE - 1))) as usize;
            let n = in_page.min(buf.len() - done);
            self.read_phys(t.pa, &mut buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    /// The run-time VA of a kernel text symbol.
    fn symbol(&self, name: &str) -> Result<Option<u64>, GuestError> {
        let k = self.kernel()?;
        Ok(self.symbols().offset(name).map(|o| k.text_va + o))
    }

    /// The digest service: SHA-256's compression of whole 64-byte `blocks` into `state`
    /// (FIPS 180-4). A hypervisor overrides it with the CPU's SHA-256 instructions; this
    /// default is software. Checkers hash through [`crate::digest::Sha256`], which pads.
    fn sha256_compress(&self, state: &mut [u32; 8], blocks: &[[u8; 64]]) {
        crate::digest::compress_soft(state, blocks);
    }
}

/// Keeps every guest vCPU stopped while alive, for consistent reads; resumes on drop.
pub struct StopTheWorld<'a> {
    guest: &'a mut dyn Guest,
}

impl<'a> StopTheWorld<'a> {
    pub fn new(guest: &'a mut dyn Guest) -> Result<Self, GuestError> {
        guest.pause()?;
        Ok(Self { guest })
    }
}

impl<'a> Deref for StopTheWorld<'a> {
    type Target = dyn Guest + 'a;
    fn deref(&self) -> &Self::Target {
        self.guest
    }
}

impl DerefMut for StopTheWorld<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.guest
    }
}

impl Drop for StopTheWorld<'_> {
    fn drop(&mut self) {
        self.guest.resume();
    }
}
