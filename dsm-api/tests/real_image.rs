//! Symbol derivation, relocation and the slide search on the real Debian `Image`.

use dsm_api::test_support::{real_image, LinuxConfig, MemGuest, PAGE_OFFSET};
use dsm_api::{Guest, SysReg, KIMAGE_VADDR};

#[test]
fn kallsyms_and_layout_are_found_by_content() {
    let img = real_image();
    let p = &img.parsed;
    assert!(p.kallsyms.len() > 40_000, "{} symbols", p.kallsyms.len());
    assert!(p.relocs.len() > 100_000, "{} relocations", p.relocs.len());
    let l = p.layout;
    // The head (64K) comes before _stext; segments are 64K aligned.
    assert_eq!(l.stext, 0x10000);
    assert_eq!(l.etext % 0x10000, 0);
    assert!(l.stext < l.etext && l.etext < l.rodata_end && l.rodata_end < l.init_begin);
    assert!(l.init_begin < l.image_size);
    let vectors = p.symbol("vectors").expect("vectors");
    assert_eq!(vectors % 0x800, 0);
    assert!((l.stext..l.etext).contains(&vectors));
    // `_text` is not in kallsyms but is offset 0 by definition.
    assert_eq!(p.symbol("_text"), None);
    assert_eq!(img.symbols.offset("_text"), Some(0));
    assert_eq!(img.symbols.offset("_stext"), Some(l.stext));
    let bp = p.symbol("__bp_harden_el1_vectors").expect("bp vectors");
    assert_eq!(bp % 0x800, 0);
    // Every text symbol lies in text or init text.
    for (kind, name, off) in &p.kallsyms {
        if *kind == 'T' || *kind == 't' {
            assert!(*off >= l.stext && *off < l.image_size, "{name} at {off:#x}");
        }
    }
}

#[test]
fn syscall_table_is_located_by_content() {
    let img = real_image();
    let p = &img.parsed;
    let (table, entries) = &p.sys_call_table;
    assert_eq!(entries.len(), 451, "Linux 6.1 arm64 has 451 syscalls");
    assert!(
        (p.layout.etext..p.layout.rodata_end).contains(table),
        "table is rodata"
    );
    // In the file the words are zero; their relocations hold the targets.
    let at = *table as usize;
    assert!(img.bytes[at..at + 451 * 8].iter().all(|&b| b == 0));
    // Numbers from the arm64 generic syscall list.
    for (nr, name) in [
        (56, "__arm64_sys_openat"),
        (57, "__arm64_sys_close"),
        (63, "__arm64_sys_read"),
        (64, "__arm64_sys_write"),
        (93, "__arm64_sys_exit"),
        (129, "__arm64_sys_kill"),
        (221, "__arm64_sys_execve"),
    ] {
        assert_eq!(Some(entries[nr]), p.symbol(name), "syscall {nr}");
    }
    let ni = p.symbol("__arm64_sys_ni_syscall").unwrap();
    assert!(entries.iter().filter(|&&e| e == ni).count() > 10);
}

#[test]
fn trampoline_vectors_follow_rodata() {
    let p = &real_image().parsed;
    let t = p.tramp_vectors.expect("KPTI trampoline");
    assert_eq!(t % 0x1000, 0);
    assert!((p.layout.etext..p.layout.rodata_end).contains(&t));
}

#[test]
fn jump_table_is_located_by_content() {
    let img = real_image();
    let p = &img.parsed;
    let j = p.jump_table.expect("__jump_table");
    assert!(j.count > 5000, "{} entries", j.count);
    assert!((p.layout.etext..p.layout.rodata_end).contains(&j.offset));
    // Every site is a nop or a branch to its entry's target; most start as nops.
    let mut branches = 0;
    for i in 0..j.count as usize {
        let e = j.offset as usize + 16 * i;
        let rel = |at: usize| i32::from_le_bytes(img.bytes[at..at + 4].try_into().unwrap());
        let code = (e as i64 + rel(e) as i64) as usize;
        let target = e as i64 + 4 + rel(e + 4) as i64;
        let w = u32::from_le_bytes(img.bytes[code..code + 4].try_into().unwrap());
        if w != dsm_api::image::NOP {
            assert!(dsm_api::image::is_branch(w));
            let imm = ((w << 6) as i32 >> 6) as i64 * 4;
            assert_eq!(code as i64 + imm, target);
            branches += 1;
        }
    }
    assert!(branches < j.count as usize / 10);
}

#[test]
fn rendered_table_holds_what_the_firmware_needs() {
    let p = &real_image().parsed;
    let src = p.render_rust("KERNEL", &["vectors", "_stext", "no_such_symbol"]);
    assert!(src.starts_with("// Generated"));
    assert!(src.contains("pub static KERNEL: dsm_api::KernelSymbols"));
    let vectors = format!(
        "name: \"vectors\", offset: {:#x}",
        p.symbol("vectors").unwrap()
    );
    assert!(src.contains(&vectors), "{src}");
    assert!(!src.contains("no_such_symbol"));
    let read = format!(" {:#x},", p.symbol("__arm64_sys_read").unwrap());
    assert!(src.contains(&read));
    // Names come out sorted, which KernelSymbols::offset relies on.
    assert!(src.contains(&format!("count: {}", p.jump_table.unwrap().count)));
    assert!(src.find("\"_stext\"").unwrap() < src.find("\"vectors\"").unwrap());
}

