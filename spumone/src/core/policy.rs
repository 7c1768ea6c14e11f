//! Where Linux's vCPUs should live: the migration policies.
//!
//! # What
//!
//! A policy is a pure function, [`decide`], from an observed state ([`Observed`]: where each
//! Linux vCPU is, which RTOS cores are active, how busy each core was) to a list of
//! migration requests ([`Move`]). Four policies exist, chosen per partition in the board
//! config as `policy = "pinned" | "spumone" | "load" | "rotate"` ([`Policy::from_name`]):
//!
//! - `pinned`: vCPUs never move (static partitioning, the baseline).
//! - `spumone`: a Linux vCPU on a core whose RTOS is active moves to the least loaded allowed
//!   core without an active RTOS; it returns to its home core once that RTOS has been idle for
//!   [`SpumoneParams::return_after`] ticks (so an RTOS waking every period does not make it
//!   bounce).
//! - `load`: the number of cores Linux uses follows its load. With `L` the summed busy
//!   fraction of the cores in use and `k` their number, it spreads to `k + 1` cores when
//!   `L > spread_above * k` and consolidates to `k - 1` when `L < consolidate_below * (k - 1)`.
//!   Since `consolidate_below < spread_above`, the same load never both spreads and
//!   consolidates: after consolidating, the per-core load is below `consolidate_below`,
//!   so below `spread_above`; after spreading, the load per remaining core would stay above
//!   `spread_above`. That gap is the hysteresis.
//! - `rotate`: a stress test of migration itself, not a placement. Every
//!   [`RotateParams::every`] ticks the next vCPU in turn moves to the next core it may use
//!   (the RTOS's included, where the RTOS still comes first), so a run migrates Linux's vCPUs
//!   thousands of times while the tests check that Linux computes right.
//!
//! # Why pure
//!
//! The decision is tested on the host for every behaviour, including "the spumone policy never
//! leaves a Linux vCPU on the RTOS core while the RTOS is runnable". The arch layer only
//! gathers the inputs and feeds the output to [`Migration::request`](super::migrate::Migration).
//!
//! # How the arch layer drives it
//!
//! Periodically (every busy-measurement window) and when an RTOS vCPU becomes ready or
//! waiting, one core builds [`Observed`]: for each Linux vCPU, `core` is
//! `Migration::deliver_to()` and `movable` is whether it is `Running` (not mid-migration);
//! `busy[c]` is the fraction of the last window core `c` spent running Linux vCPUs, in
//! thousandths. It then requests each returned move; refused ones are asked again next time.

use super::sched::{Ticks, VcpuId};
use super::MAX_CORES;

/// Busy fraction in thousandths of one core (0..=1000).
pub type Permille = u16;

/// Full load of one core.
pub const FULL: Permille = 1000;

/// Parameters of the `spumone` policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpumoneParams {
    /// How long an RTOS must have been idle before displaced Linux vCPUs return to its core.
    pub return_after: Ticks,
}

/// Parameters of the `load` policy (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadParams {
    spread_above: Permille,
    consolidate_below: Permille,
}

impl LoadParams {
    /// `None` unless `consolidate_below < spread_above <= FULL` (no hysteresis otherwise).
    pub const fn new(spread_above: Permille, consolidate_below: Permille) -> Option<Self> {
        if consolidate_below < spread_above && spread_above <= FULL {
            Some(Self {
                spread_above,
                consolidate_below,
            })
        } else {
            None
        }
    }

    pub const fn spread_above(&self) -> Permille {
        self.spread_above
    }

    pub const fn consolidate_below(&self) -> Permille {
        self.consolidate_below
    }
}

/// Parameters of the `rotate` policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotateParams {
    /// Ticks per step; each step moves at most one vCPU.
    pub every: Ticks,
}

/// A partition's migration policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Pinned,
    Spumone(SpumoneParams),
    Load(LoadParams),
    Rotate(RotateParams),
}

