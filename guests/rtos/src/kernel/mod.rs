//! The RTOS kernel proper: every scheduling and synchronization decision,
//! as pure state with no hardware access, in the μITRON 4.0 / TOPPERS/JSP
//! manner with Rust names.
//!
//! **Model.** One [`Kernel`] value holds all objects, built once from a
//! static [`Config`] by [`Kernel::new`]. Tasks have priorities 1 (most
//! urgent) to 16 and are FIFO within a priority. The running task stays at
//! the head of its ready queue, so a preempted task resumes first.
//!
//! **Who calls what.** The arch layer owns contexts, stacks, the GIC and the
//! timer. A task's system call becomes a call to a service here (e.g.
//! [`Kernel::wait_semaphore`]). Interrupt handlers are bracketed by
//! [`Kernel::enter_interrupt`]/[`Kernel::exit_interrupt`]; inside them only
//! the services documented as "task or interrupt context" are allowed, the
//! others return `E_CTX`. After every service call from a task, and when
//! the outermost interrupt returns, the arch calls [`Kernel::dispatch`]: it
//! says which task to run (`to`), and whether to resume it as it was, start
//! it at its entry point, or resume it with the result of the wait it was
//! blocked in.
//!
//! **Blocking.** A service that must wait returns `Ok(Outcome::Blocked)`;
//! the caller is no longer ready and `dispatch` switches away. When the
//! wait ends (signal, timeout, `release_wait`) the result (`E_OK` plus any
//! data, `E_TMOUT`, `E_RLWAI`) is stored in the task and returned as
//! [`Resume::Released`] by the `dispatch` that picks it again — possibly
//! the very next one, if it never left the CPU. [`wait_result_registers`]
//! maps it to the code and value for the task's return registers.
//!
//! **Time.** All times are [`Ticks`] of the monotonic counter the arch
//! reads (on aarch64 the virtual counter at `CNTFRQ_EL0`); services that
//! time out take `now` and relative ticks. Tick-less: the arch programs a
//! one-shot timer for [`Kernel::next_deadline`], and on expiry calls
//! [`Kernel::on_timer`] with the counter, which returns the cyclic handlers
//! to call with their programmed deadlines ([`CyclicFiring`]).

mod check;
mod config;
mod cyclic;
mod error;
mod interrupt;
mod list;
mod ready;
mod sync;
mod system;
mod task;
mod timer;
mod types;

pub use config::*;
pub use cyclic::{CyclicFiring, TimerReport};
pub use error::*;
pub use interrupt::InterruptLine;
pub use system::{Dispatch, Kernel, Resume};
pub use timer::{TimerEntry, TimerEvent, TimerQueue};
pub use types::*;

#[cfg(test)]
mod tests;
