//! The integrity digest's mechanism (see `hvcore::integrity`): where spumone's and the RTOS's
//! images lie, the digests taken at boot, and the report when Linux stops.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::hvcore::integrity::{self, Finding, Image};
use crate::hvcore::vcpu;

use super::config::CONFIG;

unsafe extern "C" {
    /// spumone's first byte and the end of its code and read-only data (linker script).
    static __image_start: u8;
    static __ro_end: u8;
}

/// The images and their boot-time digests.
struct Baseline {
    images: [Option<(Image, [u8; 32])>; 2],
}

static BASELINE: super::cpu::Lock<Option<Baseline>> = super::cpu::Lock::new(None);

fn spumone_image() -> Image {
    let base = &raw const __image_start as u64;
    let end = &raw const __ro_end as u64;
    Image {
        name: "spumone",
        base,
        len: end - base,
    }
}

/// The guest image the host tools measured (boot info: the RTOS's code and read-only data),
/// named after the partition whose RAM holds it.
fn rtos_image() -> Option<Image> {
    let measured = super::linux::measured_range()?;
    let (partition, ram) = CONFIG.partitions.iter().find_map(|p| {
        let ram = p.ram.iter().find(|r| r.contains(measured.0))?;
        Some((p, ram))
    })?;
    integrity::guest_image(partition.name, measured, (ram.base, ram.size))
}

fn hash(image: &Image) -> [u8; 32] {
    // SAFETY: both images lie in RAM that EL2 maps identically as normal memory (spumone's
    // own region and a partition's RAM); they are only read.
    let bytes = unsafe {
        core::slice::from_raw_parts(image.base as usize as *const u8, image.len as usize)
    };
    integrity::digest(bytes, &mut super::sha256::compress)
}

/// Takes the boot-time digests; before any guest runs.
pub fn baseline() {
    let images = [Some(spumone_image()), rtos_image()];
    let mut taken = Baseline { images: [None; 2] };
    for (slot, image) in taken.images.iter_mut().zip(images) {
        if let Some(image) = image {
            let digest = hash(&image);
            info!(
                "integrity: {} image {:#x}+{:#x} sha256 {:#018x} at boot",
                image.name,
                image.base,
                image.len,
                integrity::prefix(&digest)
            );
            *slot = Some((image, digest));
        }
    }
    *BASELINE.lock() = Some(taken);
}

/// A report is owed and waits for a core the RTOS does not use.
static REPORT_DUE: AtomicBool = AtomicBool::new(false);

/// Whether `core` may hash the images (about a millisecond): not where an RTOS vCPU is
/// placed, unless the RTOS is on every core and nowhere else would do.
fn may_hash_on(core: usize) -> bool {
    let rtos = vcpu::cores_of_partitions(&CONFIG, super::linux::is_rtos);
    rtos & (1 << (core % 32)) == 0
        || vcpu::first_core_without_rtos(&CONFIG, usize::from(CONFIG.cores), super::linux::is_rtos)
            .is_none()
}

/// Reports after a partition stopped: here, or, on a core the RTOS uses, from the idle loop
/// of a core it does not (the stopped partition's other cores go idle at once). The last
/// partition's stop reports here: the machine powers off next, and no RTOS is left to delay.
pub fn report_after_stop(core: usize, last: bool) {
    if last || may_hash_on(core) {
        report();
    } else {
        REPORT_DUE.store(true, Ordering::Release);
    }
}

/// Serves a report owed by [`report_after_stop`], if this core may.
pub fn serve_due(core: usize) {
    if REPORT_DUE.load(Ordering::Acquire)
        && may_hash_on(core)
        && REPORT_DUE.swap(false, Ordering::AcqRel)
    {
        report();
    }
}

/// Digests the images again and prints how they compare with boot.
fn report() {
    let guard = BASELINE.lock();
    let Some(baseline) = guard.as_ref() else {
        return;
    };
    let mut findings: [Option<(&'static str, Finding)>; 2] = [None; 2];
    for (slot, taken) in findings.iter_mut().zip(&baseline.images) {
        if let Some((image, at_boot)) = taken {
            *slot = Some((image.name, Finding::of(*at_boot, hash(image))));
        }
    }
    let all_same = findings.iter().flatten().all(|(_, f)| f.unchanged());
    match findings {
        [Some((a, fa)), Some((b, fb))] if all_same => info!(
            "integrity: {} image sha256 {:#018x} {}; {} image sha256 {:#018x} {}",
            b,
            fb.prefix(),
            fb.word(),
            a,
            fa.prefix(),
            fa.word()
        ),
        [Some((a, fa)), Some((b, fb))] => error!(
            "integrity: {} image sha256 {:#018x} {} (boot {:#018x}); {} image sha256 {:#018x} {} (boot {:#018x})",
            b,
            fb.prefix(),
            fb.word(),
            fb.was_prefix(),
            a,
            fa.prefix(),
            fa.word(),
            fa.was_prefix()
        ),
        [Some((a, fa)), None] | [None, Some((a, fa))] => info!(
            "integrity: {} image sha256 {:#018x} {} (boot {:#018x}); no RTOS image measured",
            a,
            fa.prefix(),
            fa.word(),
            fa.was_prefix()
        ),
        [None, None] => {}
    }
}