impl Policy {
    /// Default `spumone` hysteresis: 10 ms at QEMU virt's 62.5 MHz counter.
    pub const DEFAULT_RETURN_AFTER: Ticks = 625_000;
    /// Default `load` thresholds: spread above 80 % per core, consolidate below 50 %.
    pub const DEFAULT_LOAD: LoadParams = LoadParams {
        spread_above: 800,
        consolidate_below: 500,
    };
    /// Default `rotate` step: 2 ms at 62.5 MHz (the policy runs at the RTOS's 1 ms periods,
    /// so a step is seen at once).
    pub const DEFAULT_ROTATE_EVERY: Ticks = 125_000;

    /// The policy a config names, with default parameters.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "pinned" => Some(Self::Pinned),
            "spumone" => Some(Self::Spumone(SpumoneParams {
                return_after: Self::DEFAULT_RETURN_AFTER,
            })),
            "load" => Some(Self::Load(Self::DEFAULT_LOAD)),
            "rotate" => Some(Self::Rotate(RotateParams {
                every: Self::DEFAULT_ROTATE_EVERY,
            })),
            _ => None,
        }
    }

    /// How often the policy needs to look at least, if more often than an untrapped RTOS
    /// core's usual period (`rotate` moves a vCPU every step).
    pub const fn look_every(&self) -> Option<Ticks> {
        match self {
            Self::Rotate(p) => Some(p.every),
            _ => None,
        }
    }

    pub const fn name(&self) -> &'static str {
        match self {
            Self::Pinned => "pinned",
            Self::Spumone(_) => "spumone",
            Self::Load(_) => "load",
            Self::Rotate(_) => "rotate",
        }
    }
}

/// One Linux vCPU as the policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinuxVcpu {
    pub id: VcpuId,
    /// The core it lives on, or is on its way to.
    pub core: u8,
    /// The core the config placed it on.
    pub home: u8,
    /// Not mid-migration: a request for it would be accepted.
    pub movable: bool,
}

/// What an RTOS vCPU is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtosState {
    /// Ready or running.
    Runnable,
    /// Waiting (trapped WFI) since this counter value.
    IdleSince(Ticks),
}

/// A core that hosts an RTOS vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtosCore {
    pub core: u8,
    pub state: RtosState,
}

/// The state a policy decides from.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    pub now: Ticks,
    /// Cores the Linux partition may use, bit `c` for core `c`.
    pub allowed: u32,
    pub vcpus: &'a [LinuxVcpu],
    pub rtos: &'a [RtosCore],
    /// Per core, the fraction of the last window spent running Linux.
    pub busy: &'a [Permille],
}

/// The busy fraction of a core that ran Linux `busy` ticks of a `window` ticks long (capped at
/// [`FULL`]; 0 for an empty window).
pub fn busy_permille(busy: Ticks, window: Ticks) -> Permille {
    if window == 0 {
        return 0;
    }
    let p = u128::from(busy) * u128::from(FULL) / u128::from(window);
    p.min(u128::from(FULL)) as Permille
}

/// Ask for `vcpu` to move to core `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    pub vcpu: VcpuId,
    pub to: u8,
}

/// A policy's requests: at most one per vCPU (a partition has at most `MAX_CORES` vCPUs).
pub type Moves = heapless::Vec<Move, MAX_CORES>;

/// The migration requests `policy` makes for the state `obs`.
pub fn decide(policy: &Policy, obs: &Observed) -> Moves {
    match policy {
        Policy::Pinned => Moves::new(),
        Policy::Spumone(p) => spumone(p, obs),
        Policy::Load(p) => load(p, obs),
        Policy::Rotate(p) => rotate(p, obs),
    }
}

impl Observed<'_> {
    fn allowed_cores(&self) -> impl Iterator<Item = u8> + '_ {
        (0..MAX_CORES as u8).filter(|&c| self.allowed & bit(c) != 0)
    }

    fn busy(&self, core: u8) -> Permille {
        self.busy.get(usize::from(core)).copied().unwrap_or(0)
    }

    /// Whether an RTOS on `core` is runnable (or idle for less than `grace` ticks).
    fn rtos_active(&self, core: u8, grace: Ticks) -> bool {
        self.rtos.iter().any(|r| {
            r.core == core
                && match r.state {
                    RtosState::Runnable => true,
                    RtosState::IdleSince(t) => self.now.saturating_sub(t) < grace,
                }
        })
    }

    fn has_rtos(&self, core: u8) -> bool {
        self.rtos.iter().any(|r| r.core == core)
    }
}

