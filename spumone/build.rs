//! Firmware build glue: linker scripts and the static partition configuration.
//!
//! Host builds (unit tests) need neither, so everything here is skipped unless the target
//! OS is `none`.

use std::env;
use std::path::{Path, PathBuf};

/// Config used when `SPUMONE_CONFIG` is not set, relative to the workspace root.
const DEFAULT_CONFIG: &str = "board/configs/rtos.toml";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-env-changed=SPUMONE_CONFIG");
    println!("cargo:rerun-if-env-changed=DEFMT_LOG");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return;
    }
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    println!(
        "cargo:rustc-link-arg-bins=-T{}",
        manifest_dir.join("link.ld").display()
    );
    if env::var_os("CARGO_FEATURE_PLAIN_LOG").is_none() {
        println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
    }
    // defmt filters at compile time and keeps only errors unless told otherwise.
    let defmt_log = env::var("DEFMT_LOG").unwrap_or_else(|_| "info".into());
    println!("cargo:rustc-env=DEFMT_LOG={defmt_log}");

    let workspace_root = manifest_dir
        .parent()
        .expect("spumone sits in the workspace");
    let config_path = match env::var_os("SPUMONE_CONFIG") {
        Some(path) => workspace_root.join(path),
        None => workspace_root.join(DEFAULT_CONFIG),
    };
    generate_config(&config_path);
}

fn generate_config(config_path: &Path) {
    println!("cargo:rerun-if-changed={}", config_path.display());
    let config = match board::load_config(config_path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::exit(1);
        }
    };
    println!("cargo:rerun-if-changed={}", config.board_path().display());
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets it")).join("config.rs");
    if let Err(err) = std::fs::write(&out, config.to_rust()) {
        eprintln!("error: cannot write {}: {err}", out.display());
        std::process::exit(1);
    }
}
