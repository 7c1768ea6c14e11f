//! An in-memory Linux guest for host tests (feature `test-support`): the real Debian `Image`
//! loaded at a chosen PA, relocated for a chosen KASLR slide as the kernel does at boot, and
//! mapped by synthetic stage-1 tables the way Linux maps itself (the image at
//! `KIMAGE_VADDR + slide`, a linear map of all RAM, the KPTI trampoline alias), so checkers run
//! against real kernel bytes.
//!
//! The `Image` comes from `$SPUMONE_LINUX_IMAGE` (set by `cargo xtask test`) or from where
//! `cargo xtask setup` unpacks it; when it is missing, tests fail and say to run setup.

use std::env;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::vec::Vec;

use crate::guest::{Access, Finding, Guest, GuestError, KernelInfo, PhysRange, SysReg, WatchId};
use crate::image::{self, ParsedImage};
use crate::kaslr::{self, KaslrError};
use crate::symbols::KernelSymbols;
use crate::walk::{WalkError, DESC_AF, DESC_AP_RO, DESC_PXN, DESC_UXN, PAGE_SIZE};
use crate::KIMAGE_VADDR;

/// Environment variable naming the kernel `Image` to test against.
pub const IMAGE_ENV: &str = "SPUMONE_LINUX_IMAGE";
/// Start of Linux's linear map with 48-bit VAs (`PAGE_OFFSET`).
pub const PAGE_OFFSET: u64 = 0xffff_0000_0000_0000;
/// Where the test guest maps the KPTI trampoline page (Linux uses a fixmap slot).
pub const TRAMP_ALIAS_VA: u64 = 0xffff_ffff_fe60_0000;
/// `SCTLR_EL1` as Linux 6.1 leaves it on a CPU without PAN, ptrauth or MTE (Cortex-A72):
/// M, C, SA, SA0, SED, I, DZE, UCT, nTWE, IESB, SPAN, UCI and the RES1 bits.
pub const LINUX_SCTLR: u64 = 0x34f4_d91d;
/// `TCR_EL1` as Linux 6.1 sets it: 48-bit T0SZ/T1SZ, 4K granules, write-back walks, inner
/// shareable, A1 (ASID from TTBR1), 16-bit ASIDs, TBI0, 48-bit IPS.
pub const LINUX_TCR: u64 = 0x0000_0035_b550_3510;
/// `MAIR_EL1` as Linux sets it (device nGnRnE, nGnRE, normal NC, normal WB, normal tagged).
pub const LINUX_MAIR: u64 = 0x0000_00f0_ff44_0400;
const SZ_2M: u64 = 2 << 20;
/// Normal memory (MAIR index 3), inner shareable, accessed.
const NORMAL: u64 = (3 << 2) | (3 << 8) | DESC_AF;

/// The real `Image`, parsed once per test process.
pub struct RealImage {
    pub bytes: Vec<u8>,
    pub parsed: ParsedImage,
    pub symbols: KernelSymbols,
}

/// Where the `Image` is expected.
pub fn image_path() -> PathBuf {
    if let Some(p) = env::var_os(IMAGE_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = match env::var_os("CARGO_TARGET_DIR").filter(|p| !p.is_empty()) {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    };
    target
        .join("cache")
        .join("debian")
        .join("linux")
        .join("Image")
}

/// The real kernel `Image`. Panics (failing the test) if it is missing or cannot be parsed.
pub fn real_image() -> &'static RealImage {
    static IMAGE: OnceLock<RealImage> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let path = image_path();
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "the Debian kernel Image is missing ({}: {e}); run `cargo xtask setup` first \
                 (or point {IMAGE_ENV} at an arm64 Image)",
                path.display()
            )
        });
        let parsed = image::parse(&bytes)
            .unwrap_or_else(|e| panic!("cannot analyse {}: {e}", path.display()));
        let symbols = parsed.kernel_symbols(None);
        RealImage {
            bytes,
            parsed,
            symbols,
        }
    })
}

/// Where and how the test guest is laid out.
#[derive(Debug, Clone, Copy)]
pub struct LinuxConfig {
    /// PA of `_text` (2M-aligned, as the boot protocol asks).
    pub text_pa: u64,
    /// KASLR slide (2M-aligned).
    pub slide: u64,
    pub vcpus: usize,
}

impl Default for LinuxConfig {
    fn default() -> Self {
        Self {
            text_pa: 0x4820_0000,
            slide: 0x1c3a_a020_0000,
            vcpus: 3,
        }
    }
}

