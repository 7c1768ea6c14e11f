//! Decoding of the spumone hypercall ABI ([`spumone_abi::hvc`]) into actions.
//!
//! The trap handler passes the guest's `x0..x7`, performs the action, then writes
//! [`HypercallAction::return_value`] to `x0`.

use spumone_abi::hvc;

/// Why a known hypercall was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidReason {
    /// `CONSOLE_WRITE` length above [`hvc::CONSOLE_WRITE_MAX`].
    ConsoleLength(u64),
}

/// What a hypercall asks the hypervisor to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HypercallAction {
    /// Report the ABI version.
    Version,
    /// Write `bytes[..len]` to the partition's console.
    ConsoleWrite {
        /// The bytes, unpacked from `x2..x7`.
        bytes: [u8; hvc::CONSOLE_WRITE_MAX],
        /// How many of `bytes` are valid.
        len: usize,
    },
    /// Give up the core to another vCPU.
    Yield,
    /// Stop the calling partition with an exit code.
    Exit {
        /// The exit code from `x1`.
        code: u64,
    },
    /// A known call with bad arguments; nothing happens.
    Invalid {
        /// What was wrong.
        reason: InvalidReason,
    },
    /// An unknown function id; nothing happens.
    Unknown {
        /// The function id from `w0`.
        id: u32,
    },
}

impl HypercallAction {
    /// The value for the guest's `x0` after the call; `None` if the call does not return.
    pub const fn return_value(&self) -> Option<u64> {
        match self {
            Self::Version => Some(hvc::ABI_VERSION),
            Self::ConsoleWrite { len, .. } => Some(*len as u64),
            Self::Yield => Some(hvc::SUCCESS),
            Self::Exit { .. } => None,
            Self::Invalid { .. } => Some(hvc::INVALID_PARAMETERS),
            Self::Unknown { .. } => Some(hvc::NOT_SUPPORTED),
        }
    }

    /// The bytes to write, for a console write.
    pub fn console_bytes(&self) -> Option<&[u8]> {
        match self {
            Self::ConsoleWrite { bytes, len } => bytes.get(..*len),
            _ => None,
        }
    }
}

/// Decodes a hypercall from the guest's `x0..x7` (the id is `w0`, as in SMCCC).
pub fn decode(regs: &[u64; 8]) -> HypercallAction {
    let id = regs[0] as u32;
    match u64::from(id) {
        hvc::VERSION => HypercallAction::Version,
        hvc::CONSOLE_WRITE => {
            let mut bytes = [0u8; hvc::CONSOLE_WRITE_MAX];
            let packed = [regs[2], regs[3], regs[4], regs[5], regs[6], regs[7]];
            match hvc::unpack_console_bytes(regs[1], &packed, &mut bytes) {
                Some(len) => HypercallAction::ConsoleWrite { bytes, len },
                None => HypercallAction::Invalid {
                    reason: InvalidReason::ConsoleLength(regs[1]),
                },
            }
        }
        hvc::YIELD => HypercallAction::Yield,
        hvc::EXIT => HypercallAction::Exit { code: regs[1] },
        _ => HypercallAction::Unknown { id },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: u64, args: &[u64]) -> [u64; 8] {
        let mut regs = [0u64; 8];
        regs[0] = id;
        regs[1..=args.len()].copy_from_slice(args);
        regs
    }

    fn console_call(text: &[u8]) -> [u64; 8] {
        let packed = hvc::pack_console_bytes(text);
        let mut regs = call(hvc::CONSOLE_WRITE, &[text.len() as u64]);
        regs[2..].copy_from_slice(&packed);
        regs
    }

    #[test]
    fn version() {
        let action = decode(&call(hvc::VERSION, &[]));
        assert_eq!(action, HypercallAction::Version);
        assert_eq!(action.return_value(), Some(0x0001_0000));
    }

    #[test]
    fn console_write_carries_the_bytes() {
        let action = decode(&console_call(b"hello, world\n"));
        assert_eq!(action.console_bytes(), Some(&b"hello, world\n"[..]));
        assert_eq!(action.return_value(), Some(13));

        let full = [b'x'; 48];
        let action = decode(&console_call(&full));
        assert_eq!(action.console_bytes(), Some(&full[..]));
        assert_eq!(action.return_value(), Some(48));

        let action = decode(&console_call(b""));
        assert_eq!(action.console_bytes(), Some(&b""[..]));
        assert_eq!(action.return_value(), Some(0));
    }

    #[test]
    fn console_write_reads_bytes_in_register_order() {
        // Byte i lives in x(2 + i / 8), bits 8 * (i % 8).
        let mut regs = call(hvc::CONSOLE_WRITE, &[10]);
        regs[2] = u64::from_le_bytes(*b"abcdefgh");
        regs[3] = u64::from_le_bytes(*b"ij......");
        let action = decode(&regs);
        assert_eq!(action.console_bytes(), Some(&b"abcdefghij"[..]));
    }

    #[test]
    fn console_write_too_long_is_invalid() {
        for len in [49, 1 << 32, u64::MAX] {
            let action = decode(&call(hvc::CONSOLE_WRITE, &[len]));
            assert_eq!(
                action,
                HypercallAction::Invalid {
                    reason: InvalidReason::ConsoleLength(len)
                }
            );
            assert_eq!(action.return_value(), Some(hvc::INVALID_PARAMETERS));
            assert_eq!(action.console_bytes(), None);
        }
    }

    #[test]
    fn yield_and_exit() {
        let action = decode(&call(hvc::YIELD, &[7, 7]));
        assert_eq!(action, HypercallAction::Yield);
        assert_eq!(action.return_value(), Some(hvc::SUCCESS));

        let action = decode(&call(hvc::EXIT, &[0xDEAD]));
        assert_eq!(action, HypercallAction::Exit { code: 0xDEAD });
        assert_eq!(action.return_value(), None);
    }

    #[test]
    fn unknown_ids_are_not_supported() {
        for id in [0xC600_0004, 0x8400_0000, 0xC600_0100, 0] {
            let action = decode(&call(id, &[1, 2, 3]));
            assert_eq!(action, HypercallAction::Unknown { id: id as u32 });
            assert_eq!(action.return_value(), Some(hvc::NOT_SUPPORTED));
        }
    }

    #[test]
    fn only_w0_selects_the_function() {
        let action = decode(&call(0xFFFF_FFFF_0000_0000 | hvc::YIELD, &[]));
        assert_eq!(action, HypercallAction::Yield);
    }
}
