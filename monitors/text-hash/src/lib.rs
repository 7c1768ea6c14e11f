//! DSM checker `text-hash`: SHA-256 of kernel text and rodata, chunk by chunk, within a
//! budget, with Linux's legitimate run-time patch sites whitelisted.
//!
//! Range: `[_stext, rodata_end)` (text, rodata, `ro_after_init` data, `__jump_table`,
//! `__ex_table`, the KPTI trampoline), read by PA. The page tables after rodata are not
//! hashed. The baseline is taken after `mark_rodata_ro`, so boot-time patching (alternatives,
//! `ftrace_init`'s `mov x9, x30`, jump-label sorting) is already in it.
//!
//! Whitelist. Before hashing, the words at Linux's patch sites are normalized, so legitimate
//! patching does not change a digest, while any other value at the same place still does.
//! The sites are listed at baseline (jump labels from `__jump_table`, patchable function
//! entries from the `mov x9, x30` that `ftrace_init` left, `ftrace_call`, kprobes as they
//! are learnt); every other word is hashed as it is, so a pass costs little more than
//! SHA-256 itself:
//! - jump labels: a site from `__jump_table` holding `nop` or `b <its entry's target>`
//!   counts as `nop`;
//! - ftrace: `bl ftrace_caller` / `bl ftrace_regs_caller` right after `mov x9, x30` (a
//!   patchable function entry as `ftrace_init` leaves it) counts as `nop`; so does the
//!   `bl <tracer>` at `ftrace_call` inside the trampoline, for any tracer in kernel text;
//! - kprobes: `brk #4` counts as the instruction it replaced, which the checker learns when
//!   the runtime delivers the trapped write ([`Checker::on_watch`]) or, without one, from
//!   the chunk itself when the `brk` is its only change (see `Sums`);
//!
//! Not whitelisted, on purpose: alternatives (applied before the baseline; module
//! alternatives patch module text), static calls (none on arm64 6.1), BPF (its text pokes in
//! 6.1 only touch BPF programs, outside kernel text).
//!
//! Trapped writes (stage-2 write protection of the range) are judged before the runtime
//! performs them: a write is a legitimate patch if it is an aligned 4-byte store in text whose
//! normalized value equals the normalized old value, or arms/disarms a kprobe. The chunk is
//! then verified and its digest moved to the patched content; anything else is reported.
//!
//! Hashing goes through the guest's digest service ([`dsm_api::digest::Sha256`]): at EL2 the
//! hypervisor compresses with the CPU's SHA-256 instructions, in host tests with `sha2`.
#![no_std]
#![forbid(unsafe_code)]

use dsm_api::digest::Sha256;
use dsm_api::walk::PAGE_SIZE;
use dsm_api::{
    Access, Budget, CheckError, Checker, Finding, Guest, GuestError, PhysRange, Progress,
    WatchEvent,
};

pub const NAME: &str = "text-hash";
/// Bytes per digest; also the smallest useful budget.
pub const CHUNK: u64 = 64 * 1024;
/// Room for 32 MiB of text and rodata.
pub const MAX_CHUNKS: usize = 512;
/// Room for jump-label sites in text (Debian 6.1 has about 7,500).
pub const MAX_JUMP_SITES: usize = 16384;
/// Room for patchable function entries in text (Debian 6.1 has about 40,000).
pub const MAX_FTRACE_SITES: usize = 65536;
/// Kprobes armed at once that the checker can follow.
pub const MAX_KPROBES: usize = 64;
pub const NOP: u32 = 0xd503_201f;
/// `mov x9, x30`: the first word of a patchable function entry after `ftrace_init`.
pub const MOV_X9_X30: u32 = 0xaa1e_03e9;
/// `brk #4` (KPROBES_BRK_IMM).
pub const KPROBE_BRK: u32 = 0xd420_0080;