/// Register slots, in [`SysReg`] order.
fn reg_index(r: SysReg) -> usize {
    match r {
        SysReg::Ttbr0El1 => 0,
        SysReg::Ttbr1El1 => 1,
        SysReg::TcrEl1 => 2,
        SysReg::SctlrEl1 => 3,
        SysReg::VbarEl1 => 4,
        SysReg::MairEl1 => 5,
        SysReg::Pc => 6,
        SysReg::Pstate => 7,
    }
}

/// An in-memory guest implementing [`Guest`]; findings, heartbeats, watches and pauses are
/// recorded for tests to inspect.
pub struct MemGuest {
    ram: Vec<u8>,
    ranges: [PhysRange; 1],
    regs: Vec<[u64; 8]>,
    kernel: Option<KernelInfo>,
    symbols: KernelSymbols,
    next_table: u64,
    next_object: u64,
    pub config: LinuxConfig,
    pub findings: Vec<Finding>,
    pub heartbeats: Vec<&'static str>,
    pub watches: Vec<(WatchId, PhysRange, Access)>,
    /// How many of the next `watch` calls fail, as they do at EL2 when the other vCPUs
    /// cannot be paused in time.
    pub refuse_watches: u32,
    pub paused: bool,
    pub pauses: u32,
}

impl MemGuest {
    /// The real `Image` under the default layout.
    pub fn linux() -> Self {
        Self::with_config(LinuxConfig::default())
    }

    /// The real `Image` under `cfg`, with the slide found from the tables as the hypervisor
    /// would (so [`Guest::kernel`] works).
    pub fn with_config(cfg: LinuxConfig) -> Self {
        let img = real_image();
        let mut g = Self::unbooted(cfg, img);
        let info = g
            .discover_kernel()
            .unwrap_or_else(|e| panic!("test guest: slide not found: {e}"));
        g.kernel = Some(info);
        g
    }

    fn unbooted(cfg: LinuxConfig, img: &'static RealImage) -> Self {
        let layout = img.parsed.layout;
        let image_span = layout.image_size.next_multiple_of(SZ_2M);
        // 2M of RAM below the kernel, the image, then 4M for page tables.
        let ram_base = cfg.text_pa - SZ_2M;
        let ram_len = SZ_2M + image_span + 2 * SZ_2M;
        let mut ram = vec![0u8; ram_len as usize];
        let at = SZ_2M as usize;
        ram[at..at + img.bytes.len()].copy_from_slice(&img.bytes);
        img.parsed
            .relocate(&mut ram[at..at + layout.image_size as usize], cfg.slide);

        let mut g = MemGuest {
            ram,
            ranges: [PhysRange::new(ram_base, ram_len)],
            regs: Vec::new(),
            kernel: None,
            symbols: img.symbols,
            next_table: ram_base + SZ_2M + image_span,
            next_object: ram_base,
            config: cfg,
            findings: Vec::new(),
            heartbeats: Vec::new(),
            watches: Vec::new(),
            refuse_watches: 0,
            paused: false,
            pauses: 0,
        };
        let ttbr0_root = g.alloc_table();
        let root = g.alloc_table();
        let text_va = KIMAGE_VADDR + cfg.slide;
        let text = NORMAL | DESC_AP_RO | DESC_UXN;
        let ro = NORMAL | DESC_AP_RO | DESC_UXN | DESC_PXN;
        let rw = NORMAL | DESC_UXN | DESC_PXN;
        // Text: 2M blocks where whole blocks fit, pages for the tail.
        let blocks = layout.etext / SZ_2M * SZ_2M;
        g.map(root, text_va, cfg.text_pa, blocks, 2, text);
        g.map(
            root,
            text_va + blocks,
            cfg.text_pa + blocks,
            layout.etext - blocks,
            3,
            text,
        );
        let ro_len = layout.init_begin - layout.etext;
        g.map(
            root,
            text_va + layout.etext,
            cfg.text_pa + layout.etext,
            ro_len,
            3,
            ro,
        );
        let rest = layout.image_size.next_multiple_of(PAGE_SIZE) - layout.init_begin;
        let init = layout.init_begin;
        g.map(root, text_va + init, cfg.text_pa + init, rest, 3, rw);
        // The linear map of all RAM, below KIMAGE_VADDR.
        g.map(root, PAGE_OFFSET, ram_base, ram_len, 2, rw);
        if let Some(t) = img.parsed.tramp_vectors {
            let page = t & !(PAGE_SIZE - 1);
            g.map(
                root,
                TRAMP_ALIAS_VA,
                cfg.text_pa + page,
                2 * PAGE_SIZE,
                3,
                text,
            );
        }
        let vectors = img.symbols.offset("vectors").unwrap_or(0);
        for _ in 0..cfg.vcpus {
            g.regs.push([
                ttbr0_root,
                // ASID 1 in TTBR1 (TCR.A1): the walker must ignore it.
                root | (1 << 48),
                LINUX_TCR,
                LINUX_SCTLR,
                text_va + vectors,
                LINUX_MAIR,
                text_va + layout.stext,
                0x3c5, // EL1h, interrupts masked
            ]);
        }
        g
    }

