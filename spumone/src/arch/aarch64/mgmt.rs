//! The management channel's mechanism: reads what `hvcore::mgmt` needs to decide a request,
//! carries out its decision and sends the answer frames on `HV_MGMT`. Requests come from the
//! console input (`linux::console_input`), which only the host's end of the UART reaches:
//! guests see their emulated UARTs only.

use core::fmt;

use board::rt::{LinuxBoot, Partition};
use spumone_abi::mgmt::{self as abi, record, Head, Outcome, Request};

use super::config::{CONFIG, LINUX};
use super::{cpu, dsm, guest, linux, log, migrate, percore, switch};
use crate::hvcore::mgmt::{self, decide, Action, Kind, Restart, View};
use crate::hvcore::operator::Command;
use crate::hvcore::MAX_PARTITIONS;

/// Carries out one operator command from the console.
pub fn serve(command: Command) {
    match command {
        Command::Pause => dsm::operator_pause(None),
        Command::Resume => dsm::operator_resume(None),
        Command::BadFrame(e) => {
            warn!("mgmt: a request that is not a request line refused");
            reply(0, Outcome::Err(e.code()), format_args!("{e}"));
        }
        Command::Request(line) => request(&line),
    }
}

fn reply(seq: u8, outcome: Outcome, args: fmt::Arguments) {
    log::answer(Head { seq, outcome }, args);
}

fn request(line: &str) {
    let seq = abi::sequence(line);
    let request = match Request::parse(line) {
        Ok((_, request)) => request,
        Err(e) => {
            warn!("mgmt: request {} refused: it cannot be read", seq);
            return reply(seq, Outcome::Err(e.code()), format_args!("{e}"));
        }
    };
    let mut views: heapless::Vec<View<'static>, MAX_PARTITIONS> = heapless::Vec::new();
    for partition in CONFIG.partitions.iter().take(MAX_PARTITIONS) {
        let _ = views.push(view(partition));
    }
    let checkers = mgmt::Checkers {
        names: dsm::checker_names(),
        pending: dsm::check_pending(),
    };
    let action = match decide(&request, &views, checkers) {
        Ok(action) => action,
        Err(refusal) => {
            info!("mgmt: request {} ({}) refused", seq, request.verb());
            return reply(seq, Outcome::Err(refusal.code), format_args!("{refusal}"));
        }
    };
    info!("mgmt: request {} ({})", seq, request.verb());
    let partition = |index: usize| CONFIG.partitions.get(index);
    match action {
        Action::Status => status(seq),
        Action::Pause(_) => dsm::operator_pause(Some(seq)),
        Action::Resume(_) => dsm::operator_resume(Some(seq)),
        Action::Stop(index) => {
            if let Some(p) = partition(index) {
                stop(p, seq)
            }
        }
        Action::Check(checker) => dsm::operator_check(checker, seq),
        Action::Restart(index) => {
            if let Some(p) = partition(index) {
                guest::request_restart(p, seq)
            }
        }
    }
}

/// The operator's stop: as the DSM stops a partition, with exit code 0 (asked for, not a
/// failure).
fn stop(partition: &'static Partition, seq: u8) {
    let index = usize::from(partition.index);
    // Answered first: if it is the last partition, the machine powers off in the stop.
    reply(seq, Outcome::Ok, format_args!("{} stopped", partition.name));
    guest::stop_partition(partition, 0, "operator command");
    // The stop kicks the partition's other cores; if this one runs it too (the request may
    // have been read in a hold or a wait for the DSM), it leaves at its next interrupt.
    let here = percore::this_core().running();
    if here.is_some_and(|(p, _)| p == index) {
        super::kick(cpu::core_index());
    }
}

/// Partition `partition` as `hvcore::mgmt` sees it.
fn view(partition: &'static Partition) -> View<'static> {
    let index = usize::from(partition.index);
    let life = guest::state(index).unwrap_or(crate::hvcore::lifecycle::State::Stopped { code: 0 });
    let kind = if linux::is_rtos(partition.index) {
        Kind::Rtos
    } else {
        Kind::Linux
    };
    let restart =
        if LinuxBoot::find(LINUX, partition.index).is_none() || !linux::can_restart(partition) {
            Restart::NoCopy
        } else if switch::shares_core(partition) {
            Restart::MovingCores
        } else {
            Restart::Possible
        };
    View {
        name: partition.name,
        kind,
        state: mgmt::state(life, dsm::is_paused(index)),
        dsm: dsm::pause_ability(index),
        restart,
        busy: guest::restart_asked(index) || (dsm::operator_busy() && kind == Kind::Linux),
    }
}

/// The `status` answer: partitions, vCPUs, migration, the DSM and its checkers.
fn status(seq: u8) {
    let mut emit =
        |record: &dyn fmt::Display| reply(seq, Outcome::Record, format_args!("{record}"));
    for partition in CONFIG.partitions.iter().take(MAX_PARTITIONS) {
        let index = usize::from(partition.index);
        let view = view(partition);
        emit(&record::Partition {
            name: partition.name,
            kind: view.kind.name(),
            state: view.state,
            restarts: linux::resets(index),
        });
        for (vcpu, placed) in partition.vcpus.iter().enumerate() {
            emit(&record::Vcpu {
                partition: partition.name,
                vcpu,
                core: migrate::core_of(index, vcpu).unwrap_or(usize::from(placed.core)),
                on: guest::is_on(index, vcpu),
            });
        }
    }
    for boot in LINUX {
        if let Some(partition) = CONFIG.partitions.get(usize::from(boot.partition)) {
            emit(&record::Migration {
                partition: partition.name,
                policy: migrate::policy_name(usize::from(boot.partition)),
                count: migrate::count(),
            });
        }
    }
    dsm::status(&mut emit);
    reply(seq, Outcome::Ok, format_args!("status"));
}
