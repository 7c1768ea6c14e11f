//! The named scenarios `cargo xtask run` knows.

/// What `cargo xtask run` boots when no scenario is named.
pub const DEFAULT_SCENARIO: &str = "demo";

/// Seconds a run may take before it is stopped as hung.
pub const DEFAULT_TIMEOUT_SECS: u64 = 120;

/// How a scenario is put together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// spumone with the partitions of a config file (path relative to the workspace root).
    Hypervisor { config: &'static str },
    /// One guest image booted directly by QEMU on `cpus` cores, without virtualization; its
    /// plain console output is shown under the image's name.
    Native { image: &'static str, cpus: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    pub name: &'static str,
    pub description: &'static str,
    pub kind: Kind,
    /// Built by `cargo xtask test` and booted by the integration tests.
    pub tested: bool,
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "rtos",
        description: "spumone with the RTOS partition on core 0",
        kind: Kind::Hypervisor {
            config: "board/configs/rtos.toml",
        },
        tested: true,
    },
    Scenario {
        name: "rtos-native",
        description: "the RTOS image alone on QEMU, without the hypervisor (baseline)",
        kind: Kind::Native {
            image: "rtos",
            cpus: 1,
        },
        tested: true,
    },
    Scenario {
        name: "rtos-native-busy",
        description: "the RTOS image alone on a 2-core QEMU, its other core spinning, without the hypervisor (busy-neighbour baseline)",
        // One neighbour: under -icount three spinning cores leave the RTOS almost no turns.
        kind: Kind::Native {
            image: "rtos",
            cpus: 2,
        },
        tested: true,
    },
    Scenario {
        name: "linux",
        description: "spumone with Debian arm64 Linux on cores 1-3 (console emulated)",
        kind: Kind::Hypervisor {
            config: "board/configs/linux.toml",
        },
        tested: true,
    },
    Scenario {
        name: "demo",
        description: "spumone with the RTOS on core 0 and Debian arm64 Linux on cores 1-3",
        kind: Kind::Hypervisor {
            config: "board/configs/demo.toml",
        },
        tested: true,
    },
    Scenario {
        name: "shared",
        description: "spumone with the RTOS and Linux vCPU 0 sharing core 0 (RTOS first), Linux vCPUs 1-3 on cores 1-3, policy pinned",
        kind: Kind::Hypervisor {
            config: "board/configs/shared.toml",
        },
        tested: true,
    },
    Scenario {
        name: "shared-1",
        description: "a one-core machine (-smp 1): the RTOS and a one-vCPU Linux share core 0 (RTOS first), policy pinned; the sharing QEMU times exactly",
        kind: Kind::Hypervisor {
            config: "board/configs/shared-1.toml",
        },
        tested: true,
    },
    Scenario {
        name: "shared-2",
        description: "a two-core machine (-smp 2): the RTOS and Linux vCPU 0 share core 0 (RTOS first), Linux vCPU 1 owns core 1, policy pinned",
        kind: Kind::Hypervisor {
            config: "board/configs/shared-2.toml",
        },
        tested: true,
    },
    Scenario {
        name: "linux-native",
        description: "Debian arm64 Linux alone on QEMU, 3 cores, without the hypervisor (baseline)",
        // As many cores as the Linux partition has vCPUs under spumone, for a fair comparison.
        kind: Kind::Native {
            image: "linux",
            cpus: 3,
        },
        tested: true,
    },
    Scenario {
        name: "rtos-fault",
        description:
            "test: the RTOS probes addresses it was not given; spumone contains each access",
        kind: Kind::Hypervisor {
            config: "board/configs/rtos-fault.toml",
        },
        tested: true,
    },
];

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

/// The scenario called `name`, or an error listing the known ones.
pub fn lookup(name: &str) -> anyhow::Result<&'static Scenario> {
    find(name).ok_or_else(|| {
        let known: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
        anyhow::anyhow!("unknown scenario `{name}` (known: {})", known.join(", "))
    })
}

/// The `--list` text: one scenario a line, the default marked.
pub fn listing() -> String {
    let width = SCENARIOS.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for s in SCENARIOS {
        let mark = if s.name == DEFAULT_SCENARIO {
            " (default)"
        } else {
            ""
        };
        out.push_str(&format!("{:width$}  {}{mark}\n", s.name, s.description));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::workspace_root;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_default_exists() {
        let names: HashSet<&str> = SCENARIOS.iter().map(|s| s.name).collect();
        assert_eq!(names.len(), SCENARIOS.len(), "duplicate scenario name");
        assert!(find(DEFAULT_SCENARIO).is_some(), "default scenario missing");
    }

    #[test]
    fn every_config_exists_and_validates() {
        for s in SCENARIOS {
            if let Kind::Hypervisor { config } = s.kind {
                let path = workspace_root().join(config);
                assert!(path.is_file(), "{}: {} does not exist", s.name, config);
                let partitions = crate::config::load(&path)
                    .unwrap_or_else(|e| panic!("{}: {config} does not validate: {e:#}", s.name));
                assert!(!partitions.is_empty(), "{}: no partitions", s.name);
                for p in &partitions {
                    assert!(
                        crate::firmware::guest_image(&p.image).is_some(),
                        "{}: partition {} names unknown image {}",
                        s.name,
                        p.name,
                        p.image
                    );
                }
            }
        }
    }

    #[test]
    fn the_machine_has_the_cores_its_config_names() {
        let cores = |name: &str| match lookup(name).unwrap().kind {
            Kind::Hypervisor { config } => {
                crate::config::cores(&workspace_root().join(config)).unwrap()
            }
            Kind::Native { cpus, .. } => cpus,
        };
        assert_eq!(cores("shared-1"), 1);
        assert_eq!(cores("shared-2"), 2);
        assert_eq!(cores("shared"), 4);
        assert_eq!(cores("demo"), 4);
    }

    #[test]
    fn native_images_are_known() {
        for s in SCENARIOS {
            if let Kind::Native { image, .. } = s.kind {
                assert!(
                    crate::firmware::guest_image(image).is_some(),
                    "{}: unknown image {image}",
                    s.name
                );
            }
        }
    }

    #[test]
    fn listing_names_every_scenario_and_marks_the_default() {
        let text = listing();
        for s in SCENARIOS {
            let line = text
                .lines()
                .find(|l| l.split_whitespace().next() == Some(s.name))
                .unwrap_or_else(|| panic!("{} not listed in:\n{text}", s.name));
            assert!(line.contains(s.description));
            assert_eq!(line.contains("(default)"), s.name == DEFAULT_SCENARIO);
        }
    }

    #[test]
    fn unknown_scenario_error_lists_known_ones() {
        let err = lookup("nope").unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("rtos-native"), "{err}");
    }
}
