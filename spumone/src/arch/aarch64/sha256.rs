//! The digest service's EL2 path: SHA-256 compression with the ARMv8 SHA-256 instructions
//! (`sha256h`, `sha256h2`, `sha256su0`, `sha256su1`), about 20x fewer instructions than the
//! software compression EL2 otherwise runs (it is built without FP/SIMD).
//!
//! The routine uses SIMD registers that hold a guest's FP/SIMD state while EL2 runs, so it
//! saves and restores every one it touches, and lifts `CPTR_EL2.TFP` around the call if
//! it is set. It is used only if `ID_AA64ISAR0_EL1.SHA2` says the instructions exist, and
//! not on a CPU with SVE (writing a V register would zero the upper bits of the guest's Z
//! register, which 128-bit saves cannot restore). A boot-time self-test against the
//! software compression (and a known digest) must pass too; otherwise software is used.

use core::sync::atomic::{AtomicU8, Ordering};

use dsm_api::digest::{compress_soft, Sha256};

/// SHA-256 round constants (FIPS 180-4, 4.2.2).
static K: [u32; 64] = [
    0x428a_2f98,
    0x7137_4491,
    0xb5c0_fbcf,
    0xe9b5_dba5,
    0x3956_c25b,
    0x59f1_11f1,
    0x923f_82a4,
    0xab1c_5ed5,
    0xd807_aa98,
    0x1283_5b01,
    0x2431_85be,
    0x550c_7dc3,
    0x72be_5d74,
    0x80de_b1fe,
    0x9bdc_06a7,
    0xc19b_f174,
    0xe49b_69c1,
    0xefbe_4786,
    0x0fc1_9dc6,
    0x240c_a1cc,
    0x2de9_2c6f,
    0x4a74_84aa,
    0x5cb0_a9dc,
    0x76f9_88da,
    0x983e_5152,
    0xa831_c66d,
    0xb003_27c8,
    0xbf59_7fc7,
    0xc6e0_0bf3,
    0xd5a7_9147,
    0x06ca_6351,
    0x1429_2967,
    0x27b7_0a85,
    0x2e1b_2138,
    0x4d2c_6dfc,
    0x5338_0d13,
    0x650a_7354,
    0x766a_0abb,
    0x81c2_c92e,
    0x9272_2c85,
    0xa2bf_e8a1,
    0xa81a_664b,
    0xc24b_8b70,
    0xc76c_51a3,
    0xd192_e819,
    0xd699_0624,
    0xf40e_3585,
    0x106a_a070,
    0x19a4_c116,
    0x1e37_6c08,
    0x2748_774c,
    0x34b0_bcb5,
    0x391c_0cb3,
    0x4ed8_aa4a,
    0x5b9c_ca4f,
    0x682e_6ff3,
    0x748f_82ee,
    0x78a5_636f,
    0x84c8_7814,
    0x8cc7_0208,
    0x90be_fffa,
    0xa450_6ceb,
    0xbef9_a3f7,
    0xc671_78f2,
];

