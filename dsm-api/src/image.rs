//! Host-side analysis of an arm64 Linux `Image` (feature `std`): its header, its relocation
//! table, its own kallsyms tables and, from those, the facts checkers need. All of it is found
//! by content, so no `System.map` or debug package is needed.
//!
//! The `Image` is relocatable and was linked with `--no-apply-dynamic-relocs`: a pointer such
//! as a `sys_call_table` entry or `kallsyms_relative_base` is zero in the file and only its
//! `R_AARCH64_RELATIVE` record holds the link-time value. The kernel applies those records at
//! boot (with the KASLR slide); [`ParsedImage::relocate`] does the same for test guests.

use std::collections::HashSet;
use std::fmt;
use std::string::String;
use std::vec::Vec;

use crate::symbols::{JumpTable, KernelSymbols, Layout, Symbol, SyscallTable};
use crate::KIMAGE_VADDR;

const R_AARCH64_RELATIVE: u64 = 0x403;
const HEADER_MAGIC: &[u8; 4] = b"ARM\x64";
/// `msr tpidrro_el0, x30`: the first instruction of each KPTI trampoline vector entry.
const MSR_TPIDRRO_X30: u32 = 0xd51b_d07e;
/// `nop`.
pub const NOP: u32 = 0xd503_201f;
/// Fewest consecutive entries accepted as `__jump_table`.
const MIN_JUMP_ENTRIES: usize = 64;
/// Fewest consecutive `__arm64_sys_*` pointers accepted as the syscall table.
const MIN_SYSCALLS: usize = 256;

/// Why an `Image` could not be analysed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageError {
    TooShort,
    /// No `ARM\x64` magic at offset 0x38.
    BadMagic,
    NoRelocations,
    /// A kallsyms table was not found; the string says which.
    NoKallsyms(&'static str),
    MissingSymbol(&'static str),
    /// No unique run of `__arm64_sys_*` pointers.
    NoSyscallTable,
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::TooShort => write!(f, "file too short for an arm64 Image"),
            ImageError::BadMagic => write!(f, "no arm64 Image magic"),
            ImageError::NoRelocations => write!(f, "no R_AARCH64_RELATIVE table found"),
            ImageError::NoKallsyms(what) => write!(f, "kallsyms: {what} not found"),
            ImageError::MissingSymbol(s) => write!(f, "symbol {s} not in kallsyms"),
            ImageError::NoSyscallTable => write!(f, "sys_call_table not found by content"),
        }
    }
}

impl std::error::Error for ImageError {}

/// One `R_AARCH64_RELATIVE` record: at `offset` (from `_text`) the kernel stores
/// `addend + slide`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reloc {
    pub offset: u64,
    pub addend: u64,
}

/// What the analysis found.
#[derive(Debug, Clone)]
pub struct ParsedImage {
    /// Link-time VA of `_text`.
    pub link_base: u64,
    pub image_size: u64,
    /// Sorted by offset.
    pub relocs: Vec<Reloc>,
    /// Every kallsyms entry in table order: (type letter, name, offset from `_text`).
    pub kallsyms: Vec<(char, String, u64)>,
    pub layout: Layout,
    /// (offset of the table, offsets of its targets).
    pub sys_call_table: (u64, Vec<u64>),
    pub tramp_vectors: Option<u64>,
    pub jump_table: Option<JumpTable>,
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// Parses an arm64 `Image`.
pub fn parse(img: &[u8]) -> Result<ParsedImage, ImageError> {
    if img.len() < 0x40 {
        return Err(ImageError::TooShort);
    }
    if &img[0x38..0x3c] != HEADER_MAGIC {
        return Err(ImageError::BadMagic);
    }
    let text_offset = u64_at(img, 8).ok_or(ImageError::TooShort)?;
    let image_size = u64_at(img, 16).ok_or(ImageError::TooShort)?;
    let link_base = KIMAGE_VADDR + text_offset;
    let relocs = find_relocs(img, link_base, image_size)?;
    let kallsyms = find_kallsyms(img, link_base, image_size, &relocs)?;

    let sym = |name: &'static str| {
        kallsyms
            .iter()
            .find(|(_, n, _)| n == name)
            .map(|(_, _, o)| *o)
            .ok_or(ImageError::MissingSymbol(name))
    };
    let stext = sym("_stext")?;
    let etext = sym("_etext")?;
    let init_begin = sym("__init_begin")?;
    let layout = Layout {
        stext,
        etext,
        rodata_end: rodata_end(img, etext, init_begin),
        init_begin,
        image_size,
    };
    let sys_call_table = find_syscall_table(&relocs, &kallsyms, link_base)?;
    let tramp_vectors = find_tramp_vectors(img, stext, layout.rodata_end);
    let jump_table = find_jump_table(img, &layout);
    Ok(ParsedImage {
        link_base,
        image_size,
        relocs,
        kallsyms,
        layout,
        sys_call_table,
        tramp_vectors,
        jump_table,
    })
}

