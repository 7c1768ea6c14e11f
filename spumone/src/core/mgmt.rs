//! Which management command is valid in which partition state
//! ([`spumone_abi::mgmt::Request`]): a request either becomes one [`Action`] for the arch
//! layer to carry out, or a [`Refusal`] that says why not.
//!
//! The operator acts on the Linux partition only. The RTOS is never held, stopped or
//! restarted from outside: spumone's promise is that nothing Linux does or suffers delays it,
//! and a pause is the DSM's hold of the checked partition's vCPUs, which the RTOS is not.

use core::fmt;

use spumone_abi::mgmt::record::State;
use spumone_abi::mgmt::{ErrorCode, Request};

use super::lifecycle;

/// What kind of guest a partition runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Rtos,
    Linux,
}

impl Kind {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Rtos => "rtos",
            Self::Linux => "linux",
        }
    }
}

/// Whether the DSM can pause the partition now (a pause is its hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dsm {
    /// It does not check this partition in this run.
    Off,
    /// It has not taken its baselines yet (the kernel is booting).
    Baselining,
    /// It checks the partition: a pause can hold it.
    Checking,
}

/// Whether the partition can come back from a pristine copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    Possible,
    /// No `reset_copy` in its config (or the copy did not fit).
    NoCopy,
    /// Its vCPUs share cores or migrate: the restart path handles one vCPU per core only.
    MovingCores,
}

/// One partition as the state machine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View<'a> {
    pub name: &'a str,
    pub kind: Kind,
    pub state: State,
    pub dsm: Dsm,
    pub restart: Restart,
    /// A pause, resume or restart was asked and is not carried out yet.
    pub busy: bool,
}

/// The DSM's checkers, for `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkers<'a> {
    /// The compiled-in checkers, in the runtime's order.
    pub names: &'a [&'a str],
    /// An operator's `check` waits for its verdict.
    pub pending: bool,
}

