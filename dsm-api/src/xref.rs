//! Data symbols (`init_task`, `modules`, ...) found through the kernel text that uses them.
//!
//! `KALLSYMS_ALL` is off, so kallsyms has no data symbols. But kernel text reaches its data
//! PC-relatively: `adrp` gives the 4K page, then an `add` or `ldr` the low 12 bits. The text
//! is in guest memory (and the `text-hash` checker keeps it honest), so each data symbol is
//! decoded at run time from a known function, which holds under any KASLR slide.
//!
//! [`data_symbol`] prefers a symbol the runtime's [`crate::KernelSymbols`] already has (a
//! build step may add data symbols there); otherwise it follows a [`DataRef`] from
//! [`DATA_REFS`], written for Debian's 6.1 arm64 kernel and checked against its `Image` by
//! the tests. The functions named there must be in the runtime's symbol table.

use crate::checker::CheckError;
use crate::guest::Guest;

/// How a function uses the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    /// `adrp; add`: the address itself is formed.
    Address,
    /// `adrp; ldr x, [xn, #imm]` (or pre-indexed): a 64-bit load from it.
    Load64,
}

/// Where a data symbol is used: the `nth` reference of `kind` in `function`'s first
/// [`SCAN_INSNS`] instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRef {
    pub symbol: &'static str,
    pub function: &'static str,
    pub kind: RefKind,
    pub nth: u8,
}

/// Instructions scanned per function.
pub const SCAN_INSNS: usize = 64;

/// The recipes for Debian `linux-image-6.1.0-*-arm64`, each read off the disassembly and
/// re-checked against the `Image` by the tests (a new kernel may need new ones).
pub const DATA_REFS: &[DataRef] = &[
    // `for_each_process_thread` starts at `&init_task`.
    DataRef {
        symbol: "init_task",
        function: "show_state_filter",
        kind: RefKind::Address,
        nth: 0,
    },
    // `list_for_each_entry_rcu(mod, &modules, list)`: the compiler forms a nearby anchor,
    // then loads `modules.next` pre-indexed.
    DataRef {
        symbol: "modules",
        function: "find_module_all",
        kind: RefKind::Load64,
        nth: 0,
    },
    // The inlined `mod_sysfs_init` first tests `if (!module_kset)`.
    DataRef {
        symbol: "module_kset",
        function: "mod_sysfs_setup",
        kind: RefKind::Load64,
        nth: 0,
    },
    // `while (ns != &init_pid_ns)`.
    DataRef {
        symbol: "init_pid_ns",
        function: "put_pid_ns",
        kind: RefKind::Address,
        nth: 0,
    },
    // `cpu_rq(cpu)`: `per_cpu(runqueues, cpu)` = `&runqueues + __per_cpu_offset[cpu]`.
    DataRef {
        symbol: "__per_cpu_offset",
        function: "idle_cpu",
        kind: RefKind::Address,
        nth: 0,
    },
    DataRef {
        symbol: "runqueues",
        function: "idle_cpu",
        kind: RefKind::Address,
        nth: 1,
    },
    // `atomic_cmpxchg(&panic_cpu, PANIC_CPU_INVALID, cpu)`, after `cpu_number`'s per-CPU
    // offset and the anchor `panic_cpu` is formed from.
    DataRef {
        symbol: "panic_cpu",
        function: "nmi_panic",
        kind: RefKind::Address,
        nth: 2,
    },
    // `unsigned long j0 = jiffies;`
    DataRef {
        symbol: "jiffies",
        function: "round_jiffies_relative",
        kind: RefKind::Load64,
        nth: 0,
    },
];

/// One decoded use of an `adrp`-formed address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ref {
    pub kind: RefKind,
    pub addr: u64,
}