fn is_rela(img: &[u8], p: usize, link_base: u64, size: u64) -> bool {
    let in_image = |v: u64| v.wrapping_sub(link_base) < size;
    matches!(
        (u64_at(img, p), u64_at(img, p + 8), u64_at(img, p + 16)),
        (Some(o), Some(R_AARCH64_RELATIVE), Some(a)) if in_image(o) && in_image(a)
    )
}

/// The longest run of `R_AARCH64_RELATIVE` records (24 bytes each) whose place and value
/// both lie inside the image.
fn find_relocs(img: &[u8], link_base: u64, size: u64) -> Result<Vec<Reloc>, ImageError> {
    let mut best = (0usize, 0usize);
    let mut p = 0;
    while p + 24 <= img.len() {
        if is_rela(img, p, link_base, size) {
            let start = p;
            while is_rela(img, p, link_base, size) {
                p += 24;
            }
            let n = (p - start) / 24;
            if n > best.1 {
                best = (start, n);
            }
        } else {
            p += 8;
        }
    }
    if best.1 < 16 {
        return Err(ImageError::NoRelocations);
    }
    let mut relocs: Vec<Reloc> = (0..best.1)
        .map(|i| {
            let p = best.0 + i * 24;
            Reloc {
                offset: u64_at(img, p).unwrap_or(0) - link_base,
                addend: u64_at(img, p + 16).unwrap_or(0),
            }
        })
        .collect();
    relocs.sort_by_key(|r| r.offset);
    Ok(relocs)
}

impl ParsedImage {
    /// The link-time value of the 64-bit word at `offset`: its relocation's addend if it has
    /// one, else the bytes in the file.
    pub fn link_value(&self, img: &[u8], offset: u64) -> Option<u64> {
        link_value(&self.relocs, img, offset)
    }

    /// Applies the relocations to a copy of the image as the kernel does at boot for `slide`.
    pub fn relocate(&self, image: &mut [u8], slide: u64) {
        for r in &self.relocs {
            let at = r.offset as usize;
            if let Some(word) = image.get_mut(at..at + 8) {
                word.copy_from_slice(&r.addend.wrapping_add(slide).to_le_bytes());
            }
        }
    }

