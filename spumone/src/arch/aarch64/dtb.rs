//! Reading the flattened device tree with the `fdt` crate into [`Platform`].

use board::rt::MemRange;
use fdt::Fdt;

use crate::hvcore::platform::{timer_intid, Platform};

/// The DTB: `x0` when it holds one inside the board's RAM, else the board's hint.
pub fn find(x0: u64, board_ram: &[MemRange], hint: u64) -> Option<(Fdt<'static>, u64)> {
    let in_ram = |addr: u64| addr & 7 == 0 && board_ram.iter().any(|r| r.contains(addr));
    [x0, hint]
        .into_iter()
        .filter(|&addr| addr != 0 && in_ram(addr))
        .find_map(|addr| {
            // SAFETY: `addr` is inside the board's RAM, which is identity mapped (or the MMU
            // is off); `from_ptr` checks the magic and header before trusting the sizes, and
            // nothing writes to the DTB while spumone runs.
            unsafe { Fdt::from_ptr(addr as *const u8) }
                .ok()
                .map(|fdt| (fdt, addr))
        })
}

fn first_reg(node: fdt::node::FdtNode) -> Option<MemRange> {
    let region = node.reg()?.next()?;
    Some(MemRange::new(
        region.starting_address as u64,
        region.size.unwrap_or(0) as u64,
    ))
}

/// Extracts what spumone needs. Errors name the missing piece.
pub fn parse(fdt: &Fdt) -> Result<Platform, &'static str> {
    let mut platform = Platform::default();
    for region in fdt.memory().regions() {
        let range = MemRange::new(
            region.starting_address as u64,
            region.size.unwrap_or(0) as u64,
        );
        if !range.is_empty() {
            let _ = platform.ram.push(range);
        }
    }
    if platform.ram.is_empty() {
        return Err("no memory node");
    }
    for cpu in fdt.cpus() {
        if platform.cpus.push(cpu.ids().first() as u64).is_err() {
            platform.cpus_ignored += 1;
        }
    }
    if platform.cpus.is_empty() {
        return Err("no CPUs");
    }

    let gic = fdt
        .find_compatible(&["arm,gic-v3"])
        .ok_or("no arm,gic-v3 interrupt controller")?;
    let mut regs = gic.reg().ok_or("GIC without reg")?;
    let mut next = || {
        regs.next()
            .map(|r| MemRange::new(r.starting_address as u64, r.size.unwrap_or(0) as u64))
    };
    platform.gicd = next().ok_or("GIC without a distributor")?;
    platform.gicr = next().ok_or("GIC without redistributors")?;

    let uart = fdt
        .chosen()
        .stdout()
        .filter(|n| {
            n.compatible()
                .is_some_and(|c| c.all().any(|c| c == "arm,pl011"))
        })
        .or_else(|| fdt.find_compatible(&["arm,pl011"]))
        .ok_or("no PL011 UART")?;
    platform.uart = first_reg(uart).ok_or("UART without reg")?;

    let mut virtio: Option<MemRange> = None;
    for node in fdt.all_nodes() {
        let is_virtio = node
            .compatible()
            .is_some_and(|c| c.all().any(|c| c == "virtio,mmio"));
        if let (true, Some(r)) = (is_virtio, first_reg(node)) {
            virtio = Some(match virtio {
                None => r,
                Some(v) => {
                    let base = v.base.min(r.base);
                    MemRange::new(base, v.end().max(r.end()) - base)
                }
            });
        }
    }
    platform.virtio = virtio;

    for node in fdt.all_nodes() {
        let is_smmu = node
            .compatible()
            .is_some_and(|c| c.all().any(|c| c == "arm,smmu-v3"));
        if let (true, Some(r)) = (is_smmu, first_reg(node)) {
            let _ = platform.smmus.push(r);
        }
    }

    let timer = fdt
        .find_compatible(&["arm,armv8-timer"])
        .ok_or("no arm,armv8-timer")?;
    let cells = timer
        .property("interrupts")
        .ok_or("timer without interrupts")?;
    let mut words = [0u32; 12];
    for (word, chunk) in words.iter_mut().zip(cells.value.chunks_exact(4)) {
        *word = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    let count = (cells.value.len() / 4).min(words.len());
    platform.hyp_timer_intid =
        timer_intid(&words[..count], 3).ok_or("timer without an EL2 physical timer")?;
    Ok(platform)
}