/// The mask bit of `core` (none for a core number beyond the mask).
fn bit(core: u8) -> u32 {
    1u32.checked_shl(u32::from(core)).unwrap_or(0)
}

/// Linux vCPUs per core once the moves so far are done.
fn counts(obs: &Observed, moves: &[Move]) -> [usize; MAX_CORES] {
    let mut n = [0; MAX_CORES];
    for v in obs.vcpus {
        let core = moves
            .iter()
            .find(|m| m.vcpu == v.id)
            .map_or(v.core, |m| m.to);
        if let Some(slot) = n.get_mut(usize::from(core)) {
            *slot += 1;
        }
    }
    n
}

fn push(moves: &mut Moves, vcpu: VcpuId, to: u8) {
    if let Some(m) = moves.iter_mut().find(|m| m.vcpu == vcpu) {
        m.to = to;
    } else {
        // One entry per vCPU and at most MAX_CORES of them: never full.
        let _ = moves.push(Move { vcpu, to });
    }
}

fn spumone(p: &SpumoneParams, obs: &Observed) -> Moves {
    let mut moves = Moves::new();
    // Leave a core whose RTOS runs (no grace: get out at once).
    for v in obs.vcpus.iter().filter(|v| v.movable) {
        if !obs.rtos_active(v.core, 0) {
            continue;
        }
        let n = counts(obs, &moves);
        let target = obs
            .allowed_cores()
            .filter(|&c| !obs.rtos_active(c, p.return_after))
            .min_by_key(|&c| (n[usize::from(c)], obs.busy(c), c));
        if let Some(to) = target {
            push(&mut moves, v.id, to);
        }
    }
    // Return home once its RTOS has been idle long enough.
    for v in obs.vcpus.iter().filter(|v| v.movable && v.core != v.home) {
        let home_ok = obs.allowed & bit(v.home) != 0 && !obs.rtos_active(v.home, p.return_after);
        if home_ok {
            push(&mut moves, v.id, v.home);
        }
    }
    moves
}

fn load(p: &LoadParams, obs: &Observed) -> Moves {
    let mut moves = Moves::new();
    let n = counts(obs, &moves);
    let used = |c: u8| n.get(usize::from(c)).is_some_and(|&k| k > 0);
    let k = (0..MAX_CORES as u8).filter(|&c| used(c)).count();
    let allowed = obs.allowed_cores().count();
    if k == 0 {
        return moves;
    }
    let total: u32 = (0..MAX_CORES as u8)
        .filter(|&c| used(c))
        .map(|c| u32::from(obs.busy(c)))
        .sum();
    let spread = total > u32::from(p.spread_above) * k as u32 && k < allowed.min(obs.vcpus.len());
    let consolidate = k > 1 && total < u32::from(p.consolidate_below) * (k as u32 - 1);

    // The cores to use, as a bit mask.
    let mut target: u32 = (0..MAX_CORES as u8)
        .filter(|&c| used(c) && obs.allowed & bit(c) != 0)
        .fold(0, |m, c| m | bit(c));
    // Preference: a core without an RTOS, then the idler one, then the lower index.
    let rank = |c: u8| (obs.has_rtos(c), obs.busy(c), c);
    if spread {
        if let Some(c) = obs
            .allowed_cores()
            .filter(|&c| target & bit(c) == 0)
            .min_by_key(|&c| rank(c))
        {
            target |= bit(c);
        }
    } else if consolidate {
        if let Some(c) = (0..MAX_CORES as u8)
            .filter(|&c| target & bit(c) != 0)
            // Give up an RTOS core first, then the one with the fewest vCPUs to move.
            .max_by_key(|&c| (obs.has_rtos(c), core::cmp::Reverse(n[usize::from(c)]), c))
        {
            target &= !bit(c);
        }
    } else {
        return moves;
    }
    if target == 0 {
        return moves;
    }

    // Spread the vCPUs evenly over the target cores; the preferred cores take the extra ones.
    let mut order: heapless::Vec<u8, MAX_CORES> = (0..MAX_CORES as u8)
        .filter(|&c| target & bit(c) != 0)
        .collect();
    order.sort_unstable_by_key(|&c| rank(c));
    let mut quota = [0usize; MAX_CORES];
    let total_vcpus = obs.vcpus.len();
    for (i, &c) in order.iter().enumerate() {
        quota[usize::from(c)] =
            total_vcpus / order.len() + usize::from(i < total_vcpus % order.len());
    }
    for v in obs.vcpus.iter().filter(|v| v.movable) {
        let n = counts(obs, &moves);
        let here = usize::from(v.core);
        let over = n.get(here).zip(quota.get(here)).is_some_and(|(n, q)| n > q);
        let must_leave = target & bit(v.core) == 0 || over;
        if !must_leave {
            continue;
        }
        if let Some(&to) = order
            .iter()
            .filter(|&&c| n[usize::from(c)] < quota[usize::from(c)])
            .min_by_key(|&&c| n[usize::from(c)] as isize - quota[usize::from(c)] as isize)
        {
            push(&mut moves, v.id, to);
        }
    }
    moves
}