    /// Offset from `_text` of a kallsyms symbol (the first of that name).
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.kallsyms
            .iter()
            .find(|(_, n, _)| n == name)
            .map(|(_, _, o)| *o)
    }

    /// The facts as a [`KernelSymbols`] holding every kallsyms name (or only `names`, if
    /// given). The tables are leaked: this is for tests and tools that build it once.
    pub fn kernel_symbols(&self, names: Option<&[&str]>) -> KernelSymbols {
        let mut syms: Vec<Symbol> = Vec::new();
        let mut seen = HashSet::new();
        // `_text` precedes `_stext`, so kallsyms leaves it out; it is the Image's first byte.
        if names.is_none_or(|want| want.contains(&"_text")) {
            seen.insert("_text");
            syms.push(Symbol {
                name: "_text",
                offset: 0,
            });
        }
        for (_, n, o) in &self.kallsyms {
            if names.is_some_and(|want| !want.contains(&n.as_str())) {
                continue;
            }
            if seen.insert(n.as_str()) {
                syms.push(Symbol {
                    name: Box::leak(n.clone().into_boxed_str()),
                    offset: *o,
                });
            }
        }
        syms.sort_by(|a, b| a.name.cmp(b.name));
        let entries: &'static [u64] = Box::leak(self.sys_call_table.1.clone().into_boxed_slice());
        KernelSymbols {
            symbols: Box::leak(syms.into_boxed_slice()),
            layout: self.layout,
            sys_call_table: Some(SyscallTable {
                offset: self.sys_call_table.0,
                entries,
            }),
            tramp_vectors: self.tramp_vectors,
            jump_table: self.jump_table,
        }
    }

    /// Rust source of a `pub static <name>: dsm_api::KernelSymbols` holding `names`, the
    /// layout, the syscall table and the trampoline vectors: how the build-time facts reach
    /// the firmware.
    pub fn render_rust(&self, static_name: &str, names: &[&str]) -> String {
        use std::fmt::Write;
        let k = self.kernel_symbols(Some(names));
        let mut s = String::new();
        let _ = writeln!(
            s,
            "// Generated from the kernel Image by dsm_api::image; do not edit."
        );
        let _ = writeln!(
            s,
            "pub static {static_name}: dsm_api::KernelSymbols = dsm_api::KernelSymbols {{"
        );
        let _ = writeln!(s, "    symbols: &[");
        for sym in k.symbols {
            let _ = writeln!(
                s,
                "        dsm_api::symbols::Symbol {{ name: {:?}, offset: {:#x} }},",
                sym.name, sym.offset
            );
        }
        let _ = writeln!(s, "    ],");
        let l = k.layout;
        let _ = writeln!(
            s,
            "    layout: dsm_api::symbols::Layout {{ stext: {:#x}, etext: {:#x}, rodata_end: {:#x}, init_begin: {:#x}, image_size: {:#x} }},",
            l.stext, l.etext, l.rodata_end, l.init_begin, l.image_size
        );
        let _ = write!(
            s,
            "    sys_call_table: Some(dsm_api::symbols::SyscallTable {{ offset: {:#x}, entries: &[",
            self.sys_call_table.0
        );
        for (i, e) in self.sys_call_table.1.iter().enumerate() {
            if i % 8 == 0 {
                let _ = write!(s, "\n       ");
            }
            let _ = write!(s, " {e:#x},");
        }
        let _ = writeln!(s, "\n    ] }}),");
        let _ = writeln!(s, "    tramp_vectors: {:?},", self.tramp_vectors);
        match self.jump_table {
            Some(j) => {
                let _ = writeln!(
                    s,
                    "    jump_table: Some(dsm_api::symbols::JumpTable {{ offset: {:#x}, count: {} }}),",
                    j.offset, j.count
                );
            }
            None => {
                let _ = writeln!(s, "    jump_table: None,");
            }
        }
        let _ = writeln!(s, "}};");
        s
    }
}

fn link_value(relocs: &[Reloc], img: &[u8], offset: u64) -> Option<u64> {
    match relocs.binary_search_by_key(&offset, |r| r.offset) {
        Ok(i) => Some(relocs[i].addend),
        Err(_) => u64_at(img, usize::try_from(offset).ok()?),
    }
}

/// Finds `kallsyms_token_table` and `kallsyms_token_index`: 256 increasing `u16` offsets, the
/// first 0, each pointing just after the previous token's NUL in the table right before.
fn find_tokens(img: &[u8]) -> Option<(usize, [u16; 256])> {
    let mut p = 0;
    while p + 512 <= img.len() {
        if img[p] != 0 || img[p + 1] != 0 {
            p += 8;
            continue;
        }
        let mut idx = [0u16; 256];
        let mut ok = true;
        for i in 0..256 {
            idx[i] = u16_at(img, p + 2 * i)?;
            if i > 0 && !(2..=256).contains(&idx[i].wrapping_sub(idx[i - 1])) {
                ok = false;
                break;
            }
        }
        if ok {
            // The table ends (plus alignment padding) right before the index.
            let last = idx[255] as usize;
            for len in last + 2..last + 2 + 256 + 8 {
                let Some(tt) = p.checked_sub(len) else { break };
                let consistent = (1..256).all(|i| {
                    let a = tt + idx[i - 1] as usize;
                    let b = tt + idx[i] as usize - 1;
                    img[b] == 0 && !img[a..b].contains(&0)
                });
                if consistent {
                    return Some((tt, idx));
                }
            }
        }
        p += 8;
    }
    None
}

/// Reads one compressed name's length (one byte, or two for names of 128+ tokens).
fn name_len(img: &[u8], q: usize) -> Option<(usize, usize)> {
    let b0 = *img.get(q)? as usize;
    if b0 & 0x80 == 0 {
        Some((b0, 1))
    } else {
        Some(((b0 & 0x7f) | ((*img.get(q + 1)? as usize) << 7), 2))
    }
}

