//! The KASLR slide at run time, from the guest's own page tables.
//!
//! The hypervisor knows the PA where it loaded the `Image`; the kernel maps that PA at
//! `KIMAGE_VADDR + slide` in `swapper_pg_dir` (TTBR1 while the vCPU is at EL1). The linear map
//! aliases the same PA, but lies below `KIMAGE_VADDR`, so the search starts there.

use core::fmt;

use crate::guest::KernelInfo;
use crate::walk::{self, ReadDesc, Stage1Regs, WalkError};
use crate::KIMAGE_VADDR;

/// Descriptors a slide search may read: Linux's kernel half after boot holds a few thousand
/// table entries; a hostile table cannot make the search longer than this.
pub const SEARCH_BUDGET: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KaslrError {
    Walk(WalkError),
    /// No VA at or above `KIMAGE_VADDR` maps the image's PA.
    NotFound,
    /// The candidate VA does not map the image consistently (a probe page maps elsewhere).
    Inconsistent {
        va: u64,
    },
}

impl fmt::Display for KaslrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KaslrError::Walk(e) => write!(f, "{e}"),
            KaslrError::NotFound => write!(f, "kernel image mapping not found in TTBR1"),
            KaslrError::Inconsistent { va } => {
                write!(f, "image mapping at {va:#x} is not contiguous")
            }
        }
    }
}

/// Finds where the kernel runs: the lowest VA at or above `KIMAGE_VADDR` that maps `text_pa`
/// through `regs.ttbr1`, confirmed by translating `text_va + probe` for every probe offset
/// (which must stay mapped after boot, e.g. `_stext` and the last text page).
pub fn find_kernel(
    regs: &Stage1Regs,
    text_pa: u64,
    image_size: u64,
    probes: &[u64],
    read: &mut ReadDesc,
) -> Result<KernelInfo, KaslrError> {
    let va = walk::find_upper_va(regs, KIMAGE_VADDR, u64::MAX, text_pa, SEARCH_BUDGET, read)
        .map_err(KaslrError::Walk)?
        .ok_or(KaslrError::NotFound)?;
    for &p in probes {
        let t = walk::translate(regs, va.wrapping_add(p), read).map_err(KaslrError::Walk)?;
        if t.pa != text_pa.wrapping_add(p) {
            return Err(KaslrError::Inconsistent { va });
        }
    }
    Ok(KernelInfo {
        text_pa,
        text_va: va,
        image_size,
    })
}
