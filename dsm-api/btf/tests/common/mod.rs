//! The real pinned kernel `Image`, found as `cargo xtask` finds it.

use dsm_btf::Btf;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Overrides where the `Image` is looked for.
pub const IMAGE_ENV: &str = "SPUMONE_KERNEL_IMAGE";

/// `$SPUMONE_KERNEL_IMAGE`, else `<target>/cache/debian/linux/Image`, where `<target>` is
/// `$CARGO_TARGET_DIR` (which `cargo xtask test` sets) or the workspace's `target/`.
pub fn image_path() -> PathBuf {
    if let Some(p) = std::env::var_os(IMAGE_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|p| !p.is_empty()) {
        // A relative target dir is relative to where cargo ran, normally the workspace root.
        Some(dir) => root.join(dir),
        None => root.join("target"),
    };
    target.join("cache/debian/linux/Image")
}

/// The `Image` bytes, read once per test binary. Panics (fails the test) when it is missing.
pub fn image() -> &'static [u8] {
    static IMAGE: OnceLock<Vec<u8>> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let path = image_path();
        std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "the pinned Debian kernel Image is missing ({}: {e}); \
                 run `cargo xtask setup` (or point {IMAGE_ENV} at an Image)",
                path.display()
            )
        })
    })
}

pub fn btf() -> Btf<'static> {
    dsm_btf::find_in_image(image())
        .expect("the kernel Image carries a .BTF section")
        .1
}

/// Byte offset of a member path; panics with the path on failure.
pub fn off(btf: &Btf<'_>, path: &str) -> u64 {
    btf.offset_of(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Size of a struct; panics with the name on failure.
pub fn size(btf: &Btf<'_>, name: &str) -> u64 {
    btf.struct_size(name)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}
