//! [`KernelLayout`] from the real `Image`, against the generated source committed in
//! `src/layouts/` (golden) and the `const` that source compiles to (round trip).

mod common;

use common::{btf, off, size};
use dsm_btf::layout::render;
use dsm_btf::layouts::DEBIAN_6_1_0_56_ARM64;
use dsm_btf::KernelLayout;

const COMMITTED: &str = include_str!("../src/layouts/debian_6_1_0_56_arm64.rs");
const REGENERATE: &str = "regenerate with `cargo run -p dsm-btf --bin dsm-btf-gen -- \
    target/cache/debian/linux/Image DEBIAN_6_1_0_56_ARM64 > dsm-api/btf/src/layouts/debian_6_1_0_56_arm64.rs`";

#[test]
fn generated_source_matches_the_image() {
    let (at, btf) = dsm_btf::find_in_image(common::image()).unwrap();
    let layout = KernelLayout::from_btf(&btf).unwrap();
    let mut text = String::new();
    let source = format!(
        "the .BTF at {at:#x} of a kernel Image ({} types)",
        btf.count()
    );
    render(&layout, "DEBIAN_6_1_0_56_ARM64", &source, &mut text).unwrap();
    assert!(text == COMMITTED, "src/layouts is stale: {REGENERATE}");
}

#[test]
fn compiled_const_equals_the_parsed_layout() {
    let layout = KernelLayout::from_btf(&btf()).unwrap();
    assert_eq!(layout, DEBIAN_6_1_0_56_ARM64, "{REGENERATE}");
    // And the numbers the checkers rely on most, spelled out.
    assert_eq!(layout.list_head.size, 16);
    assert_eq!(layout.task_struct.comm_len, 16);
    assert_eq!(layout.module.name_len, 56);
    assert_eq!(layout.task_struct.cred, layout.task_struct.real_cred + 8);
}

#[test]
fn every_layout_offset_lies_inside_its_struct() {
    let btf = btf();
    let layout = dsm_btf::KernelLayout::from_btf(&btf).unwrap();
    let mut checked = 0;
    layout.for_each(|_, _, query, _| {
        let Some((root, _)) = query.split_once('.') else {
            return;
        };
        let end = off(&btf, query) + btf.field_size(query).unwrap();
        assert!(end <= size(&btf, root), "{query} ends at {end}");
        checked += 1;
    });
    assert!(checked > 60, "only {checked} offsets");
}