/// What the arch layer is to do, on partition index (config order) or checker index where
/// there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Status,
    Pause(usize),
    Resume(usize),
    Stop(usize),
    Restart(usize),
    Check(usize),
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why<'a> {
    UnknownPartition {
        asked: &'a str,
        known: &'a [View<'a>],
    },
    UnknownChecker {
        asked: &'a str,
        known: &'a [&'a str],
    },
    /// A `check` with no DSM in the run.
    NoDsm,
    /// A `check` of a paused partition.
    PausedCheck(&'a str),
    CheckPending,
    /// `verb` on the RTOS.
    RealTime {
        verb: &'static str,
        name: &'a str,
    },
    AlreadyPaused(&'a str),
    NotPaused(&'a str),
    Stopped {
        name: &'a str,
        code: i64,
    },
    Restarting(&'a str),
    Busy(&'a str),
    DsmOff(&'a str),
    DsmBaselining(&'a str),
    NoCopy(&'a str),
    MovingCores(&'a str),
    /// A restart of a paused partition.
    PausedRestart(&'a str),
    NotYet(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal<'a> {
    pub code: ErrorCode,
    pub why: Why<'a>,
}

impl fmt::Display for Refusal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.why {
            Why::UnknownPartition { asked, known } => {
                write!(f, "no partition named {asked} (partitions:")?;
                for view in known {
                    write!(f, " {}", view.name)?;
                }
                write!(f, ")")
            }
            Why::UnknownChecker { asked, known } => {
                write!(f, "no checker named {asked} (checkers:")?;
                for name in known {
                    write!(f, " {name}")?;
                }
                write!(f, ")")
            }
            Why::NoDsm => write!(f, "the DSM checks no partition in this run"),
            Why::PausedCheck(name) => write!(
                f,
                "{name} is paused: the DSM checks a running partition only; resume it first"
            ),
            Why::CheckPending => write!(f, "an earlier check still waits for its verdict"),
            Why::RealTime { verb, name } => write!(
                f,
                "the operator cannot {verb} {name}: it is the real-time partition, and spumone \
                 never holds, stops or restarts it from outside, so nothing done to Linux can \
                 cost it a deadline"
            ),
            Why::AlreadyPaused(name) => write!(f, "{name} is paused already"),
            Why::NotPaused(name) => write!(f, "{name} is not paused: it is running"),
            Why::Stopped { name, code } => write!(
                f,
                "{name} is stopped (exit code {code}): a stopped partition takes no command"
            ),
            Why::Restarting(name) => write!(f, "{name} is restarting; try again once it runs"),
            Why::Busy(name) => write!(
                f,
                "an earlier pause, resume or restart of {name} is still under way"
            ),
            Why::DsmOff(name) => write!(
                f,
                "pausing {name} needs the DSM, which does not check it in this run"
            ),
            Why::DsmBaselining(name) => write!(
                f,
                "the DSM is still taking {name}'s baselines (it can pause it once it checks it); \
                 try again in a moment"
            ),
            Why::NoCopy(name) => write!(
                f,
                "{name} has no pristine copy to restart from (no reset_copy in its config)"
            ),
            Why::MovingCores(name) => write!(
                f,
                "{name} shares a core or migrates between cores: spumone restarts only a \
                 partition whose vCPUs own their cores (policy pinned)"
            ),
            Why::PausedRestart(name) => {
                write!(
                    f,
                    "{name} is paused: resume it before a restart, or stop it"
                )
            }
            Why::NotYet(what) => write!(f, "not supported yet: {what}"),
        }
    }
}

/// A partition's state for the operator: the lifecycle's, with a pause (the DSM's hold of a
/// running partition) on top.
pub fn state(life: lifecycle::State, paused: bool) -> State {
    match life {
        lifecycle::State::Running if paused => State::Paused,
        lifecycle::State::Running => State::Running,
        lifecycle::State::Resetting => State::Restarting,
        lifecycle::State::Stopped { code } => State::Stopped { code },
    }
}

const fn refuse(code: ErrorCode, why: Why<'_>) -> Refusal<'_> {
    Refusal { code, why }
}

/// Decides what `request` does given the partitions `views` (config order) and the DSM's
/// `checkers`.
pub fn decide<'a>(
    request: &Request<'a>,
    views: &'a [View<'a>],
    checkers: Checkers<'a>,
) -> Result<Action, Refusal<'a>> {
    use ErrorCode::*;
    let (verb, asked) = match *request {
        Request::Status => return Ok(Action::Status),
        Request::Check(checker) => return check(checker, views, checkers),
        Request::Migrate { .. } => {
            return Err(refuse(
                NotSupported,
                Why::NotYet("migrate (vCPUs move by their migration policy only)"),
            ))
        }
        Request::Policy(_) => {
            return Err(refuse(
                NotSupported,
                Why::NotYet("policy (the policy is chosen at boot: cargo xtask run --policy)"),
            ))
        }
        Request::Pause(p) | Request::Resume(p) | Request::Stop(p) | Request::Restart(p) => {
            (request.verb(), p)
        }
    };
    let Some(index) = views.iter().position(|v| v.name == asked) else {
        return Err(refuse(
            UnknownPartition,
            Why::UnknownPartition {
                asked,
                known: views,
            },
        ));
    };
    let view = &views[index];
    let name = view.name;
    if view.kind == Kind::Rtos {
        return Err(refuse(NotAllowed, Why::RealTime { verb, name }));
    }
    match view.state {
        State::Stopped { code } => return Err(refuse(InvalidState, Why::Stopped { name, code })),
        State::Restarting => return Err(refuse(Busy, Why::Restarting(name))),
        State::Running | State::Paused => {}
    }
    if view.busy {
        return Err(refuse(Busy, Why::Busy(name)));
    }
    let paused = view.state == State::Paused;
    match *request {
        Request::Pause(_) if paused => Err(refuse(InvalidState, Why::AlreadyPaused(name))),
        Request::Pause(_) => match view.dsm {
            Dsm::Off => Err(refuse(NotSupported, Why::DsmOff(name))),
            Dsm::Baselining => Err(refuse(Busy, Why::DsmBaselining(name))),
            Dsm::Checking => Ok(Action::Pause(index)),
        },
        Request::Resume(_) if paused => Ok(Action::Resume(index)),
        Request::Resume(_) => Err(refuse(InvalidState, Why::NotPaused(name))),
        Request::Stop(_) => Ok(Action::Stop(index)),
        Request::Restart(_) if paused => Err(refuse(InvalidState, Why::PausedRestart(name))),
        Request::Restart(_) => match view.restart {
            Restart::Possible => Ok(Action::Restart(index)),
            Restart::NoCopy => Err(refuse(NotAllowed, Why::NoCopy(name))),
            Restart::MovingCores => Err(refuse(NotSupported, Why::MovingCores(name))),
        },
        _ => Err(refuse(UnknownCommand, Why::NotYet(verb))),
    }
}

/// `check CHECKER`: the DSM runs it now on the partition it checks, if that one runs.
fn check<'a>(
    asked: &'a str,
    views: &'a [View<'a>],
    checkers: Checkers<'a>,
) -> Result<Action, Refusal<'a>> {
    use ErrorCode::*;
    let Some(view) = views.iter().find(|v| v.dsm != Dsm::Off) else {
        return Err(refuse(NotSupported, Why::NoDsm));
    };
    let name = view.name;
    match view.state {
        State::Stopped { code } => return Err(refuse(InvalidState, Why::Stopped { name, code })),
        State::Restarting => return Err(refuse(Busy, Why::Restarting(name))),
        State::Paused => return Err(refuse(InvalidState, Why::PausedCheck(name))),
        State::Running => {}
    }
    if view.dsm == Dsm::Baselining {
        return Err(refuse(Busy, Why::DsmBaselining(name)));
    }
    if checkers.pending {
        return Err(refuse(Busy, Why::CheckPending));
    }
    match checkers.names.iter().position(|&n| n == asked) {
        Some(index) => Ok(Action::Check(index)),
        None => Err(refuse(
            UnknownChecker,
            Why::UnknownChecker {
                asked,
                known: checkers.names,
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    fn rtos() -> View<'static> {
        View {
            name: "rtos",
            kind: Kind::Rtos,
            state: State::Running,
            dsm: Dsm::Off,
            restart: Restart::NoCopy,
            busy: false,
        }
    }

    fn linux(state: State) -> View<'static> {
        View {
            name: "linux",
            kind: Kind::Linux,
            state,
            dsm: Dsm::Checking,
            restart: Restart::Possible,
            busy: false,
        }
    }

    /// The outcome of the request line `line` (after its sequence number).
    fn ask<'a>(
        line: &'a str,
        views: &'a [View<'a>],
    ) -> Result<Action, (ErrorCode, std::string::String)> {
        ask_with(line, views, false)
    }

    const CHECKERS: [&str; 2] = ["vectors", "text-hash"];

    fn ask_with<'a>(
        line: &'a str,
        views: &'a [View<'a>],
        pending: bool,
    ) -> Result<Action, (ErrorCode, std::string::String)> {
        let (_, request) = Request::parse(line).unwrap();
        let checkers = Checkers {
            names: &CHECKERS,
            pending,
        };
        decide(&request, views, checkers).map_err(|r| (r.code, r.to_string()))
    }

    #[test]
    fn a_running_linux_takes_pause_stop_and_restart_but_not_resume() {
        let views = [rtos(), linux(State::Running)];
        assert_eq!(ask("1 status", &views), Ok(Action::Status));
        assert_eq!(ask("1 pause linux", &views), Ok(Action::Pause(1)));
        assert_eq!(ask("1 stop linux", &views), Ok(Action::Stop(1)));
        assert_eq!(ask("1 restart linux", &views), Ok(Action::Restart(1)));
        let (code, why) = ask("1 resume linux", &views).unwrap_err();
        assert_eq!(code, ErrorCode::InvalidState);
        assert_eq!(why, "linux is not paused: it is running");
    }

    #[test]
    fn a_paused_linux_takes_resume_and_stop_but_not_pause_or_restart() {
        let views = [rtos(), linux(State::Paused)];
        assert_eq!(ask("1 resume linux", &views), Ok(Action::Resume(1)));
        assert_eq!(ask("1 stop linux", &views), Ok(Action::Stop(1)));
        assert_eq!(ask("1 status", &views), Ok(Action::Status));
        assert_eq!(
            ask("1 pause linux", &views),
            Err((ErrorCode::InvalidState, "linux is paused already".into()))
        );
        let (code, why) = ask("1 restart linux", &views).unwrap_err();
        assert_eq!(code, ErrorCode::InvalidState);
        assert!(why.contains("resume it before a restart"), "{why}");
    }

    #[test]
    fn a_stopped_linux_takes_nothing_but_status() {
        let views = [rtos(), linux(State::Stopped { code: 255 })];
        for line in [
            "1 pause linux",
            "1 resume linux",
            "1 stop linux",
            "1 restart linux",
        ] {
            let (code, why) = ask(line, &views).unwrap_err();
            assert_eq!(code, ErrorCode::InvalidState, "{line}");
            assert_eq!(
                why, "linux is stopped (exit code 255): a stopped partition takes no command",
                "{line}"
            );
        }
        assert_eq!(ask("1 status", &views), Ok(Action::Status));
    }

    #[test]
    fn a_restarting_or_busy_linux_asks_to_wait() {
        let views = [rtos(), linux(State::Restarting)];
        assert_eq!(ask("1 pause linux", &views).unwrap_err().0, ErrorCode::Busy);
        let mut busy = linux(State::Running);
        busy.busy = true;
        let views = [rtos(), busy];
        for line in ["1 pause linux", "1 stop linux", "1 restart linux"] {
            let (code, why) = ask(line, &views).unwrap_err();
            assert_eq!(code, ErrorCode::Busy, "{line}");
            assert!(why.contains("still under way"), "{why}");
        }
    }

    #[test]
    fn the_rtos_is_never_paused_stopped_or_restarted_and_says_why() {
        let views = [rtos(), linux(State::Running)];
        for verb in ["pause", "resume", "stop", "restart"] {
            let line = std::format!("1 {verb} rtos");
            let (code, why) = ask(&line, &views).unwrap_err();
            assert_eq!(code, ErrorCode::NotAllowed, "{line}");
            assert!(
                why.starts_with(&std::format!(
                    "the operator cannot {verb} rtos: it is the real-time partition"
                )),
                "{why}"
            );
        }
    }

    #[test]
    fn an_unknown_partition_is_named_with_the_known_ones() {
        let views = [rtos(), linux(State::Running)];
        assert_eq!(
            ask("1 pause windows", &views),
            Err((
                ErrorCode::UnknownPartition,
                "no partition named windows (partitions: rtos linux)".into()
            ))
        );
    }

    #[test]
    fn pausing_needs_a_dsm_that_checks_linux() {
        let mut off = linux(State::Running);
        off.dsm = Dsm::Off;
        let views = [off];
        let (code, why) = ask("1 pause linux", &views).unwrap_err();
        assert_eq!(code, ErrorCode::NotSupported);
        assert!(why.contains("needs the DSM"), "{why}");
        let mut early = linux(State::Running);
        early.dsm = Dsm::Baselining;
        let views = [early];
        assert_eq!(ask("1 pause linux", &views).unwrap_err().0, ErrorCode::Busy);
        // Stopping does not need the DSM.
        assert_eq!(ask("1 stop linux", &views), Ok(Action::Stop(0)));
    }

    #[test]
    fn a_restart_needs_a_pristine_copy_and_cores_of_its_own() {
        let mut no_copy = linux(State::Running);
        no_copy.restart = Restart::NoCopy;
        let views = [no_copy];
        let (code, why) = ask("1 restart linux", &views).unwrap_err();
        assert_eq!(code, ErrorCode::NotAllowed);
        assert!(why.contains("no reset_copy"), "{why}");
        let mut moving = linux(State::Running);
        moving.restart = Restart::MovingCores;
        let views = [moving];
        let (code, why) = ask("1 restart linux", &views).unwrap_err();
        assert_eq!(code, ErrorCode::NotSupported);
        assert!(why.contains("policy pinned"), "{why}");
    }

    #[test]
    fn a_pause_shows_only_on_a_running_partition() {
        use lifecycle::State as Life;
        assert_eq!(state(Life::Running, false), State::Running);
        assert_eq!(state(Life::Running, true), State::Paused);
        assert_eq!(state(Life::Resetting, true), State::Restarting);
        assert_eq!(
            state(Life::Stopped { code: 3 }, true),
            State::Stopped { code: 3 }
        );
    }

    #[test]
    fn a_check_runs_a_known_checker_of_a_running_checked_linux() {
        let views = [rtos(), linux(State::Running)];
        assert_eq!(ask("1 check text-hash", &views), Ok(Action::Check(1)));
        assert_eq!(
            ask("1 check creds", &views),
            Err((
                ErrorCode::UnknownChecker,
                "no checker named creds (checkers: vectors text-hash)".into()
            ))
        );
        let (code, why) = ask_with("1 check vectors", &views, true).unwrap_err();
        assert_eq!(code, ErrorCode::Busy);
        assert_eq!(why, "an earlier check still waits for its verdict");
        let paused = [rtos(), linux(State::Paused)];
        let (code, why) = ask("1 check vectors", &paused).unwrap_err();
        assert_eq!(code, ErrorCode::InvalidState);
        assert!(why.contains("resume it first"), "{why}");
        let stopped = [rtos(), linux(State::Stopped { code: 0 })];
        let (code, _) = ask("1 check vectors", &stopped).unwrap_err();
        assert_eq!(code, ErrorCode::InvalidState);
        let mut early = linux(State::Running);
        early.dsm = Dsm::Baselining;
        let views = [rtos(), early];
        assert_eq!(
            ask("1 check vectors", &views).unwrap_err().0,
            ErrorCode::Busy
        );
        let mut off = linux(State::Running);
        off.dsm = Dsm::Off;
        let views = [rtos(), off];
        assert_eq!(
            ask("1 check vectors", &views),
            Err((
                ErrorCode::NotSupported,
                "the DSM checks no partition in this run".into()
            ))
        );
    }

    #[test]
    fn commands_not_built_yet_say_so() {
        let views = [rtos(), linux(State::Running)];
        for line in ["1 migrate linux 0 2", "1 policy load"] {
            let (code, why) = ask(line, &views).unwrap_err();
            assert_eq!(code, ErrorCode::NotSupported, "{line}");
            assert!(why.starts_with("not supported yet: "), "{why}");
        }
    }
}