/// Walks `n` names from `q`; returns where they end and where each 256th one starts.
fn walk_names(img: &[u8], q: usize, n: usize, limit: usize) -> Option<(usize, Vec<usize>)> {
    let mut r = q;
    let mut starts = Vec::with_capacity(n / 256 + 1);
    for i in 0..n {
        if i % 256 == 0 {
            starts.push(r - q);
        }
        let (l, w) = name_len(img, r)?;
        r += w + l;
        if r > limit {
            return None;
        }
    }
    Some((r, starts))
}

/// Layout of the kallsyms tables in 6.1 (each 8-byte aligned): `offsets` (u32 each),
/// `relative_base` (u64), `num_syms` (u32), `names`, `markers` (u32 per 256 names), optionally
/// `seqs_of_names` (3 bytes per name), `token_table`, `token_index`. Found backwards from the
/// token table; each candidate is confirmed by decoding every name against the markers.
fn find_kallsyms(
    img: &[u8],
    link_base: u64,
    size: u64,
    relocs: &[Reloc],
) -> Result<Vec<(char, String, u64)>, ImageError> {
    let (tt, idx) = find_tokens(img).ok_or(ImageError::NoKallsyms("token table"))?;
    let tokens: Vec<&[u8]> = (0..256)
        .map(|i| {
            let a = tt + idx[i] as usize;
            let end = a + img[a..].iter().position(|&b| b == 0).unwrap_or(0);
            &img[a..end]
        })
        .collect();

    let mut found = None;
    let window = tt.saturating_sub(64 << 20);
    'outer: for q in (window..tt).step_by(8) {
        let Some(ns_pos) = q.checked_sub(8) else {
            continue;
        };
        let Some(n) = u32_at(img, ns_pos) else {
            continue;
        };
        let n = n as usize;
        if n == 0 || n > 4_000_000 || u32_at(img, ns_pos + 4) != Some(0) {
            continue;
        }
        let m = n.div_ceil(256);
        // Where the markers could end: right before the token table, or before the
        // 3-byte-per-name sequence table.
        for seqs in [0, 3 * n] {
            let Some(before) = tt.checked_sub(seqs) else {
                continue;
            };
            for pad in (0..=8).step_by(4) {
                let Some(ms) = before.checked_sub(pad + 4 * m) else {
                    continue;
                };
                if ms < q || u32_at(img, ms) != Some(0) {
                    continue;
                }
                let Some((end, starts)) = walk_names(img, q, n, ms) else {
                    continue;
                };
                if ms - end >= 8 {
                    continue;
                }
                let markers_ok = starts
                    .iter()
                    .enumerate()
                    .all(|(k, &s)| u32_at(img, ms + 4 * k) == Some(s as u32));
                if markers_ok {
                    found = Some((q, n));
                    break 'outer;
                }
            }
        }
    }
    let (names_pos, n) = found.ok_or(ImageError::NoKallsyms("names"))?;
    let base_pos = names_pos
        .checked_sub(16)
        .ok_or(ImageError::NoKallsyms("relative base"))?;
    let relative_base =
        link_value(relocs, img, base_pos as u64).ok_or(ImageError::NoKallsyms("relative base"))?;
    let offs_pos = base_pos
        .checked_sub((4 * n).next_multiple_of(8))
        .ok_or(ImageError::NoKallsyms("offsets"))?;

    let mut out = Vec::with_capacity(n);
    let mut r = names_pos;
    for i in 0..n {
        let (l, w) = name_len(img, r).ok_or(ImageError::NoKallsyms("names"))?;
        r += w;
        let mut name = Vec::new();
        for &t in &img[r..r + l] {
            name.extend_from_slice(tokens[t as usize]);
        }
        r += l;
        let off = u32_at(img, offs_pos + 4 * i).ok_or(ImageError::NoKallsyms("offsets"))?;
        let va = relative_base.wrapping_add(off as u64);
        if va.wrapping_sub(link_base) >= size || name.is_empty() {
            return Err(ImageError::NoKallsyms("addresses inside the image"));
        }
        let name = String::from_utf8_lossy(&name).into_owned();
        let kind = name.chars().next().unwrap_or('?');
        out.push((kind, name[kind.len_utf8()..].to_string(), va - link_base));
    }
    Ok(out)
}

