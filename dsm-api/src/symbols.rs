//! The kernel facts checkers need, as offsets from `_text` so they hold under any KASLR slide.
//!
//! They are derived on the host from the pinned `Image` ([`crate::image`], feature `std`) and
//! reach the firmware as a generated `const` ([`crate::image::ParsedImage::render_rust`]).

/// A kernel text symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Symbol {
    pub name: &'static str,
    /// Offset from `_text`.
    pub offset: u64,
}

/// Section bounds, as offsets from `_text`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// `_stext`: start of kernel text proper (after the head).
    pub stext: u64,
    /// `_etext`: end of text; `__start_rodata` equals it on arm64 (both aligned the same way).
    pub etext: u64,
    /// End of the read-only data worth hashing: the first page after the last non-zero byte
    /// before the page tables (`idmap_pg_dir` ... `swapper_pg_dir`, all zero in the `Image`).
    pub rodata_end: u64,
    /// `__init_begin`: init text and data are freed after boot.
    pub init_begin: u64,
    /// The header's `image_size` (bytes the loaded image occupies, BSS included).
    pub image_size: u64,
}

/// Where `sys_call_table` is and what each entry points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyscallTable {
    /// Offset of the table from `_text`.
    pub offset: u64,
    /// Each entry's target (an `__arm64_sys_*` function) as an offset from `_text`.
    pub entries: &'static [u64],
}

/// Where `__jump_table` is: `count` entries of 16 bytes (`s32 code, s32 target, s64 key`,
/// each relative to its own field), sorted by the kernel at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JumpTable {
    /// Offset of the first entry from `_text`.
    pub offset: u64,
    pub count: u32,
}

/// Everything a checker may look up about the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelSymbols {
    /// Text symbols sorted by name (duplicates keep their first address).
    pub symbols: &'static [Symbol],
    pub layout: Layout,
    pub sys_call_table: Option<SyscallTable>,
    /// Offset of the KPTI trampoline vectors (`tramp_vectors`, not in kallsyms; found by
    /// content), if the kernel has them.
    pub tramp_vectors: Option<u64>,
    /// The jump-label sites, if the kernel has them.
    pub jump_table: Option<JumpTable>,
}

impl KernelSymbols {
    /// The offset from `_text` of a symbol.
    pub fn offset(&self, name: &str) -> Option<u64> {
        self.symbols
            .binary_search_by(|s| s.name.cmp(name))
            .ok()
            .map(|i| self.symbols[i].offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_by_exact_name() {
        static SYMS: [Symbol; 3] = [
            Symbol {
                name: "_stext",
                offset: 0x10000,
            },
            Symbol {
                name: "vectors",
                offset: 0x10800,
            },
            Symbol {
                name: "vectors_x",
                offset: 0x20000,
            },
        ];
        let k = KernelSymbols {
            symbols: &SYMS,
            layout: Layout {
                stext: 0x10000,
                etext: 0x20000,
                rodata_end: 0x30000,
                init_begin: 0x40000,
                image_size: 0x50000,
            },
            sys_call_table: None,
            tramp_vectors: None,
            jump_table: None,
        };
        assert_eq!(k.offset("vectors"), Some(0x10800));
        assert_eq!(k.offset("vectors_x"), Some(0x20000));
        assert_eq!(k.offset("vector"), None);
    }
}
