//! DSM checker `text-hash`: SHA-256 of kernel text and rodata, chunk by chunk, within a
//! budget, with Linux's legitimate run-time patch sites whitelisted.
//!
//! Range: `[_stext, rodata_end)` (text, rodata, `ro_after_init` data, `__jump_table`,
//! `__ex_table`, the KPTI trampoline), read by PA. The page tables after rodata are not
//! hashed. The baseline is taken after `mark_rodata_ro`, so boot-time patching (alternatives,
//! `ftrace_init`'s `mov x9, x30`, jump-label sorting) is already in it.
//!
//! Whitelist. Before hashing, each text word is normalized, so legitimate patching does not
//! change a digest, while any other value at the same place still does:
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
    kprobes: [Kprobe; MAX_KPROBES],
    nkprobes: usize,
    digests: [[u8; 32]; MAX_CHUNKS],
    /// Linear sums of each chunk's normalized words at baseline (see [`Sums`]).
    sums: [Sums; MAX_CHUNKS],
    nchunks: usize,
    /// Chunks already reported, so a change is reported once per chunk.
    reported: [bool; MAX_CHUNKS],
    cursor: usize,
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
        }
    }

    fn kprobe(&self, off: u64) -> Option<usize> {
        self.kprobes[..self.nkprobes]
            .iter()
            .position(|k| k.off as u64 == off)
    }

    /// The canonical form of the text word `w` at `off`; `prev` is the word before it.
    fn normalize(&self, r: &Range, site: Option<&JumpSite>, off: u64, prev: u32, w: u32) -> u32 {
        if w == KPROBE_BRK {
            if let Some(i) = self.kprobe(off) {
                return self.kprobes[i].orig;
            }
        }
        if off == r.ftrace_call && off != 0 {
            // Any tracer in kernel text (`ftrace_stub`, `function_trace_call`, the list
            // function...); the kernel swaps it when tracers come and go.
            if branch_target(off, w, 0x94).is_some_and(|t| t < r.etext) {
                return NOP;
            }
        }
        if prev == MOV_X9_X30 {
            if let Some(t) = branch_target(off, w, 0x94) {
                if t != 0 && r.ftrace.contains(&t) {
                    return NOP;
                }
            }
        }
        if let Some(s) = site {
            if w == NOP || branch_target(off, w, 0x14) == Some(s.target as u64) {
                return NOP;
            }
        }
        w
    }

    /// The digest of one chunk as it is in guest memory, optionally with one word replaced
    /// (the value a trapped write is about to store).
    fn chunk_digest(
        &self,
        guest: &dyn Guest,
        r: &Range,
        chunk: usize,
        patch: Option<(u64, u32)>,
    ) -> Result<ChunkHash, GuestError> {
        let start = (chunk as u64 * CHUNK).max(r.stext);
        let end = (chunk as u64 * CHUNK + CHUNK).min(r.end);
        let mut site = self.sites[..self.nsites].partition_point(|s| (s.code as u64) < start);
        let mut h = Sha256::new();
        let mut buf = [0u8; PAGE_SIZE as usize];
        // The word before `_stext` is not kernel text (see `Range::stext`).
        let mut prev = if start >= 4 && start > r.stext {
            let mut w = [0u8; 4];
            guest.read_phys(r.text_pa + start - 4, &mut w)?;
            u32::from_le_bytes(w)
        } else {
            0
        };
        let mut sums = Sums::default();
        let mut brk = 0;
        let mut off = start;
        while off < end {
            let len = (end - off).min(PAGE_SIZE) as usize;
            let page = &mut buf[..len];
            guest.read_phys(r.text_pa + off, page)?;
            for (i, word) in page.chunks_exact_mut(4).enumerate() {
                let at = off + 4 * i as u64;
                let mut w = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
                if let Some((p, v)) = patch {
                    if p == at {
                        w = v;
                    }
                }
                if at < r.etext {
                    while site < self.nsites && (self.sites[site].code as u64) < at {
                        site += 1;
                    }
                    let s = self.sites[..self.nsites]
                        .get(site)
                        .filter(|s| s.code as u64 == at);
                    let n = self.normalize(r, s, at, prev, w);
                    if n == KPROBE_BRK && brk == 0 {
                        brk = at;
                    }
                    word.copy_from_slice(&n.to_le_bytes());
                }
                let n = u32::from_le_bytes([word[0], word[1], word[2], word[3]]) as u64;
                let index = (at - chunk as u64 * CHUNK) / 4;
                sums.plain = sums.plain.wrapping_add(n);
                sums.weighted = sums.weighted.wrapping_add((index + 1).wrapping_mul(n));
                prev = w;
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
        match self.chunk_digest(guest, r, chunk, Some((now.brk, orig))) {
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

    fn judge(&mut self, guest: &mut dyn Guest, r: &Range, chunk: usize, now: ChunkHash) {
        let d = now.sha;
        if d == self.digests[chunk] || self.kprobe_only(guest, r, chunk, &now) {
            self.reported[chunk] = false;
            return;
        }
        if !self.reported[chunk] {
            self.reported[chunk] = true;
            let off = chunk as u64 * CHUNK;
            let prefix =
                |d: &[u8; 32]| u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
            let what = ["kernel text changed", "kernel rodata changed"];
            let (old, new) = (prefix(&self.digests[chunk]), prefix(&d));
            report(guest, r, off, what, old, new);
        }
    }

    /// Whether storing `new` over `old` at text offset `off` is a patch Linux makes.
    fn legitimate(&self, r: &Range, guest: &dyn Guest, off: u64, old: u32, new: u32) -> bool {
        if new == KPROBE_BRK {
            return self.kprobe(off).is_some() || self.nkprobes < MAX_KPROBES;
        }
        if let Some(i) = self.kprobe(off) {
            return old == KPROBE_BRK && new == self.kprobes[i].orig;
        }
        let mut prev = [0u8; 4];
        if off < 4 || guest.read_phys(r.text_pa + off - 4, &mut prev).is_err() {
            return false;
        }
        let prev = u32::from_le_bytes(prev);
        let i = self.sites[..self.nsites].partition_point(|s| (s.code as u64) < off);
        let site = self.sites[..self.nsites]
            .get(i)
            .filter(|s| s.code as u64 == off);
        self.normalize(r, site, off, prev, old) == self.normalize(r, site, off, prev, new)
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
        self.nkprobes = 0;
        for c in 0..nchunks {
            let h = self.chunk_digest(guest, &r, c, None)?;
            self.digests[c] = h.sha;
            self.sums[c] = h.sums;
        }
        self.nchunks = nchunks;
        self.reported = [false; MAX_CHUNKS];
        self.cursor = 0;
        self.range = Some(r);
        let _ = guest.watch(
            PhysRange::new(r.text_pa + r.stext, r.end - r.stext),
            Access::Write,
        );
        Ok(())
    }

    /// Budget units are bytes hashed; a call hashes whole chunks of [`CHUNK`] bytes.
    fn check(
        &mut self,
        guest: &mut dyn Guest,
        budget: &mut Budget,
    ) -> Result<Progress, CheckError> {
        let r = self.range.ok_or(CheckError::NoBaseline)?;
        let mut cursor = self.cursor;
        let progress = budget.run(&mut cursor, self.nchunks, CHUNK, |c| {
            let d = self.chunk_digest(guest, &r, c, None)?;
            self.judge(guest, &r, c, d);
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
        if !(aligned && self.legitimate(&r, guest, off, old, new)) {
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
        let d = self.chunk_digest(guest, &r, chunk, None)?;
        self.judge(guest, &r, chunk, d);
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
            let h = self.chunk_digest(guest, &r, chunk, Some((off, new)))?;
            self.digests[chunk] = h.sha;
            self.sums[chunk] = h.sums;
        }
        Ok(())
    }
}