/// Target offset of a `b` (`op` = 0x14) or `bl` (0x94) at `off`, if `w` is one.
fn branch_target(off: u64, w: u32, op: u32) -> Option<u64> {
    if w >> 26 != op >> 2 {
        return None;
    }
    let imm = (((w << 6) as i32) >> 6) as i64 * 4;
    Some((off as i64).wrapping_add(imm) as u64)
}

/// Reports a finding at image offset `off`, worded by whether it is text or rodata.
fn report(guest: &mut dyn Guest, r: &Range, off: u64, what: [&'static str; 2], old: u64, new: u64) {
    guest.report(Finding {
        checker: NAME,
        what: what[usize::from(off >= r.etext)],
        at: r.text_va + off,
        expected: old,
        found: new,
    });
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
struct JumpSite {
    /// Offsets from `_text`.
    code: u32,
    target: u32,
}

/// Two linear sums of a chunk's normalized words `w_i` (wrapping): `plain = Σ w_i`,
/// `weighted = Σ (i + 1) · w_i`. If exactly one word changed, at a known index `j`, the two
/// deltas give back its old value (`Δweighted = (j + 1) · Δplain`); the SHA-256 of the chunk
/// with that value put back then proves it was the only change. That is how a kprobe armed
/// without a trapped write (no stage-2 watch) is recognised: its `brk` is the changed word.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sums {
    plain: u64,
    weighted: u64,
}

/// What hashing a chunk yields.
#[derive(Debug, Clone, Copy)]
struct ChunkHash {
    sha: [u8; 32],
    sums: Sums,
    /// Offset of the first `brk #4` in text that is not a known kprobe (0: none).
    brk: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Kprobe {
    off: u32,
    orig: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct Range {
    text_pa: u64,
    text_va: u64,
    /// `_stext`: hashing starts here. The head before it (`_text` .. `_stext`) is not
    /// reserved by Linux once it has booted (memblock keeps `_stext` .. `_end`) and is
    /// reused as ordinary memory.
    stext: u64,
    etext: u64,
    end: u64,
    /// Offsets of `ftrace_caller` and `ftrace_regs_caller` (0 when absent).
    ftrace: [u64; 2],
    /// Offset of `ftrace_call` (0 when absent): the call in ftrace's trampoline that
    /// `ftrace_update_ftrace_func` points at the current tracer.
    ftrace_call: u64,
}

pub struct TextHashChecker {
    range: Option<Range>,
    sites: [JumpSite; MAX_JUMP_SITES],
    nsites: usize,
    /// Offsets of the second word of each patchable function entry (the word after
    /// `mov x9, x30` at baseline), sorted: where ftrace may put `bl ftrace_caller`.
    ftrace_sites: [u32; MAX_FTRACE_SITES],
    nftrace: usize,
    kprobes: [Kprobe; MAX_KPROBES],
    nkprobes: usize,
    digests: [[u8; 32]; MAX_CHUNKS],
    /// Linear sums of each chunk's normalized words at baseline (see [`Sums`]).
    sums: [Sums; MAX_CHUNKS],
    nchunks: usize,
    /// Chunks already reported, so a change is reported once per chunk.
    reported: [bool; MAX_CHUNKS],
    cursor: usize,
    /// Whether the range is write-protected; a refused watch (the runtime could not pause
    /// Linux in time) is asked for again at the start of each pass.
    watched: bool,
}

impl Default for TextHashChecker {
    fn default() -> Self {
        Self::new()
    }
}

impl TextHashChecker {
    pub const fn new() -> Self {
        Self {
            range: None,
            sites: [JumpSite { code: 0, target: 0 }; MAX_JUMP_SITES],
            nsites: 0,
            ftrace_sites: [0; MAX_FTRACE_SITES],
            nftrace: 0,
            kprobes: [Kprobe { off: 0, orig: 0 }; MAX_KPROBES],
            nkprobes: 0,
            digests: [[0; 32]; MAX_CHUNKS],
            sums: [Sums {
                plain: 0,
                weighted: 0,
            }; MAX_CHUNKS],
            nchunks: 0,
            reported: [false; MAX_CHUNKS],
            cursor: 0,
            watched: false,
        }
    }

    fn kprobe(&self, off: u64) -> Option<usize> {
        self.kprobes[..self.nkprobes]
            .iter()
            .position(|k| k.off as u64 == off)
    }

    /// The jump-label site at text offset `off`, if there is one.
    fn jump_site(&self, off: u64) -> Option<&JumpSite> {
        let sites = &self.sites[..self.nsites];
        let i = sites.partition_point(|s| (s.code as u64) < off);
        sites.get(i).filter(|s| s.code as u64 == off)
    }

    fn is_ftrace_site(&self, off: u64) -> bool {
        u32::try_from(off)
            .is_ok_and(|o| self.ftrace_sites[..self.nftrace].binary_search(&o).is_ok())
    }

    /// Whether `w` at a patchable function entry's second word is ftrace's call.
    fn ftrace_entry_call(r: &Range, off: u64, w: u32) -> bool {
        branch_target(off, w, 0x94).is_some_and(|t| t != 0 && r.ftrace.contains(&t))
    }

    /// Whether `w` at `ftrace_call` calls a tracer: any function in kernel text
    /// (`ftrace_stub`, `function_trace_call`, the list function...); the kernel swaps it
    /// when tracers come and go.
    fn tracer_call(r: &Range, off: u64, w: u32) -> bool {
        off == r.ftrace_call && off != 0 && branch_target(off, w, 0x94).is_some_and(|t| t < r.etext)
    }

    /// The canonical form of the text word `w` at `off`. Only the offsets of the site lists
    /// (jump labels, patchable entries, `ftrace_call`, known kprobes) have another form, so
    /// hashing normalizes just those ([`Self::normalize_page`]).
    fn normalize(&self, r: &Range, off: u64, w: u32) -> u32 {
        if w == KPROBE_BRK {
            if let Some(i) = self.kprobe(off) {
                return self.kprobes[i].orig;
            }
        }
        if Self::tracer_call(r, off, w) {
            return NOP;
        }
        if self.is_ftrace_site(off) && Self::ftrace_entry_call(r, off, w) {
            return NOP;
        }
        if let Some(s) = self.jump_site(off) {
            if w == NOP || branch_target(off, w, 0x14) == Some(s.target as u64) {
                return NOP;
            }
        }
        w
    }

    /// Normalizes in place the words of `page` (text and rodata from offset `off`) that sit
    /// at a site, with the same result as [`Self::normalize`] on every word. The passes do not
    /// interfere: each changes only words none of the others would change, except kprobes,
    /// which go last so a probed word comes back as it was, unnormalized.
    fn normalize_page(&self, r: &Range, off: u64, page: &mut [u8]) {
        let end = (off + page.len() as u64).min(r.etext);
        if off >= end {
            return;
        }
        let mut fix = |at: u64, f: &dyn Fn(u32) -> Option<u32>| {
            let i = (at - off) as usize;
            // Sites come from guest memory (`__jump_table`): a bad one is skipped, never
            // indexed past the page. Text words are aligned.
            if !at.is_multiple_of(4) || i + 4 > page.len() {
                return;
            }
            let w = u32::from_le_bytes([page[i], page[i + 1], page[i + 2], page[i + 3]]);
            if let Some(n) = f(w) {
                page[i..i + 4].copy_from_slice(&n.to_le_bytes());
            }
        };
        let sites = &self.sites[..self.nsites];
        let first = sites.partition_point(|s| (s.code as u64) < off);
        for s in sites[first..].iter().take_while(|s| (s.code as u64) < end) {
            let at = s.code as u64;
            fix(at, &|w| {
                (w != NOP && branch_target(at, w, 0x14) == Some(s.target as u64)).then_some(NOP)
            });
        }
        let entries = &self.ftrace_sites[..self.nftrace];
        let first = entries.partition_point(|&o| (o as u64) < off);
        for &o in entries[first..].iter().take_while(|&&o| (o as u64) < end) {
            let at = o as u64;
            fix(at, &|w| Self::ftrace_entry_call(r, at, w).then_some(NOP));
        }
        if (off..end).contains(&r.ftrace_call) {
            let at = r.ftrace_call;
            fix(at, &|w| Self::tracer_call(r, at, w).then_some(NOP));
        }
        for k in &self.kprobes[..self.nkprobes] {
            let at = k.off as u64;
            if (off..end).contains(&at) {
                fix(at, &|w| (w == KPROBE_BRK).then_some(k.orig));
            }
        }
    }

    /// The digest of one chunk as it is in guest memory, optionally with one word replaced
    /// (the value a trapped write is about to store). With `detail`, also its linear sums
    /// and first unknown `brk` (see [`Sums`]): a periodic pass needs those only when the
    /// digest has changed, and skipping them keeps a pass close to the cost of SHA-256.
    fn chunk_digest(
        &self,
        guest: &dyn Guest,
        r: &Range,
        chunk: usize,
        patch: Option<(u64, u32)>,
        detail: bool,
    ) -> Result<ChunkHash, GuestError> {
        let base = chunk as u64 * CHUNK;
        let start = base.max(r.stext);
        let end = (base + CHUNK).min(r.end);
        let mut h = Sha256::new();
        let mut buf = [0u8; PAGE_SIZE as usize];
        let mut sums = Sums::default();
        let mut brk = 0;
        let mut off = start;
        while off < end {
            let len = (end - off).min(PAGE_SIZE) as usize;
            let page = &mut buf[..len];
            guest.read_phys(r.text_pa + off, page)?;
            if let Some((p, v)) = patch.filter(|&(p, _)| (off..off + len as u64).contains(&p)) {
                let i = (p - off) as usize;
                page[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
            self.normalize_page(r, off, page);
            if detail {
                for (i, word) in page.chunks_exact(4).enumerate() {
                    let at = off + 4 * i as u64;
                    let n = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
                    if n == KPROBE_BRK && brk == 0 && at < r.etext {
                        brk = at;
                    }
                    let index = (at - base) / 4;
                    sums.plain = sums.plain.wrapping_add(n as u64);
                    sums.weighted = sums
                        .weighted
                        .wrapping_add((index + 1).wrapping_mul(n as u64));
                }
            }
            h.update(guest, page);
            off += len as u64;
        }
        Ok(ChunkHash {
            sha: h.finalize(guest),
            sums,
            brk,
        })
    }

    /// Whether chunk `chunk` differs from its baseline only by one kprobe `brk` (armed
    /// without a trapped write); if so the kprobe is learnt with its original instruction.
    fn kprobe_only(&mut self, guest: &dyn Guest, r: &Range, chunk: usize, now: &ChunkHash) -> bool {
        if now.brk == 0 || self.nkprobes >= MAX_KPROBES {
            return false;
        }
        let base = self.sums[chunk];
        let d_plain = now.sums.plain.wrapping_sub(base.plain);
        let d_weighted = now.sums.weighted.wrapping_sub(base.weighted);
        let index = (now.brk - chunk as u64 * CHUNK) / 4;
        if (index + 1).wrapping_mul(d_plain) != d_weighted {
            return false;
        }
        let Ok(orig) = u32::try_from((KPROBE_BRK as u64).wrapping_sub(d_plain)) else {
            return false;
        };
        match self.chunk_digest(guest, r, chunk, Some((now.brk, orig)), false) {
            Ok(h) if h.sha == self.digests[chunk] => {
                self.kprobes[self.nkprobes] = Kprobe {
                    off: now.brk as u32,
                    orig,
                };
                self.nkprobes += 1;
                true
            }
            _ => false,
        }
    }

    /// Compares chunk `chunk` with its baseline digest; a change other than a lone kprobe
    /// is reported once.
    fn judge(&mut self, guest: &mut dyn Guest, r: &Range, chunk: usize) -> Result<(), GuestError> {
        let d = self.chunk_digest(guest, r, chunk, None, false)?.sha;
        if d == self.digests[chunk] {
            self.reported[chunk] = false;
            return Ok(());
        }
        let now = self.chunk_digest(guest, r, chunk, None, true)?;
        if now.sha == self.digests[chunk] || self.kprobe_only(guest, r, chunk, &now) {
            self.reported[chunk] = false;
            return Ok(());
        }
        if !self.reported[chunk] {
            self.reported[chunk] = true;
            let off = chunk as u64 * CHUNK;
            let prefix =
                |d: &[u8; 32]| u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
            let what = ["kernel text changed", "kernel rodata changed"];
            let (old, new) = (prefix(&self.digests[chunk]), prefix(&now.sha));
            report(guest, r, off, what, old, new);
        }
        Ok(())
    }

    /// Whether storing `new` over `old` at text offset `off` is a patch Linux makes.
    fn legitimate(&self, r: &Range, off: u64, old: u32, new: u32) -> bool {
        if new == KPROBE_BRK {
            return self.kprobe(off).is_some() || self.nkprobes < MAX_KPROBES;
        }
        if let Some(i) = self.kprobe(off) {
            return old == KPROBE_BRK && new == self.kprobes[i].orig;
        }
        self.normalize(r, off, old) == self.normalize(r, off, new)
    }

    /// Finds the patchable function entries: `ftrace_init` has turned the first `nop` of each
    /// into `mov x9, x30` before the baseline, and ftrace patches the word after it.
    fn load_ftrace_sites(&mut self, guest: &dyn Guest, r: &Range) -> Result<(), CheckError> {
        self.nftrace = 0;
        let mut buf = [0u8; PAGE_SIZE as usize];
        let mut prev = 0;
        let mut off = r.stext;
        while off < r.etext {
            let len = (r.etext - off).min(PAGE_SIZE) as usize;
            guest.read_phys(r.text_pa + off, &mut buf[..len])?;
            for (i, word) in buf[..len].chunks_exact(4).enumerate() {
                let w = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
                if prev == MOV_X9_X30 {
                    if self.nftrace == MAX_FTRACE_SITES {
                        return Err(CheckError::Capacity("patchable function entries"));
                    }
                    self.ftrace_sites[self.nftrace] = (off + 4 * i as u64) as u32;
                    self.nftrace += 1;
                }
                prev = w;
            }
            off += len as u64;
        }
        Ok(())
    }

    /// Asks the runtime to trap writes to the range (stage-2 write protection).
    fn watch(&mut self, guest: &mut dyn Guest, r: &Range) {
        let range = PhysRange::new(r.text_pa + r.stext, r.end - r.stext);
        self.watched = guest.watch(range, Access::Write).is_ok();
    }

    fn load_jump_sites(&mut self, guest: &dyn Guest, r: &Range) -> Result<(), CheckError> {
        self.nsites = 0;
        let Some(j) = guest.symbols().jump_table else {
            return Ok(());
        };
        for i in 0..j.count as u64 {
            let e = j.offset + 16 * i;
            let mut b = [0u8; 8];
            guest.read_phys(r.text_pa + e, &mut b)?;
            let rel = |x: &[u8]| i32::from_le_bytes([x[0], x[1], x[2], x[3]]) as i64;
            let code = (e as i64).wrapping_add(rel(&b[..4])) as u64;
            let target = (e as i64 + 4).wrapping_add(rel(&b[4..])) as u64;
            // Sites in init text are gone after boot.
            if code >= r.etext || target >= r.end {
                continue;
            }
            if self.nsites == MAX_JUMP_SITES {
                return Err(CheckError::Capacity("jump-label sites"));
            }
            self.sites[self.nsites] = JumpSite {
                code: code as u32,
                target: target as u32,
            };
            self.nsites += 1;
        }
        self.sites[..self.nsites].sort_unstable();
        Ok(())
    }
}

impl Checker for TextHashChecker {
    fn name(&self) -> &'static str {
        NAME
    }

    fn baseline(&mut self, guest: &mut dyn Guest) -> Result<(), CheckError> {
        let k = guest.kernel()?;
        let syms = guest.symbols();
        let l = syms.layout;
        let r = Range {
            text_pa: k.text_pa,
            text_va: k.text_va,
            stext: l.stext,
            etext: l.etext,
            end: l.rodata_end,
            ftrace: [
                syms.offset("ftrace_caller").unwrap_or(0),
                syms.offset("ftrace_regs_caller").unwrap_or(0),
            ],
            ftrace_call: syms.offset("ftrace_call").unwrap_or(0),
        };
        let nchunks = r.end.div_ceil(CHUNK) as usize;
        if nchunks > MAX_CHUNKS {
            return Err(CheckError::Capacity("text and rodata chunks"));
        }
        self.range = None;
        self.load_jump_sites(guest, &r)?;
        self.load_ftrace_sites(guest, &r)?;
        self.nkprobes = 0;
        for c in 0..nchunks {
            let h = self.chunk_digest(guest, &r, c, None, true)?;
            self.digests[c] = h.sha;
            self.sums[c] = h.sums;
        }
        self.nchunks = nchunks;
        self.reported = [false; MAX_CHUNKS];
        self.cursor = 0;
        self.range = Some(r);
        self.watched = false;
        self.watch(guest, &r);
        Ok(())
    }

    /// Budget units are bytes hashed; a call hashes whole chunks of [`CHUNK`] bytes.
    fn check(
        &mut self,
        guest: &mut dyn Guest,
        budget: &mut Budget,
    ) -> Result<Progress, CheckError> {
        let r = self.range.ok_or(CheckError::NoBaseline)?;
        // Once a pass: a refused watch costs the runtime a failed pause of Linux.
        if !self.watched && self.cursor == 0 {
            self.watch(guest, &r);
        }
        let mut cursor = self.cursor;
        let progress = budget.run(&mut cursor, self.nchunks, CHUNK, |c| {
            self.judge(guest, &r, c)?;
            Ok::<(), CheckError>(())
        });
        self.cursor = cursor;
        if progress? == Progress::Done {
            guest.heartbeat(NAME);
        }
        progress
    }

    fn on_watch(&mut self, guest: &mut dyn Guest, event: &WatchEvent) -> Result<(), CheckError> {
        let r = self.range.ok_or(CheckError::NoBaseline)?;
        let Some(off) = event
            .pa
            .checked_sub(r.text_pa)
            .filter(|&o| o >= r.stext && o < r.end)
        else {
            return Ok(());
        };
        if event.access != Access::Write {
            return Ok(());
        }
        let mut old = [0u8; 4];
        guest.read_phys(event.pa & !3, &mut old)?;
        let old = u32::from_le_bytes(old);
        let new = event.value as u32;
        let aligned = event.len == 4 && off % 4 == 0 && off < r.etext;
        if !(aligned && self.legitimate(&r, off, old, new)) {
            let what = [
                "illegitimate write to kernel text",
                "write to kernel rodata",
            ];
            report(guest, &r, off, what, old as u64, event.value);
            return Ok(());
        }
        // Not a kprobe: the normalized word is unchanged, and so are the digest and sums.
        // Nothing to rehash (enabling ftrace traps on every one of ~40,000 call sites).
        if new != KPROBE_BRK && self.kprobe(off).is_none() {
            return Ok(());
        }
        // The chunk must match before the patch is taken into its digest.
        let chunk = (off / CHUNK) as usize;
        self.judge(guest, &r, chunk)?;
        if new == KPROBE_BRK && self.kprobe(off).is_none() {
            self.kprobes[self.nkprobes] = Kprobe {
                off: off as u32,
                orig: old,
            };
            self.nkprobes += 1;
        } else if let Some(i) = self.kprobe(off).filter(|_| new != KPROBE_BRK) {
            self.kprobes[i] = self.kprobes[self.nkprobes - 1];
            self.nkprobes -= 1;
        }
        if !self.reported[chunk] {
            let h = self.chunk_digest(guest, &r, chunk, Some((off, new)), true)?;
            self.digests[chunk] = h.sha;
            self.sums[chunk] = h.sums;
        }
        Ok(())
    }
}
