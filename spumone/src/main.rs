//! The spumone firmware image. Everything lives in the library; the image only pulls it in.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
use spumone as _;

#[cfg(not(target_os = "none"))]
fn main() {
    println!("spumone is EL2 firmware for aarch64; build and run it with `cargo xtask build`.");
}
