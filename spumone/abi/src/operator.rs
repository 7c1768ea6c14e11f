//! Operator commands typed on the console: the escape byte, then one command letter. spumone
//! takes them out of the console input before it reaches the focused guest; the host tools
//! send them (`cargo xtask run ... --resume-after`, say). The escape and
//! [`crate::mgmt::MANAGE`] start a management request line instead.

/// Ctrl-] (GS), as telnet uses it: rare in typed text and passed through when doubled.
pub const ESCAPE: u8 = 0x1d;
/// After [`ESCAPE`]: resume the partition the DSM paused.
pub const RESUME: u8 = b'r';
/// After [`ESCAPE`]: pause the partition the DSM checks, as an alert under policy `pause`
/// would (its vCPUs held in EL2 until [`RESUME`]).
pub const PAUSE: u8 = b'p';

/// The bytes that resume a partition paused by the DSM.
pub const RESUME_SEQUENCE: [u8; 2] = [ESCAPE, RESUME];

/// The bytes that pause the partition the DSM checks.
pub const PAUSE_SEQUENCE: [u8; 2] = [ESCAPE, PAUSE];
