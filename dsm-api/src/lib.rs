//! D-System Monitor runtime API.
//!
//! Placeholder: the DSM issue fills this crate with the operations a checker sees (guest RAM,
//! vCPU registers, a bounded stage-1 walker, symbols, watches, reports) and the checker trait.
//! It stays `no_std` and independent of spumone so checkers can be tested on the host.
#![no_std]
#![forbid(unsafe_code)]