    /// Finds the slide from vCPU 0's TTBR1, as the hypervisor does.
    pub fn discover_kernel(&self) -> Result<KernelInfo, KaslrError> {
        let l = self.symbols.layout;
        let regs = self.stage1(0).map_err(|_| KaslrError::NotFound)?;
        kaslr::find_kernel(
            &regs,
            self.config.text_pa,
            l.image_size,
            &[l.stext, l.etext - PAGE_SIZE],
            &mut |pa| {
                self.read_u64_phys(pa)
                    .map_err(|_| WalkError::OutsideRam { pa })
            },
        )
    }

    fn offset(&self, pa: u64, len: u64) -> Result<usize, GuestError> {
        if self.ranges[0].contains_range(pa, len) {
            Ok((pa - self.ranges[0].start) as usize)
        } else {
            Err(GuestError::OutsideRam { pa, len })
        }
    }

    /// A zeroed page for a table.
    pub fn alloc_table(&mut self) -> u64 {
        let pa = self.next_table;
        self.next_table += PAGE_SIZE;
        assert!(
            self.ranges[0].contains_range(pa, PAGE_SIZE),
            "test guest: out of page-table space"
        );
        pa
    }

    /// Allocates `len` zeroed bytes (16-byte aligned) in the free RAM below the kernel, as
    /// the slab would for a kernel object; returns its PA and its linear-map VA.
    pub fn alloc_object(&mut self, len: u64) -> (u64, u64) {
        let pa = self.next_object;
        self.next_object += len.next_multiple_of(16);
        assert!(
            self.next_object <= self.config.text_pa,
            "test guest: out of object space"
        );
        (pa, self.linear_va(pa))
    }

    /// The linear-map VA of a PA in RAM.
    pub fn linear_va(&self, pa: u64) -> u64 {
        PAGE_OFFSET + (pa - self.ranges[0].start)
    }

    /// The PA of a kernel VA, through vCPU 0's tables.
    pub fn kva_pa(&self, va: u64) -> u64 {
        self.translate(0, va).expect("test guest: VA mapped").pa
    }

    pub fn read_u64_kva(&self, va: u64) -> u64 {
        self.read_u64_phys(self.kva_pa(va))
            .expect("test guest: in RAM")
    }

    pub fn write_u64_kva(&mut self, va: u64, v: u64) {
        let pa = self.kva_pa(va);
        self.write_u64_phys(pa, v).expect("test guest: in RAM");
    }

    pub fn write_kva(&mut self, va: u64, data: &[u8]) {
        let pa = self.kva_pa(va);
        self.write_phys(pa, data).expect("test guest: in RAM");
    }

    /// Makes the `list_head` at `head` an empty list (`next` at 0, `prev` at 8, as in
    /// every Linux build).
    pub fn list_init(&mut self, head: u64) {
        self.write_u64_kva(head, head);
        self.write_u64_kva(head + 8, head);
    }

    /// Links the `list_head` at `node` in before `head`, as `list_add_tail` does.
    pub fn list_add_tail(&mut self, head: u64, node: u64) {
        let prev = self.read_u64_kva(head + 8);
        self.write_u64_kva(node, head);
        self.write_u64_kva(node + 8, prev);
        self.write_u64_kva(prev, node);
        self.write_u64_kva(head + 8, node);
    }

    /// Unlinks the `list_head` at `node` consistently, as `list_del` does (what a
    /// list-hiding rootkit does).
    pub fn list_del(&mut self, node: u64) {
        let next = self.read_u64_kva(node);
        let prev = self.read_u64_kva(node + 8);
        self.write_u64_kva(prev, next);
        self.write_u64_kva(next + 8, prev);
    }

    /// Maps `[va, va + len)` to `pa` with leaves at `leaf_level` (2: 2M blocks, 3: pages).
    pub fn map(&mut self, root: u64, va: u64, pa: u64, len: u64, leaf_level: u8, attrs: u64) {
        let size = if leaf_level == 2 { SZ_2M } else { PAGE_SIZE };
        let mut off = 0;
        while off < len {
            let (v, p) = (va + off, pa + off);
            let mut table = root;
            for level in 0..leaf_level {
                let shift = 39 - 9 * level as u32;
                let slot = table + ((v >> shift) & 0x1ff) * 8;
                let d = self.u64_at(slot);
                table = if d & 3 == 3 {
                    d & 0x0000_ffff_ffff_f000
                } else {
                    let t = self.alloc_table();
                    self.put_u64(slot, t | 3);
                    t
                };
            }
            let shift = 39 - 9 * leaf_level as u32;
            let kind = if leaf_level == 3 { 3 } else { 1 };
            self.put_u64(table + ((v >> shift) & 0x1ff) * 8, p | attrs | kind);
            off += size;
        }
    }