// `spumone_sha256_blocks(state: *mut [u32; 8], data: *const u8, blocks: usize, k: *const u32)`.
// v0/v1: the state (ABCD, EFGH); v2/v3: the state before the block; v4..v7: the message
// schedule, 16 words; v16: words + round constants; v17: ABCD before a quad round; the 64
// round constants stay in v18..v31, v8 and v9 for the whole call (a text-hash page is 64
// blocks, so loading them once instead of every block saves 16 loads a block).
// Each `quad` runs four rounds; the first twelve also compute the next four schedule words
// into the register whose words they just consumed.
core::arch::global_asm!(
    ".pushsection .text.spumone_sha256_blocks, \"ax\", %progbits",
    ".arch_extension fp",
    ".arch_extension simd",
    ".arch_extension sha2",
    ".macro spumone_sha256_quad w0, w1, w2, w3, k, next",
    "    add v16.4s, \\k\\().4s, \\w0\\().4s",
    "    .if \\next",
    "    sha256su0 \\w0\\().4s, \\w1\\().4s",
    "    .endif",
    "    mov v17.16b, v0.16b",
    "    sha256h q0, q1, v16.4s",
    "    sha256h2 q1, q17, v16.4s",
    "    .if \\next",
    "    sha256su1 \\w0\\().4s, \\w2\\().4s, \\w3\\().4s",
    "    .endif",
    ".endm",
    ".global spumone_sha256_blocks",
    ".type spumone_sha256_blocks, %function",
    ".balign 16",
    "spumone_sha256_blocks:",
    "    sub sp, sp, #416",
    "    stp q0, q1, [sp]",
    "    stp q2, q3, [sp, #32]",
    "    stp q4, q5, [sp, #64]",
    "    stp q6, q7, [sp, #96]",
    "    stp q8, q9, [sp, #128]",
    "    stp q16, q17, [sp, #160]",
    "    stp q18, q19, [sp, #192]",
    "    stp q20, q21, [sp, #224]",
    "    stp q22, q23, [sp, #256]",
    "    stp q24, q25, [sp, #288]",
    "    stp q26, q27, [sp, #320]",
    "    stp q28, q29, [sp, #352]",
    "    stp q30, q31, [sp, #384]",
    "    ld1 {{v0.4s, v1.4s}}, [x0]",
    "    cbz x2, 2f",
    "    ld1 {{v18.4s, v19.4s, v20.4s, v21.4s}}, [x3], #64",
    "    ld1 {{v22.4s, v23.4s, v24.4s, v25.4s}}, [x3], #64",
    "    ld1 {{v26.4s, v27.4s, v28.4s, v29.4s}}, [x3], #64",
    "    ld1 {{v30.4s, v31.4s}}, [x3], #32",
    "    ld1 {{v8.4s, v9.4s}}, [x3]",
    "1:",
    "    ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [x1], #64",
    "    rev32 v4.16b, v4.16b",
    "    rev32 v5.16b, v5.16b",
    "    rev32 v6.16b, v6.16b",
    "    rev32 v7.16b, v7.16b",
    "    mov v2.16b, v0.16b",
    "    mov v3.16b, v1.16b",
    "    spumone_sha256_quad v4, v5, v6, v7, v18, 1",
    "    spumone_sha256_quad v5, v6, v7, v4, v19, 1",
    "    spumone_sha256_quad v6, v7, v4, v5, v20, 1",
    "    spumone_sha256_quad v7, v4, v5, v6, v21, 1",
    "    spumone_sha256_quad v4, v5, v6, v7, v22, 1",
    "    spumone_sha256_quad v5, v6, v7, v4, v23, 1",
    "    spumone_sha256_quad v6, v7, v4, v5, v24, 1",
    "    spumone_sha256_quad v7, v4, v5, v6, v25, 1",
    "    spumone_sha256_quad v4, v5, v6, v7, v26, 1",
    "    spumone_sha256_quad v5, v6, v7, v4, v27, 1",
    "    spumone_sha256_quad v6, v7, v4, v5, v28, 1",
    "    spumone_sha256_quad v7, v4, v5, v6, v29, 1",
    "    spumone_sha256_quad v4, v5, v6, v7, v30, 0",
    "    spumone_sha256_quad v5, v6, v7, v4, v31, 0",
    "    spumone_sha256_quad v6, v7, v4, v5, v8, 0",
    "    spumone_sha256_quad v7, v4, v5, v6, v9, 0",
    "    add v0.4s, v0.4s, v2.4s",
    "    add v1.4s, v1.4s, v3.4s",
    "    subs x2, x2, #1",
    "    b.ne 1b",
    "    st1 {{v0.4s, v1.4s}}, [x0]",
    "2:",
    "    ldp q0, q1, [sp]",
    "    ldp q2, q3, [sp, #32]",
    "    ldp q4, q5, [sp, #64]",
    "    ldp q6, q7, [sp, #96]",
    "    ldp q8, q9, [sp, #128]",
    "    ldp q16, q17, [sp, #160]",
    "    ldp q18, q19, [sp, #192]",
    "    ldp q20, q21, [sp, #224]",
    "    ldp q22, q23, [sp, #256]",
    "    ldp q24, q25, [sp, #288]",
    "    ldp q26, q27, [sp, #320]",
    "    ldp q28, q29, [sp, #352]",
    "    ldp q30, q31, [sp, #384]",
    "    add sp, sp, #416",
    "    ret",
    ".size spumone_sha256_blocks, . - spumone_sha256_blocks",
    ".popsection",
);

unsafe extern "C" {
    fn spumone_sha256_blocks(state: *mut u32, data: *const u8, blocks: usize, k: *const u32);
}

/// `CPTR_EL2.TFP`: FP/SIMD accesses (EL2's too, without VHE) trap.
const CPTR_TFP: u64 = 1 << 10;

