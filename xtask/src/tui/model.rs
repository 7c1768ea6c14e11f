//! What the interactive screen shows, built from the run's lines and events alone (no
//! terminal here, so it is tested on the host).

use std::collections::{BTreeMap, VecDeque};

use crate::bench::{parse_latency_line, LatencyStats};
use crate::event::Event;

/// Latency rounds kept for the plot.
pub const ROUNDS: usize = 240;
/// Lines kept for the hypervisor log's tail.
const TAIL: usize = 200;
/// The DSM's findings and events kept.
const NOTES: usize = 50;

/// Whose console a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Hv,
    Rtos,
    Linux,
    /// Another partition, raw bytes, QEMU.
    Other,
}

/// What a partition is doing, as the events tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionState {
    Running,
    Paused,
    Stopped(i64),
}

#[derive(Debug, Clone, Default)]
pub struct Model {
    /// One latency round per entry, oldest first.
    pub rounds: VecDeque<LatencyStats>,
    /// The RTOS's last `latency` line, as printed.
    pub latest_latency: Option<String>,
    /// Each DSM checker's last `dsm pass` line, by checker.
    pub checkers: BTreeMap<String, String>,
    /// `dsm ALERT` lines and failed checks, oldest first.
    pub findings: VecDeque<String>,
    /// Alerts, pauses, resumes, stops and the shutdown, oldest first.
    pub events: VecDeque<String>,
    /// Partitions in config order.
    pub partitions: Vec<(String, PartitionState)>,
    /// Where each (partition, vCPU) runs: its core.
    pub placement: BTreeMap<(String, u32), u32>,
    /// The highest migration count logged.
    pub migrations: u64,
    /// Each partition's migration policy, when logged.
    pub policies: BTreeMap<String, String>,
    /// The hypervisor's lines (and QEMU's, raw bytes), oldest first.
    pub hv_tail: VecDeque<String>,
}

impl Model {
    pub fn new(partitions: &[String]) -> Model {
        Model {
            partitions: partitions
                .iter()
                .map(|p| (p.clone(), PartitionState::Running))
                .collect(),
            ..Model::default()
        }
    }

    /// Takes one complete line (without its source prefix). Linux's lines are not here: its
    /// pane takes the console's bytes as they come.
    pub fn line(&mut self, origin: Origin, text: &str, event: Option<&Event>) {
        match origin {
            Origin::Rtos => {
                if let Ok(stats) = parse_latency_line(text) {
                    push_bounded(&mut self.rounds, stats, ROUNDS);
                    self.latest_latency = Some(text.trim_end().to_string());
                }
            }
            Origin::Hv | Origin::Other => {
                push_bounded(&mut self.hv_tail, text.to_string(), TAIL);
                if let Some(event) = event {
                    self.event(event);
                }
                self.hv_line(text);
            }
            Origin::Linux => {}
        }
    }

    fn hv_line(&mut self, text: &str) {
        if let Some(at) = text.find("dsm pass ") {
            let pass = &text[at + "dsm pass ".len()..];
            if let Some(checker) = pass.split_whitespace().next() {
                self.checkers
                    .insert(checker.to_string(), pass.trim_end().to_string());
            }
        } else if let Some(at) = text.find("dsm ALERT ").or_else(|| text.find("dsm check ")) {
            push_bounded(&mut self.findings, text[at..].to_string(), NOTES);
        } else if let Some((partition, vcpu, core, count)) = placement(text) {
            self.placement.insert((partition, vcpu), core);
            if let Some(count) = count {
                self.migrations = self.migrations.max(count);
            }
        } else if let Some((partition, policy)) = policy(text) {
            self.policies.insert(partition, policy);
        }
    }

    fn event(&mut self, event: &Event) {
        let state = match event {
            Event::PartitionPaused { name } => Some((name, PartitionState::Paused)),
            Event::PartitionResumed { name } => Some((name, PartitionState::Running)),
            Event::PartitionStopped { name, code } => Some((name, PartitionState::Stopped(*code))),
            _ => None,
        };
        if let Some((name, state)) = state {
            match self.partitions.iter_mut().find(|(n, _)| n == name) {
                Some((_, s)) => *s = state,
                None => self.partitions.push((name.clone(), state)),
            }
        }
        if !matches!(event, Event::Other(_)) {
            push_bounded(&mut self.events, event.to_string(), NOTES);
        }
    }

    /// The state of partition `name`, if known.
    pub fn state(&self, name: &str) -> Option<&PartitionState> {
        self.partitions
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
    }
}

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T, limit: usize) {
    if queue.len() == limit {
        queue.pop_front();
    }
    queue.push_back(item);
}

/// A vCPU's core from `migrate P vcpu V: core A -> core B (migration N)` or from
/// `partition P vcpu V: entering at ADDR on core C`: (partition, vCPU, core, migration count).
fn placement(text: &str) -> Option<(String, u32, u32, Option<u64>)> {
    if let Some(at) = text.find("migrate ") {
        let words: Vec<&str> = text[at + "migrate ".len()..].split_whitespace().collect();
        let [partition, "vcpu", vcpu, "core", _, "->", "core", to, "(migration", count, ..] =
            words.as_slice()
        else {
            return None;
        };
        return Some((
            partition.to_string(),
            number(vcpu)?,
            number(to)?,
            number(count),
        ));
    }
    let at = text.find("partition ")?;
    let words: Vec<&str> = text[at + "partition ".len()..].split_whitespace().collect();
    let [partition, "vcpu", vcpu, "entering", "at", _, "on", "core", core, ..] = words.as_slice()
    else {
        return None;
    };
    Some((partition.to_string(), number(vcpu)?, number(core)?, None))
}

