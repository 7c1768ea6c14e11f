//! Validates a partition config and prints the Rust tables generated from it.
//!
//! `cargo run -p board --features host --example generate -- board/configs/rtos.toml`

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: generate <config.toml>");
        return ExitCode::FAILURE;
    };
    match board::load_config(path.as_ref()) {
        Ok(cfg) => {
            print!("{}", cfg.to_rust());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