fn sign_extend(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

/// Decodes the references in `insns` (little-endian words starting at VA `pc`), in order.
/// Only registers set by `adrp` (and `add`s on them) are tracked; a load replaces its
/// destination, so a later use of that register is not mistaken for an address.
pub fn refs(pc: u64, insns: &[u32], mut f: impl FnMut(Ref) -> bool) {
    let mut regs: [Option<u64>; 32] = [None; 32];
    for (i, &w) in insns.iter().enumerate() {
        let at = pc.wrapping_add(4 * i as u64);
        let rd = (w & 0x1f) as usize;
        let rn = ((w >> 5) & 0x1f) as usize;
        if w & 0x9f00_0000 == 0x9000_0000 {
            // ADRP Xd, label
            let imm = (((w >> 5) & 0x7_ffff) << 2 | ((w >> 29) & 3)) as u64;
            let off = sign_extend(imm, 21) << 12;
            regs[rd] = Some((at & !0xfff).wrapping_add(off as u64));
        } else if w & 0xff80_0000 == 0x9100_0000 {
            // ADD Xd, Xn, #imm{, lsl #12}
            let mut imm = ((w >> 10) & 0xfff) as u64;
            if w & (1 << 22) != 0 {
                imm <<= 12;
            }
            let v = regs[rn].map(|b| b.wrapping_add(imm));
            regs[rd] = v;
            if let Some(addr) = v {
                if !f(Ref {
                    kind: RefKind::Address,
                    addr,
                }) {
                    return;
                }
            }
        } else if w & 0xffc0_0000 == 0xf940_0000 || w & 0xffe0_0c00 == 0xf840_0c00 {
            // LDR Xt, [Xn, #imm] (scaled unsigned) or LDR Xt, [Xn, #simm]! (pre-index)
            let off = if w & 0xffc0_0000 == 0xf940_0000 {
                (((w >> 10) & 0xfff) as u64) * 8
            } else {
                sign_extend(((w >> 12) & 0x1ff) as u64, 9) as u64
            };
            let base = regs[rn];
            regs[rd] = None;
            if let Some(b) = base {
                let addr = b.wrapping_add(off);
                if w & 0xffc0_0000 != 0xf940_0000 && rn != rd {
                    regs[rn] = Some(addr);
                }
                if !f(Ref {
                    kind: RefKind::Load64,
                    addr,
                }) {
                    return;
                }
            }
        }
    }
}

/// The run-time VA of data symbol `name`: from the runtime's symbol table if it has it, else
/// decoded from the text of the function its [`DataRef`] names. The result must lie in the
/// kernel image.
pub fn data_symbol(guest: &dyn Guest, name: &'static str) -> Result<u64, CheckError> {
    if let Some(va) = guest.symbol(name)? {
        return Ok(va);
    }
    let missing = CheckError::MissingSymbol(name);
    let r = DATA_REFS.iter().find(|r| r.symbol == name).ok_or(missing)?;
    let k = guest.kernel()?;
    let fn_va = guest.symbol(r.function)?.ok_or(missing)?;
    let fn_pa = k.image_va_to_pa(fn_va).ok_or(missing)?;
    let mut bytes = [0u8; 4 * SCAN_INSNS];
    guest.read_phys(fn_pa, &mut bytes)?;
    let mut insns = [0u32; SCAN_INSNS];
    for (w, b) in insns.iter_mut().zip(bytes.chunks_exact(4)) {
        *w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    let mut seen = 0u8;
    let mut found = None;
    refs(fn_va, &insns, |x| {
        if x.kind != r.kind {
            return true;
        }
        if seen == r.nth {
            found = Some(x.addr);
            return false;
        }
        seen += 1;
        true
    });
    found
        .filter(|&va| k.image_va_to_pa(va).is_some())
        .ok_or(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adrp_add_and_loads_decode() {
        // adrp x22, +0x1b39000 (from 0x1a6a98); add x22, x22, #0x358
        let pc = 0xffff_8000_081a_6a98;
        let mut got = [Ref {
            kind: RefKind::Address,
            addr: 0,
        }; 4];
        let mut n = 0;
        let insns = [
            0xd000_d9d6, // adrp x22, 0x1ce0000 (relative)
            0x910d_62d6, // add x22, x22, #0x358
            0xf845_0ec0, // ldr x0, [x22, #80]!
            0xf944_b2c0, // ldr x0, [x22, #2400]
            0xf940_0000, // ldr x0, [x0]: x0 was loaded, not formed
        ];
        refs(pc, &insns, |r| {
            got[n] = r;
            n += 1;
            true
        });
        assert_eq!(n, 3);
        let page = (pc & !0xfff) + 0x1b3_a000;
        assert_eq!(
            got[0],
            Ref {
                kind: RefKind::Address,
                addr: page + 0x358,
            }
        );
        assert_eq!(got[1].addr, page + 0x358 + 80);
        assert_eq!(got[2].addr, page + 0x358 + 80 + 2400);
        assert_eq!(got[2].kind, RefKind::Load64);
    }

    #[test]
    fn negative_adrp_and_stop_early() {
        // adrp x1, -1 page: immhi all ones, immlo 3.
        let w = 0x9000_0001 | (3 << 29) | (0x7_ffff << 5);
        let insns = [w, 0x9100_0421]; // add x1, x1, #1
        let mut seen = 0;
        refs(0x10_0000, &insns, |r| {
            assert_eq!(r.addr, 0xf_f001);
            seen += 1;
            false
        });
        assert_eq!(seen, 1);
    }
}
