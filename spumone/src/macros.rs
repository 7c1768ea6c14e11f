//! Logging macros that expand to defmt (framed log) or to plain text (`plain-log`).
//!
//! Only the format syntax both accept is used: `{}`, `{:x}` and `{:#x}`.

#![allow(unused_macros)]
#[cfg(all(target_os = "none", not(feature = "plain-log")))]
macro_rules! info {
    ($($arg:tt)*) => { ::defmt::info!($($arg)*) };
}
#[cfg(all(target_os = "none", not(feature = "plain-log")))]
macro_rules! warn {
    ($($arg:tt)*) => { ::defmt::warn!($($arg)*) };
}
#[cfg(all(target_os = "none", not(feature = "plain-log")))]
macro_rules! error {
    ($($arg:tt)*) => { ::defmt::error!($($arg)*) };
}

#[cfg(all(target_os = "none", feature = "plain-log"))]
macro_rules! info {
    ($($arg:tt)*) => { $crate::arch::log::plain_line("", ::core::format_args!($($arg)*)) };
}
#[cfg(all(target_os = "none", feature = "plain-log"))]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::arch::log::plain_line("WARN ", ::core::format_args!($($arg)*)) };
}
#[cfg(all(target_os = "none", feature = "plain-log"))]
macro_rules! error {
    ($($arg:tt)*) => { $crate::arch::log::plain_line("ERROR ", ::core::format_args!($($arg)*)) };
}

/// A `warn!` line a guest can cause (`$source` its partition index, `$class` a
/// `hvcore::loglimit::Class`): printed only if this core's rate limiter lets it through.
macro_rules! guest_warn {
    ($source:expr, $class:expr, $($arg:tt)*) => {
        if $crate::arch::log::allow($source, $class) {
            warn!($($arg)*)
        }
    };
}

/// An `info!` line a guest can cause, rate-limited like [`guest_warn!`].
macro_rules! guest_info {
    ($source:expr, $class:expr, $($arg:tt)*) => {
        if $crate::arch::log::allow($source, $class) {
            info!($($arg)*)
        }
    };
}
