//! What xtask needs from a partition config, read through the board crate's validation.

use anyhow::{bail, Result};
use spumone_abi::chan;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    /// Guest image to load for it (`image = "..."` in the config).
    pub image: String,
    /// Its console channel on the UART.
    pub channel: u8,
    /// Where a Linux partition's pieces go.
    pub linux: Option<LinuxLayout>,
}

/// A Linux partition's load addresses and room, from its config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinuxLayout {
    pub kernel_base: u64,
    pub kernel_size: u64,
    pub initrd_base: u64,
    pub initrd_size: u64,
}

/// A config validated by the board crate; its message becomes one line.
fn validated(path: &Path) -> Result<board::ValidatedConfig> {
    board::load_config(path).map_err(|e| {
        let text = e.to_string();
        let lines: Vec<&str> = text.lines().collect();
        anyhow::anyhow!("invalid config: {}", lines.join("; "))
    })
}

/// How many cores the config's machine has (QEMU's `-smp`).
pub fn cores(path: &Path) -> Result<u32> {
    Ok(u32::from(validated(path)?.cores()))
}

/// Loads and validates a config.
pub fn load(path: &Path) -> Result<Vec<Partition>> {
    let config = validated(path)?;
    let mut partitions: Vec<Partition> = config
        .partitions()
        .iter()
        .map(|p| Partition {
            name: p.name.clone(),
            image: p.image.clone(),
            channel: p.console_channel,
            linux: p.linux.as_ref().map(|l| LinuxLayout {
                kernel_base: l.kernel.base,
                kernel_size: l.kernel.size,
                initrd_base: l.initrd.base,
                initrd_size: l.initrd.size,
            }),
        })
        .collect();
    partitions.sort_by_key(|p| p.channel);
    Ok(partitions)
}

/// Partition names indexed by console channel number minus `GUEST_BASE`, as the demux wants.
pub fn console_names(partitions: &[Partition]) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for p in partitions {
        let Some(index) = chan::guest_index(p.channel) else {
            bail!(
                "partition {} has no console channel ({:#x})",
                p.name,
                p.channel
            );
        };
        if names.len() <= index {
            names.resize(index + 1, String::new());
        }
        names[index] = p.name.clone();
    }
    for (i, name) in names.iter_mut().enumerate() {
        if name.is_empty() {
            *name = format!("partition{i}");
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::workspace_root;

    #[test]
    fn rtos_config_has_one_partition_on_the_first_console() {
        let parts = load(&workspace_root().join("board/configs/rtos.toml")).unwrap();
        assert_eq!(
            parts,
            [Partition {
                name: "rtos".into(),
                image: "rtos".into(),
                channel: chan::GUEST_BASE,
                linux: None,
            }]
        );
        assert_eq!(console_names(&parts).unwrap(), ["rtos"]);
    }

    #[test]
    fn a_bad_config_is_one_line_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("xtask-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("broken.toml");
        std::fs::write(&path, "board = \"qemu-virt\"\n[[partition]]\nname = 3\n").unwrap();
        let err = format!("{:#}", load(&path).unwrap_err());
        std::fs::remove_dir_all(&dir).ok();
        assert!(!err.contains('\n'), "{err}");
        assert!(err.contains("broken.toml"), "{err}");
    }

    #[test]
    fn console_names_fill_gaps() {
        let parts = [Partition {
            name: "linux".into(),
            image: "linux".into(),
            channel: chan::GUEST_BASE + 1,
            linux: None,
        }];
        assert_eq!(console_names(&parts).unwrap(), ["partition0", "linux"]);
    }
}