    /// Unmaps the 4K pages `[va, va + len)` of the kernel's TTBR1 table (what `free_initmem`
    /// does to the init sections); a page inside a block is left alone.
    pub fn unmap_kernel_pages(&mut self, va: u64, len: u64) {
        let root = self.regs[0][1] & 0x0000_ffff_ffff_f000;
        let mut off = 0;
        while off < len {
            let v = va + off;
            let mut table = root;
            let mut leaf = None;
            for level in 0..4u32 {
                let slot = table + ((v >> (39 - 9 * level)) & 0x1ff) * 8;
                let d = self.u64_at(slot);
                if level == 3 {
                    leaf = Some(slot);
                } else if d & 3 == 3 {
                    table = d & 0x0000_ffff_ffff_f000;
                    continue;
                }
                break;
            }
            if let Some(slot) = leaf {
                self.put_u64(slot, 0);
            }
            off += PAGE_SIZE;
        }
    }

    fn u64_at(&self, pa: u64) -> u64 {
        self.read_u64_phys(pa).expect("test guest: table in RAM")
    }

    fn put_u64(&mut self, pa: u64, v: u64) {
        self.write_phys(pa, &v.to_le_bytes())
            .expect("test guest: table in RAM");
    }

    /// Writes guest physical memory (what an attacker with a kernel write primitive does).
    pub fn write_phys(&mut self, pa: u64, data: &[u8]) -> Result<(), GuestError> {
        let at = self.offset(pa, data.len() as u64)?;
        self.ram[at..at + data.len()].copy_from_slice(data);
        Ok(())
    }

    pub fn write_u64_phys(&mut self, pa: u64, v: u64) -> Result<(), GuestError> {
        self.write_phys(pa, &v.to_le_bytes())
    }

    /// Sets a vCPU register.
    pub fn set_sysreg(&mut self, vcpu: usize, reg: SysReg, v: u64) {
        self.regs[vcpu][reg_index(reg)] = v;
    }

    /// The PA of a kernel symbol (a test convenience).
    pub fn symbol_pa(&self, name: &str) -> Option<u64> {
        Some(self.config.text_pa + self.symbols.offset(name)?)
    }
}

impl Guest for MemGuest {
    fn ram(&self) -> &[PhysRange] {
        &self.ranges
    }

    fn read_phys(&self, pa: u64, buf: &mut [u8]) -> Result<(), GuestError> {
        let at = self.offset(pa, buf.len() as u64)?;
        buf.copy_from_slice(&self.ram[at..at + buf.len()]);
        Ok(())
    }

    fn vcpus(&self) -> usize {
        self.regs.len()
    }

    fn sysreg(&self, vcpu: usize, reg: SysReg) -> Result<u64, GuestError> {
        self.regs
            .get(vcpu)
            .map(|r| r[reg_index(reg)])
            .ok_or(GuestError::NoSuchVcpu(vcpu))
    }

    fn kernel(&self) -> Result<KernelInfo, GuestError> {
        self.kernel.ok_or(GuestError::KernelUnknown)
    }

    fn symbols(&self) -> &KernelSymbols {
        &self.symbols
    }

    fn pause(&mut self) -> Result<(), GuestError> {
        if self.paused {
            return Err(GuestError::PauseFailed);
        }
        self.paused = true;
        self.pauses += 1;
        Ok(())
    }

    fn resume(&mut self) {
        self.paused = false;
    }

    fn watch(&mut self, range: PhysRange, access: Access) -> Result<WatchId, GuestError> {
        if !self.ranges[0].contains_range(range.start, range.len) {
            return Err(GuestError::WatchUnavailable);
        }
        if self.refuse_watches > 0 {
            self.refuse_watches -= 1;
            return Err(GuestError::WatchUnavailable);
        }
        let id = WatchId(self.watches.len() as u32);
        self.watches.push((id, range, access));
        Ok(id)
    }

    fn unwatch(&mut self, id: WatchId) {
        self.watches.retain(|w| w.0 != id);
    }

    fn report(&mut self, finding: Finding) {
        self.findings.push(finding);
    }

    fn heartbeat(&mut self, checker: &'static str) {
        self.heartbeats.push(checker);
    }
}