const UNKNOWN: u8 = 0;
const HARDWARE: u8 = 1;
const SOFTWARE: u8 = 2;
static PATH: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Whether this CPU has the SHA-256 instructions and no SVE.
fn cpu_has_sha256() -> bool {
    let (isar0, pfr0): (u64, u64);
    // SAFETY: reading ID registers has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, id_aa64isar0_el1", out(reg) isar0, options(nomem, nostack));
        core::arch::asm!("mrs {}, id_aa64pfr0_el1", out(reg) pfr0, options(nomem, nostack));
    }
    let sha2 = (isar0 >> 12) & 0xf;
    let simd = (pfr0 >> 20) & 0xf;
    let sve = (pfr0 >> 32) & 0xf;
    sha2 >= 1 && simd != 0xf && sve == 0
}

fn compress_hw(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
    let cptr: u64;
    // SAFETY: reads EL2's trap control.
    unsafe { core::arch::asm!("mrs {}, cptr_el2", out(reg) cptr, options(nomem, nostack)) };
    if cptr & CPTR_TFP != 0 {
        // SAFETY: lets EL2 itself use FP/SIMD until restored below; guests do not run
        // on this core meanwhile.
        unsafe {
            core::arch::asm!("msr cptr_el2, {}", "isb", in(reg) cptr & !CPTR_TFP, options(nostack))
        };
    }
    // SAFETY: the routine reads `blocks.len()` 64-byte blocks and the 64 constants of `K`,
    // reads and writes the 8 words of `state`, and restores every SIMD register it uses;
    // the instructions exist (checked by `cpu_has_sha256` before `PATH` says hardware).
    unsafe {
        spumone_sha256_blocks(
            state.as_mut_ptr(),
            blocks.as_ptr().cast(),
            blocks.len(),
            K.as_ptr(),
        )
    };
    if cptr & CPTR_TFP != 0 {
        // SAFETY: puts back the trap control read above.
        unsafe { core::arch::asm!("msr cptr_el2, {}", "isb", in(reg) cptr, options(nostack)) };
    }
}

/// SHA-256 compression, by the instructions if the self-test passed, else in software.
pub fn compress(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
    if PATH.load(Ordering::Relaxed) == HARDWARE {
        compress_hw(state, blocks);
    } else {
        compress_soft(state, blocks);
    }
}

/// SHA-256 of the self-test message: 64 KiB (a text-hash chunk) of a fixed pattern, made
/// 1 KiB at a time on the stack.
fn digest_pattern(compress: &mut dsm_api::digest::Compress) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut buf = [0u8; 1024];
    for part in 0..64u32 {
        for (i, b) in buf.iter_mut().enumerate() {
            let n = part * 1024 + i as u32;
            *b = n.wrapping_mul(2_654_435_761).rotate_right(13) as u8;
        }
        h.update_with(compress, &buf);
    }
    h.finalize_with(compress)
}

/// SHA-256("abc") (FIPS 180-4's example).
const ABC: [u8; 32] = [
    0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
    0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
];

/// Picks the path once: the instructions if present and they agree with the software
/// compression and the known digest. Logs the choice and both paths' time for 64 KiB (pattern generation included).
pub fn init(now_ns: fn() -> u64) {
    if PATH.load(Ordering::Acquire) != UNKNOWN {
        return;
    }
    if !cpu_has_sha256() {
        PATH.store(SOFTWARE, Ordering::Release);
        info!("dsm sha256: software (no SHA-256 instructions, or SVE present)");
        return;
    }
    let t0 = now_ns();
    let hw = digest_pattern(&mut compress_hw);
    let t1 = now_ns();
    let sw = digest_pattern(&mut compress_soft);
    let t2 = now_ns();
    let mut h = Sha256::new();
    h.update_with(&mut compress_hw, b"abc");
    let abc = h.finalize_with(&mut compress_hw);
    let ok = hw == sw && abc == ABC;
    PATH.store(if ok { HARDWARE } else { SOFTWARE }, Ordering::Release);
    let prefix = u64::from_be_bytes([hw[0], hw[1], hw[2], hw[3], hw[4], hw[5], hw[6], hw[7]]);
    if ok {
        info!(
            "dsm sha256: ARMv8 SHA-256 instructions, self-test passed (64 KiB digest {:#x}; hardware {} ns, software {} ns)",
            prefix,
            t1 - t0,
            t2 - t1
        );
    } else {
        error!(
            "dsm sha256: the SHA-256 instructions failed the self-test (64 KiB digest {:#x}); using software",
            prefix
        );
    }
}
