//! Where things live, all derived from the workspace root.

use std::env;
use std::path::{Path, PathBuf};

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set (relative to the current directory,
/// as cargo reads it), else `<root>/target`.
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                env::current_dir().map(|cwd| cwd.join(&dir)).unwrap_or(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// The firmware images of one scenario, copied out of cargo's output so scenarios built with
/// different configs do not overwrite each other.
pub fn images_dir(scenario: &str) -> PathBuf {
    target_dir().join("images").join(scenario)
}

/// The raw and decoded streams of the last run of a scenario.
pub fn logs_dir(scenario: &str) -> PathBuf {
    target_dir().join("logs").join(scenario)
}

/// Downloads kept between runs (verified by checksum before use).
pub fn cache_dir() -> PathBuf {
    target_dir().join("cache")
}

/// A path as it is best shown to the user: relative to the workspace root when inside it.
pub fn display(path: &Path) -> String {
    let root = workspace_root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}