/// A number in a log word such as `0:` or `3)`.
fn number<T: std::str::FromStr>(word: &str) -> Option<T> {
    word.trim_matches([':', '(', ')']).parse().ok()
}

/// `partition P: migration policy NAME`.
fn policy(text: &str) -> Option<(String, String)> {
    let at = text.find("partition ")?;
    let rest: Vec<&str> = text[at + "partition ".len()..].split_whitespace().collect();
    let [partition, "migration", "policy", name, ..] = rest.as_slice() else {
        return None;
    };
    Some((
        partition.trim_end_matches(':').to_string(),
        name.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        Model::new(&["rtos".into(), "linux".into()])
    }

    #[test]
    fn latency_rounds_are_plotted_and_the_last_kept_as_text() {
        let mut m = model();
        m.line(
            Origin::Rtos,
            "latency n=1000 min=100 mean=200 p50=190 p99=900 max=4000 misses=0",
            None,
        );
        m.line(Origin::Rtos, "hist 0 0 3 5", None);
        m.line(Origin::Rtos, "latency n=1000 min=1", None);
        m.line(
            Origin::Rtos,
            "latency n=1000 min=90 mean=210 p50=180 p99=950 max=7000 misses=2",
            None,
        );
        // Linux printing a latency line is not the RTOS's round.
        m.line(
            Origin::Linux,
            "latency n=1 min=1 mean=1 p50=1 p99=1 max=1 misses=0",
            None,
        );
        let plotted: Vec<(u64, u64)> = m.rounds.iter().map(|r| (r.p99_ns, r.max_ns)).collect();
        assert_eq!(plotted, [(900, 4000), (950, 7000)]);
        assert_eq!(
            m.latest_latency.as_deref(),
            Some("latency n=1000 min=90 mean=210 p50=180 p99=950 max=7000 misses=2")
        );
        for _ in 0..ROUNDS {
            m.line(
                Origin::Rtos,
                "latency n=1 min=1 mean=1 p50=1 p99=1 max=1 misses=0",
                None,
            );
        }
        assert_eq!(m.rounds.len(), ROUNDS, "the plot keeps a window");
    }

    #[test]
    fn dsm_passes_findings_and_events() {
        let mut m = model();
        m.line(
            Origin::Hv,
            "1.000000 INFO  dsm pass vectors #1: 5000 ns in 3 calls over 10 ms",
            None,
        );
        m.line(
            Origin::Hv,
            "2.000000 INFO  dsm pass vectors #101: 4000 ns in 2 calls over 9 ms",
            None,
        );
        m.line(
            Origin::Hv,
            "2.100000 INFO  dsm pass creds #1: 100 ns in 1 calls over 1 ms",
            None,
        );
        m.line(
            Origin::Hv,
            "3.000000 ERROR dsm ALERT syscall-table: entry 59 changed",
            None,
        );
        let alert = Event::DsmAlert {
            checker: "syscall-table".into(),
            partition: "linux".into(),
        };
        m.line(Origin::Hv, &format!("event: {alert}"), Some(&alert));
        let paused = Event::PartitionPaused {
            name: "linux".into(),
        };
        m.line(
            Origin::Hv,
            "event: partition-paused name=linux",
            Some(&paused),
        );
        assert_eq!(m.checkers.len(), 2);
        assert_eq!(
            m.checkers["vectors"],
            "vectors #101: 4000 ns in 2 calls over 9 ms"
        );
        assert_eq!(
            Vec::from(m.findings.clone()),
            ["dsm ALERT syscall-table: entry 59 changed"]
        );
        assert_eq!(m.state("linux"), Some(&PartitionState::Paused));
        assert_eq!(m.state("rtos"), Some(&PartitionState::Running));
        let resumed = Event::PartitionResumed {
            name: "linux".into(),
        };
        m.line(Origin::Hv, "event: ...", Some(&resumed));
        assert_eq!(m.state("linux"), Some(&PartitionState::Running));
        let stopped = Event::PartitionStopped {
            name: "linux".into(),
            code: 3,
        };
        m.line(Origin::Hv, "event: ...", Some(&stopped));
        assert_eq!(m.state("linux"), Some(&PartitionState::Stopped(3)));
        assert_eq!(m.events.len(), 4, "{:?}", m.events);
        assert_eq!(m.hv_tail.len(), 8);
    }

    #[test]
    fn vcpu_placement_follows_entries_and_migrations() {
        let mut m = model();
        m.line(
            Origin::Hv,
            "0.001 INFO  partition linux vcpu 0: entering at 0x40480000 on core 0 (shared)",
            None,
        );
        m.line(
            Origin::Hv,
            "0.001 INFO  partition linux vcpu 1: entering at 0x40480000 on core 1",
            None,
        );
        m.line(
            Origin::Hv,
            "0.001 INFO  partition linux: migration policy spumone",
            None,
        );
        m.line(
            Origin::Hv,
            "0.002869 INFO  migrate linux vcpu 0: core 0 -> core 1 (migration 7)",
            None,
        );
        m.line(
            Origin::Hv,
            "0.003 ERROR migration: vcpu 1.0 cannot depart core 1 (busy)",
            None,
        );
        let placed: Vec<_> = m
            .placement
            .iter()
            .map(|((p, v), c)| (p.as_str(), *v, *c))
            .collect();
        assert_eq!(placed, [("linux", 0, 1), ("linux", 1, 1)]);
        assert_eq!(m.migrations, 7);
        assert_eq!(m.policies["linux"], "spumone");
    }
}