#[test]
fn the_guest_is_relocated_and_its_slide_found() {
    for cfg in [
        LinuxConfig::default(),
        LinuxConfig {
            text_pa: 0x6000_0000,
            slide: 0x3f_0000_0000 + (7 << 21),
            vcpus: 1,
        },
    ] {
        let g = MemGuest::with_config(cfg);
        let k = g.kernel().unwrap();
        assert_eq!(k.slide(), cfg.slide);
        assert_eq!(k.text_pa, cfg.text_pa);
        assert_eq!(k.text_va, KIMAGE_VADDR + cfg.slide);

        let syms = g.symbols();
        let table = syms.sys_call_table.unwrap();
        let read_va = g.symbol("__arm64_sys_read").unwrap().unwrap();
        // The relocated table in guest memory holds slid pointers, read through the guest's
        // own tables.
        let mut word = [0u8; 8];
        g.read_virt(0, k.text_va + table.offset + 63 * 8, &mut word)
            .unwrap();
        assert_eq!(u64::from_le_bytes(word), read_va);
        // Text reads back as the file's bytes, through a 2M block.
        let stext = k.text_va + syms.layout.stext;
        let t = g.translate(0, stext).unwrap();
        assert_eq!((t.pa, t.level), (cfg.text_pa + syms.layout.stext, 2));
        let mut buf = [0u8; 64];
        g.read_virt(0, stext, &mut buf).unwrap();
        let at = syms.layout.stext as usize;
        assert_eq!(&buf[..], &real_image().bytes[at..at + 64]);
        // The linear map aliases the same PA below KIMAGE_VADDR.
        let lin = PAGE_OFFSET + (cfg.text_pa - g.ram()[0].start);
        assert_eq!(g.translate(0, lin).unwrap().pa, cfg.text_pa);
    }
}

#[test]
fn the_slide_search_rejects_a_broken_mapping() {
    let mut g = MemGuest::linux();
    let k = g.kernel().unwrap();
    // Point vCPU 0's TTBR1 at an empty table: the image is not mapped anywhere.
    let empty = g.alloc_table();
    g.set_sysreg(0, SysReg::Ttbr1El1, empty);
    assert!(g.discover_kernel().is_err());
    // Remap _stext's 2M block elsewhere: the probe catches the inconsistency.
    let mut g = MemGuest::linux();
    let t = g.translate(0, k.text_va).unwrap();
    assert_eq!(t.level, 2);
    let root = g.sysreg(0, SysReg::Ttbr1El1).unwrap() & 0x0000_ffff_ffff_f000;
    let va = k.text_va;
    let l1 = g.read_u64_phys(root + ((va >> 39) & 0x1ff) * 8).unwrap() & 0x0000_ffff_ffff_f000;
    let l2 = g.read_u64_phys(l1 + ((va >> 30) & 0x1ff) * 8).unwrap() & 0x0000_ffff_ffff_f000;
    let slot = l2 + ((va >> 21) & 0x1ff) * 8;
    let block = g.read_u64_phys(slot).unwrap();
    // Keep _text mapped as a 4K page (through a new table) but move the rest of the block.
    let l3 = g.alloc_table();
    g.write_u64_phys(l3, (block & !3) | 3).unwrap();
    for i in 1..512u64 {
        g.write_u64_phys(l3 + i * 8, ((block & !3) + 0x20_0000 + i * 0x1000) | 3)
            .unwrap();
    }
    g.write_u64_phys(slot, l3 | 3).unwrap();
    assert!(g.discover_kernel().is_err());
}

#[test]
fn damaged_images_are_errors_not_panics() {
    use dsm_api::image::{parse, ImageError};
    let bytes = &real_image().bytes;
    let l = real_image().parsed.layout;
    assert_eq!(parse(&bytes[..0x30]).unwrap_err(), ImageError::TooShort);
    let mut no_magic = bytes[..0x1000].to_vec();
    no_magic[0x38] = 0;
    assert_eq!(parse(&no_magic).unwrap_err(), ImageError::BadMagic);
    // Cut before the relocation table.
    assert_eq!(
        parse(&bytes[..16 << 20]).unwrap_err(),
        ImageError::NoRelocations
    );
    // Rodata (which holds kallsyms) wiped, or scribbled over with a repeating pattern.
    let mut wiped = bytes.clone();
    wiped[l.etext as usize..l.rodata_end as usize].fill(0);
    assert!(matches!(parse(&wiped), Err(ImageError::NoKallsyms(_))));
    for (i, b) in wiped[l.etext as usize..l.rodata_end as usize]
        .iter_mut()
        .enumerate()
    {
        *b = (i % 7) as u8;
    }
    assert!(matches!(parse(&wiped), Err(ImageError::NoKallsyms(_))));
}

#[test]
fn stop_the_world_resumes_on_drop() {
    use dsm_api::StopTheWorld;
    let mut g = MemGuest::linux();
    {
        let stopped = StopTheWorld::new(&mut g).unwrap();
        // Reads go through the guard while the guest is stopped.
        assert!(stopped.kernel().is_ok());
    }
    assert_eq!((g.paused, g.pauses), (false, 1));
    let mut first = StopTheWorld::new(&mut g).unwrap();
    // Pausing twice is refused, not nested silently.
    assert!(first.pause().is_err());
    drop(first);
    assert!(!g.paused);
}

#[test]
fn at_el1_reads_each_vcpus_exception_level() {
    let mut g = MemGuest::linux();
    g.set_sysreg(0, SysReg::Pstate, 0b0000); // EL0t
    g.set_sysreg(1, SysReg::Pstate, 0b0101); // EL1h
    g.set_sysreg(2, SysReg::Pstate, 0b0100); // EL1t
    assert!(!dsm_api::at_el1(&g, 0).unwrap());
    assert!(dsm_api::at_el1(&g, 1).unwrap());
    assert!(dsm_api::at_el1(&g, 2).unwrap());
    assert_eq!(
        dsm_api::at_el1(&g, g.vcpus()),
        Err(dsm_api::GuestError::NoSuchVcpu(g.vcpus()))
    );
}
