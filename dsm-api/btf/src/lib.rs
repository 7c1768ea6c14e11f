//! Kernel struct layouts for the D-System Monitor, read from BTF.
//!
//! Debian builds its kernel with `CONFIG_DEBUG_INFO_BTF=y`, so the uncompressed `Image`
//! carries a `.BTF` section describing every kernel type. This crate validates that blob
//! ([`Btf::parse`], robust against malformed input), finds it inside an `Image`
//! ([`find_in_image`]), answers layout questions ([`Btf::offset_of`] and friends), and
//! gathers what the cross-view checkers need into a [`KernelLayout`] that renders as Rust
//! `const` source, so the firmware embeds the numbers instead of parsing BTF at run time.
//!
//! `no_std` and allocation-free: everything borrows from the blob.

#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

mod format;
mod locate;
mod query;
#[cfg(test)]
mod testblob;

pub use format::{
    ArrayInfo, Btf, Enumerator, Header, IntInfo, Kind, Member, Param, SecInfo, Type, Types,
    HEADER_LEN, INT_BOOL, INT_CHAR, INT_SIGNED, MAGIC, MAX_NAME_OFFSET, MAX_TYPES, VERSION,
};
pub use locate::find_in_image;
pub use query::{Field, POINTER_SIZE};

/// Why a blob was rejected or a question has no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The blob is shorter than its header says.
    Truncated,
    BadMagic,
    /// The magic reads byte-swapped: a big-endian blob, which an arm64 kernel never has.
    BigEndian,
    UnsupportedVersion(u8),
    BadHeader(&'static str),
    /// Type record `id` breaks a rule of the format.
    BadType {
        id: u32,
        why: &'static str,
    },
    /// A string offset outside the string section, or not UTF-8.
    BadString(u32),
    NoSuchType(u32),
    /// No type or enumerator has that name.
    NotFound,
    /// The struct has no member of that name.
    NoMember,
    NotComposite(u32),
    NotArray(u32),
    /// `void`, a function or a forward declaration has no size.
    NoSize(u32),
    /// A bitfield or unaligned member has no byte offset.
    Bitfield,
    /// A chain of typedefs, arrays or anonymous members too long to be real.
    TooDeep,
    Overflow,
    /// A member path is empty or malformed.
    BadPath,
    /// [`Btf::with_index`] got a table shorter than the type count.
    IndexTooSmall,
    /// No valid BTF blob in the image.
    NotInImage,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::BadHeader(why) => write!(f, "bad BTF header: {why}"),
            Error::BadType { id, why } => write!(f, "bad BTF type {id}: {why}"),
            other => write!(f, "{other:?}"),
        }
    }
}