/// Step `k = now / every` is vCPU `k mod n`'s turn, and its target is the core `k / n + 1`
/// places after its home among the allowed ones. The target is a function of the step, not of
/// where the vCPU is, so however often the policy looks within a step it asks for one move.
fn rotate(p: &RotateParams, obs: &Observed) -> Moves {
    let mut moves = Moves::new();
    let n = obs.vcpus.len() as u64;
    let cores: heapless::Vec<u8, MAX_CORES> = obs.allowed_cores().collect();
    if n == 0 || cores.len() < 2 || p.every == 0 {
        return moves;
    }
    let step = obs.now / p.every;
    let v = obs.vcpus[(step % n) as usize];
    let home = cores.iter().position(|&c| c == v.home).unwrap_or(0) as u64;
    let to = cores[((home + step / n + 1) % cores.len() as u64) as usize];
    if v.movable && v.core != to {
        push(&mut moves, v.id, to);
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::super::sched::XorShift;
    use super::*;

    const ALL: u32 = 0b1111;
    const RETURN: Ticks = 1_000;
    const SPUMONE: Policy = Policy::Spumone(SpumoneParams {
        return_after: RETURN,
    });

    fn linux(placement: &[u8]) -> heapless::Vec<LinuxVcpu, MAX_CORES> {
        placement
            .iter()
            .enumerate()
            .map(|(i, &c)| LinuxVcpu {
                id: VcpuId::new(1, i as u8),
                core: c,
                home: i as u8,
                movable: true,
            })
            .collect()
    }

    fn apply(vcpus: &mut [LinuxVcpu], moves: &[Move]) {
        for m in moves {
            let v = vcpus.iter_mut().find(|v| v.id == m.vcpu).unwrap();
            v.core = m.to;
        }
    }

    fn obs<'a>(
        now: Ticks,
        vcpus: &'a [LinuxVcpu],
        rtos: &'a [RtosCore],
        busy: &'a [Permille],
    ) -> Observed<'a> {
        Observed {
            now,
            allowed: ALL,
            vcpus,
            rtos,
            busy,
        }
    }

    #[test]
    fn names_round_trip() {
        for name in ["pinned", "spumone", "load", "rotate"] {
            assert_eq!(Policy::from_name(name).unwrap().name(), name);
        }
        assert_eq!(Policy::from_name("fast"), None);
        assert_eq!(
            Policy::from_name("rotate").unwrap().look_every(),
            Some(Policy::DEFAULT_ROTATE_EVERY)
        );
        assert_eq!(Policy::from_name("spumone").unwrap().look_every(), None);
        assert!(LoadParams::new(800, 500).is_some());
        assert!(LoadParams::new(500, 500).is_none(), "no hysteresis");
        assert!(LoadParams::new(1001, 500).is_none());
    }

    #[test]
    fn busy_is_a_capped_fraction_of_the_window() {
        assert_eq!(busy_permille(250, 1_000), 250);
        assert_eq!(busy_permille(0, 1_000), 0);
        assert_eq!(busy_permille(5_000, 1_000), FULL, "accounted late: capped");
        assert_eq!(busy_permille(10, 0), 0);
        assert_eq!(busy_permille(u64::MAX, u64::MAX), FULL);
    }

    #[test]
    fn pinned_never_moves() {
        let vcpus = linux(&[0, 1, 2, 3]);
        let rtos = [RtosCore {
            core: 0,
            state: RtosState::Runnable,
        }];
        let o = obs(0, &vcpus, &rtos, &[1000; 4]);
        assert!(decide(&Policy::Pinned, &o).is_empty());
    }

    #[test]
    fn spumone_leaves_the_active_rtos_core_and_returns_after_idle() {
        let mut vcpus = linux(&[0, 1, 2, 3]);
        let busy = [900, 900, 100, 500];
        let mut rtos = [RtosCore {
            core: 0,
            state: RtosState::Runnable,
        }];
        let moves = decide(&SPUMONE, &obs(0, &vcpus, &rtos, &busy));
        // Every other core holds one vCPU; core 2 is the idlest.
        assert_eq!(
            moves.as_slice(),
            &[Move {
                vcpu: VcpuId::new(1, 0),
                to: 2
            }]
        );
        apply(&mut vcpus, &moves);
        // The RTOS just went idle: the vCPU does not come back yet.
        rtos[0].state = RtosState::IdleSince(5_000);
        assert!(decide(&SPUMONE, &obs(5_500, &vcpus, &rtos, &busy)).is_empty());
        // Idle for long enough: home.
        let moves = decide(&SPUMONE, &obs(6_000, &vcpus, &rtos, &busy));
        assert_eq!(
            moves.as_slice(),
            &[Move {
                vcpu: VcpuId::new(1, 0),
                to: 0
            }]
        );
        // Mid-migration vCPUs are left alone.
        vcpus[0].movable = false;
        rtos[0].state = RtosState::Runnable;
        vcpus[0].core = 0;
        assert!(decide(&SPUMONE, &obs(7_000, &vcpus, &rtos, &busy)).is_empty());
    }

    #[test]
    fn spumone_picks_least_loaded_allowed_core() {
        let mut vcpus = linux(&[0, 0, 1, 1, 2]);
        for v in vcpus.iter_mut() {
            v.home = v.core;
        }
        let rtos = [RtosCore {
            core: 0,
            state: RtosState::Runnable,
        }];
        let mut o = obs(0, &vcpus, &rtos, &[0; 4]);
        let moves = decide(&SPUMONE, &o);
        // Core 3 is empty: the first goes there; then cores 2 and 3 hold one each, core 2
        // wins on index.
        assert_eq!(moves.len(), 2);
        assert_eq!(moves[0].to, 3);
        assert_eq!(moves[1].to, 2);
        // Core 3 not allowed: the first goes to core 2 (one vCPU), the next to core 1 (a tie
        // at two, lower index).
        o.allowed = 0b0111;
        let moves = decide(&SPUMONE, &o);
        assert_eq!((moves[0].to, moves[1].to), (2, 1));
    }

    #[test]
    fn spumone_never_leaves_linux_on_a_runnable_rtos_core() {
        let mut rng = XorShift::new(7);
        for _ in 0..5_000 {
            let cores = 2 + rng.below(3) as u8;
            let n = 1 + rng.below(MAX_CORES as u64) as usize;
            let placement: heapless::Vec<u8, MAX_CORES> =
                (0..n).map(|_| rng.below(u64::from(cores)) as u8).collect();
            let mut vcpus = linux(&placement);
            for v in vcpus.iter_mut() {
                v.home = rng.below(u64::from(cores)) as u8;
            }
            let now = 10_000;
            let rtos: heapless::Vec<RtosCore, 2> = (0..1 + rng.below(2) as u8)
                .map(|core| RtosCore {
                    core,
                    state: if rng.below(2) == 0 {
                        RtosState::Runnable
                    } else {
                        RtosState::IdleSince(now - rng.below(2 * RETURN))
                    },
                })
                .collect();
            let busy: heapless::Vec<Permille, MAX_CORES> =
                (0..cores).map(|_| rng.below(1001) as u16).collect();
            let allowed = ((1u32 << cores) - 1) & !(rng.below(4) as u32 & 0b10);
            let o = Observed {
                now,
                allowed,
                vcpus: &vcpus,
                rtos: &rtos,
                busy: &busy,
            };
            let moves = decide(&SPUMONE, &o);
            let escape = (0..cores).any(|c| allowed & (1 << c) != 0 && !o.rtos_active(c, RETURN));
            for m in &moves {
                assert!(allowed & (1 << m.to) != 0, "moved to a core not allowed");
            }
            apply(&mut vcpus, &moves);
            let rtos_runnable = |c: u8| {
                rtos.iter()
                    .any(|r| r.core == c && r.state == RtosState::Runnable)
            };
            if escape {
                for v in &vcpus {
                    assert!(
                        !rtos_runnable(v.core),
                        "{v:?} left on a runnable RTOS core ({rtos:?}, allowed {allowed:#b})"
                    );
                }
            }
        }
    }

    #[test]
    fn out_of_range_cores_are_never_targets() {
        // A corrupt view (cores beyond the masks) must not panic or name such a core.
        let mut vcpus = linux(&[0, 40, 200]);
        vcpus[0].home = 250;
        let rtos = [RtosCore {
            core: 0,
            state: RtosState::Runnable,
        }];
        for policy in [SPUMONE, LOAD] {
            for busy in [[0; 4], [1000; 4]] {
                let moves = decide(&policy, &obs(0, &vcpus, &rtos, &busy));
                assert!(moves.iter().all(|m| m.to < 4), "{moves:?}");
            }
        }
    }

    const LOAD: Policy = Policy::Load(Policy::DEFAULT_LOAD);

    /// Cores in use and their busy fractions when Linux demands `demand` thousandths of a
    /// core, shared evenly among the cores it uses.
    fn busy_for(vcpus: &[LinuxVcpu], demand: u32) -> [Permille; 4] {
        let mut busy = [0; 4];
        let used: heapless::Vec<u8, 4> = (0..4u8)
            .filter(|&c| vcpus.iter().any(|v| v.core == c))
            .collect();
        for &c in &used {
            busy[usize::from(c)] = (demand / used.len() as u32).min(1000) as Permille;
        }
        busy
    }

    fn used_cores(vcpus: &[LinuxVcpu]) -> usize {
        (0..4u8)
            .filter(|&c| vcpus.iter().any(|v| v.core == c))
            .count()
    }

    fn run_load(
        vcpus: &mut [LinuxVcpu],
        rtos: &[RtosCore],
        demand: u32,
        rounds: usize,
    ) -> Vec<usize> {
        let mut history = Vec::new();
        for _ in 0..rounds {
            let busy = busy_for(vcpus, demand);
            let moves = decide(&LOAD, &obs(0, vcpus, rtos, &busy));
            apply(vcpus, &moves);
            history.push(used_cores(vcpus));
        }
        history
    }

    #[test]
    fn load_consolidates_when_idle() {
        let mut vcpus = linux(&[0, 1, 2, 3]);
        let h = run_load(&mut vcpus, &[], 100, 5);
        assert_eq!(h, [3, 2, 1, 1, 1]);
        // All four vCPUs share the single remaining core.
        assert!(vcpus.iter().all(|v| v.core == vcpus[0].core));
        // With an RTOS on core 0, that core is the first given up.
        let mut vcpus = linux(&[0, 1, 2, 3]);
        let rtos = [RtosCore {
            core: 0,
            state: RtosState::IdleSince(0),
        }];
        assert_eq!(run_load(&mut vcpus, &rtos, 100, 1), [3]);
        assert!(vcpus.iter().all(|v| v.core != 0));
    }

    #[test]
    fn load_spreads_when_busy_and_avoids_the_rtos_core() {
        let mut vcpus = linux(&[1, 1, 1, 1]);
        let rtos = [RtosCore {
            core: 0,
            state: RtosState::Runnable,
        }];
        let h = run_load(&mut vcpus, &rtos, 4000, 5);
        assert_eq!(h, [2, 3, 4, 4, 4]);
        // The RTOS core was taken last; now one vCPU per core.
        let mut per_core = [0; 4];
        for v in &vcpus {
            per_core[usize::from(v.core)] += 1;
        }
        assert_eq!(per_core, [1, 1, 1, 1]);
        // Spreading stops at what the load needs: 2.5 cores of demand settle on 4 cores
        // only if 3 are over the threshold (2500 / 3 = 833 > 800).
        let mut vcpus = linux(&[1, 1, 1, 1]);
        assert_eq!(run_load(&mut vcpus, &rtos, 2500, 5), [2, 3, 4, 4, 4]);
        let mut vcpus = linux(&[1, 1, 1, 1]);
        assert_eq!(run_load(&mut vcpus, &rtos, 2300, 5), [2, 3, 3, 3, 3]);
    }

    #[test]
    fn load_does_not_flap() {
        let mut rng = XorShift::new(3);
        for _ in 0..2_000 {
            let n = 1 + rng.below(4) as usize;
            let placement: heapless::Vec<u8, 4> = (0..n).map(|_| rng.below(4) as u8).collect();
            let mut vcpus = linux(&placement);
            let demand = rng.below(4_500) as u32;
            let h = run_load(&mut vcpus, &[], demand, 8);
            // For a steady load the core count only goes one way, then stays.
            let up = h.windows(2).any(|w| w[1] > w[0]);
            let down = h.windows(2).any(|w| w[1] < w[0]);
            assert!(!(up && down), "flapping {h:?} at demand {demand}");
            assert_eq!(h[6], h[7], "not settled: {h:?}");
        }
    }

    const ROTATE: Policy = Policy::Rotate(RotateParams { every: 100 });

    /// Runs `rotate` looking `looks` times per step for `steps` steps, moving what it asks.
    fn rotate_run(vcpus: &mut [LinuxVcpu], allowed: u32, steps: u64, looks: u64) -> u64 {
        let mut moved = 0;
        for t in 0..steps * looks {
            let now = t * 100 / looks;
            let o = Observed {
                now,
                allowed,
                vcpus,
                rtos: &[],
                busy: &[],
            };
            let moves = decide(&ROTATE, &o);
            assert!(moves.len() <= 1, "one vCPU per step: {moves:?}");
            for m in &moves {
                assert_ne!(
                    allowed & bit(m.to),
                    0,
                    "moved to a core it may not use: {m:?}"
                );
            }
            moved += moves.len() as u64;
            apply(vcpus, &moves);
        }
        moved
    }

    #[test]
    fn rotate_moves_one_vcpu_per_step_however_often_it_looks() {
        let mut vcpus = linux(&[0, 1, 2, 3]);
        let moved = rotate_run(&mut vcpus, ALL, 40, 7);
        assert_eq!(moved, 40, "every step moves its vCPU once");
        // After 40 steps each vCPU took 10 turns: 10 places on from home, mod 4 cores.
        for v in &vcpus {
            assert_eq!(v.core, (v.home + 10) % 4, "{v:?}");
        }
    }

    #[test]
    fn rotate_uses_only_allowed_cores_and_waits_for_a_vcpu_in_flight() {
        let mut vcpus = linux(&[1, 2, 3]);
        for (v, home) in vcpus.iter_mut().zip([1, 2, 3]) {
            v.home = home;
        }
        let moved = rotate_run(&mut vcpus, 0b1110, 30, 3);
        assert_eq!(moved, 30);
        assert!(vcpus.iter().all(|v| (1..=3).contains(&v.core)));

        let mut stuck = linux(&[0, 1]);
        stuck[0].movable = false;
        let o = obs(0, &stuck, &[], &[]);
        assert!(decide(&ROTATE, &o).is_empty(), "vCPU 0 is mid-migration");
        let one_core = Observed { allowed: 0b1, ..o };
        assert!(decide(
            &ROTATE,
            &Observed {
                now: 100,
                ..one_core
            }
        )
        .is_empty());
    }
}
