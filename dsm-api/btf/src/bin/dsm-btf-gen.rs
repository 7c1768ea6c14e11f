//! `dsm-btf-gen IMAGE [CONST_NAME]`: prints the [`KernelLayout`] of a kernel `Image` as Rust
//! source, for the firmware to embed (see the crate README for where it goes).

use dsm_btf::layout::render;
use dsm_btf::{find_in_image, KernelLayout};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (image, name) = match args.as_slice() {
        [image] => (image, "KERNEL_LAYOUT"),
        [image, name] => (image, name.as_str()),
        _ => {
            eprintln!("usage: dsm-btf-gen IMAGE [CONST_NAME]");
            return ExitCode::from(2);
        }
    };
    match generate(image, name) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dsm-btf-gen: {image}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn generate(image: &str, name: &str) -> Result<String, String> {
    let bytes = std::fs::read(image).map_err(|e| e.to_string())?;
    let (at, btf) = find_in_image(&bytes).map_err(|e| e.to_string())?;
    let layout = KernelLayout::from_btf(&btf).map_err(|e| e.to_string())?;
    let mut text = String::new();
    let source = format!(
        "the .BTF at {at:#x} of a kernel Image ({} types)",
        btf.count()
    );
    render(&layout, name, &source, &mut text).map_err(|e| e.to_string())?;
    Ok(text)
}