/// The first page after the last non-zero byte before `__init_begin`: the page tables and
/// the alignment padding that follow rodata are all zero in the file.
fn rodata_end(img: &[u8], etext: u64, init_begin: u64) -> u64 {
    let top = (init_begin as usize).min(img.len());
    let start = (etext as usize).min(top);
    match img[start..top].iter().rposition(|&b| b != 0) {
        Some(i) => ((start + i + 1) as u64).next_multiple_of(crate::walk::PAGE_SIZE),
        None => etext,
    }
}

/// `sys_call_table` by content: the unique run of consecutive relocated words that all point
/// at `__arm64_sys_*` functions.
fn find_syscall_table(
    relocs: &[Reloc],
    kallsyms: &[(char, String, u64)],
    link_base: u64,
) -> Result<(u64, Vec<u64>), ImageError> {
    let targets: HashSet<u64> = kallsyms
        .iter()
        .filter(|(_, n, _)| n.starts_with("__arm64_sys_"))
        .map(|(_, _, o)| link_base + o)
        .collect();
    let mut runs = Vec::new();
    let mut i = 0;
    while i < relocs.len() {
        if !targets.contains(&relocs[i].addend) {
            i += 1;
            continue;
        }
        let start = i;
        while i + 1 < relocs.len()
            && relocs[i + 1].offset == relocs[i].offset + 8
            && targets.contains(&relocs[i + 1].addend)
        {
            i += 1;
        }
        i += 1;
        if i - start >= MIN_SYSCALLS {
            runs.push(start..i);
        }
    }
    match runs.as_slice() {
        [run] => Ok((
            relocs[run.start].offset,
            relocs[run.clone()]
                .iter()
                .map(|r| r.addend - link_base)
                .collect(),
        )),
        _ => Err(ImageError::NoSyscallTable),
    }
}

/// `tramp_vectors` by content: a 2K-aligned table whose first 1K (the current-EL entries) is
/// empty and whose lower-EL entries start with `msr tpidrro_el0, x30`.
fn find_tramp_vectors(img: &[u8], from: u64, to: u64) -> Option<u64> {
    let to = (to as usize).min(img.len());
    (from as usize..to).step_by(0x800).find_map(|p| {
        let empty = img.get(p..p + 0x400)?.iter().all(|&b| b == 0);
        let entries = (0..4).all(|k| u32_at(img, p + 0x400 + 0x80 * k) == Some(MSR_TPIDRRO_X30));
        (empty && entries).then_some(p as u64)
    })
}

/// Whether `w` is an unconditional `b`.
pub fn is_branch(w: u32) -> bool {
    w & 0xfc00_0000 == 0x1400_0000
}

/// A plausible `__jump_table` entry at `e`: its code field points at a `nop` or `b` inside
/// the image, its target at an instruction inside the image.
fn jump_entry_ok(img: &[u8], e: usize, l: &Layout) -> bool {
    let field = |at: usize| u32_at(img, at).map(|v| v as i32 as i64);
    let (Some(code), Some(target)) = (field(e), field(e + 4)) else {
        return false;
    };
    let code = e as i64 + code;
    let target = e as i64 + 4 + target;
    let inside = |a: i64| a >= l.stext as i64 && a < l.image_size as i64 && a % 4 == 0;
    inside(code)
        && inside(target)
        && u32_at(img, code as usize).is_some_and(|w| w == NOP || is_branch(w))
}

/// `__jump_table` by content: the longest run of plausible entries in rodata.
fn find_jump_table(img: &[u8], l: &Layout) -> Option<JumpTable> {
    let mut best = (0usize, 0usize);
    let mut p = l.etext as usize;
    let end = (l.rodata_end as usize).min(img.len());
    while p + 16 <= end {
        if jump_entry_ok(img, p, l) {
            let start = p;
            while p + 16 <= end && jump_entry_ok(img, p, l) {
                p += 16;
            }
            if (p - start) / 16 > best.1 {
                best = (start, (p - start) / 16);
            }
        } else {
            p += 8;
        }
    }
    (best.1 >= MIN_JUMP_ENTRIES).then_some(JumpTable {
        offset: best.0 as u64,
        count: best.1 as u32,
    })
}
