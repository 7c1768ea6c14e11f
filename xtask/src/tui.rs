//! The interactive run's screen: Linux's console where keys go, beside the RTOS's latency
//! rounds, the DSM's checkers and findings, the partitions and their vCPUs' cores, and the
//! hypervisor log's tail. `cargo xtask run` uses it on a terminal without `--cmd` or `--plain`.

mod console;
mod model;

use std::io::{self, IsTerminal};
use std::time::{Duration, Instant};

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::Line;
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, Paragraph};
use ratatui::{DefaultTerminal, Frame};
use spumone_abi::operator;

pub use console::{Console, View};
pub use model::{Model, Origin, PartitionState};

use crate::bench::LatencyStats;
use crate::event::Event;

/// After Ctrl-] (spumone's operator escape): leave the screen and stop the run. Not one of
/// spumone's own command letters, which go through to it.
pub const QUIT: u8 = b'q';
const _: () =
    assert!(QUIT != operator::PAUSE && QUIT != operator::RESUME && QUIT != operator::ESCAPE);
/// The way out, as the screen and the docs name it.
pub const HOW_TO_LEAVE: &str = "Ctrl-] q";

/// Redraws at most this often: the RTOS alone prints two lines a second, Linux far more.
const FRAME: Duration = Duration::from_millis(50);

/// Takes Ctrl-] q out of what the person types; every other byte goes to the guest as typed,
/// Ctrl-] r, Ctrl-] p and a doubled Ctrl-] included.
#[derive(Debug, Default)]
pub struct Keys {
    escaped: bool,
}

impl Keys {
    /// The bytes for the guest's console, and whether the person asked to leave (what was
    /// typed after that is dropped).
    pub fn feed(&mut self, typed: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(typed.len() + 1);
        for &b in typed {
            if self.escaped {
                self.escaped = false;
                if b == QUIT {
                    return (out, true);
                }
                out.extend([operator::ESCAPE, b]);
            } else if b == operator::ESCAPE {
                // Held until the next key says whether it is ours.
                self.escaped = true;
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

/// The screen in use: raw mode and the alternate screen, given back on drop (and by ratatui's
/// panic hook on a panic).
pub struct Tui {
    terminal: DefaultTerminal,
    model: Model,
    console: Console,
    title: String,
    footer: String,
    last_draw: Option<Instant>,
    dirty: bool,
}

impl Tui {
    /// Takes the screen, or `None` when stdin or stdout is not a terminal (or it cannot be set
    /// up, in which case the run goes on as a plain stream). `operator`: spumone takes its
    /// Ctrl-] commands on this console.
    pub fn enter(
        scenario: &str,
        partitions: &[String],
        log_dir: &str,
        operator: bool,
    ) -> Option<Tui> {
        if !io::stdin().is_terminal() || !io::stdout().is_terminal() {
            return None;
        }
        let terminal = match ratatui::try_init() {
            Ok(terminal) => terminal,
            Err(_) => {
                ratatui::restore();
                return None;
            }
        };
        Some(Tui {
            terminal,
            model: Model::new(partitions),
            console: Console::new(),
            title: format!(" spumone: {scenario} "),
            footer: format!(
                " {HOW_TO_LEAVE} leaves │ {}Ctrl-C goes to Linux │ logs in {log_dir}",
                if operator {
                    "Ctrl-] p / Ctrl-] r pause / resume Linux │ "
                } else {
                    ""
                }
            ),
            last_draw: None,
            dirty: true,
        })
    }

    /// Bytes of Linux's console, as they come.
    pub fn console(&mut self, bytes: &[u8]) {
        self.console.feed(bytes);
        self.dirty = true;
    }

    /// What the console owes the guest (answers to its cursor-position queries).
    pub fn replies(&mut self) -> Vec<u8> {
        self.console.take_replies()
    }

    /// A complete line of another source (Linux's come through [`Tui::console`]).
    pub fn line(&mut self, origin: Origin, text: &str, event: Option<&Event>) {
        self.model.line(origin, text, event);
        self.dirty = true;
    }

    /// Redraws if something changed and the last frame is old enough; a terminal resized
    /// shows at the next.
    pub fn draw_if_due(&mut self) {
        let due = self.last_draw.is_none_or(|t| t.elapsed() >= FRAME);
        if self.dirty && due {
            self.draw();
        }
    }

    /// Redraws now (the screen's size is read again first).
    pub fn draw(&mut self) {
        let Tui {
            terminal,
            model,
            console,
            title,
            footer,
            ..
        } = self;
        // A failed frame is retried at the next; the run must go on.
        let _ = terminal.draw(|frame| render(frame, model, console, title, footer));
        self.last_draw = Some(Instant::now());
        self.dirty = false;
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

fn render(frame: &mut Frame, model: &Model, console: &mut Console, title: &str, footer: &str) {
    let [main, hv, foot] = Layout::vertical([
        Constraint::Min(8),
        Constraint::Length(8),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(58), Constraint::Fill(1)]).areas(main);
    render_console(frame, model, console, title, left);

    let dsm_rows = dsm_lines(model);
    let placement = placement_lines(model);
    let [latency, dsm, partitions] = Layout::vertical([
        Constraint::Min(6),
        Constraint::Length(dsm_rows.len() as u16 + 2),
        Constraint::Length(placement.len() as u16 + 2),
    ])
    .areas(right);
    render_latency(frame, model, latency);
    frame.render_widget(
        Paragraph::new(dsm_rows).block(Block::bordered().title(" DSM ")),
        dsm,
    );
    frame.render_widget(
        Paragraph::new(placement).block(Block::bordered().title(" partitions and vCPUs ")),
        partitions,
    );

    let inner = hv.height.saturating_sub(2) as usize;
    let skip = model.hv_tail.len().saturating_sub(inner);
    let tail: Vec<Line> = model
        .hv_tail
        .iter()
        .skip(skip)
        .map(|l| Line::from(l.as_str()))
        .collect();
    frame.render_widget(
        Paragraph::new(tail).block(Block::bordered().title(" hypervisor log ")),
        hv,
    );
    frame.render_widget(Paragraph::new(footer).reversed(), foot);
}

fn render_console(
    frame: &mut Frame,
    model: &Model,
    console: &mut Console,
    title: &str,
    area: Rect,
) {
    let paused = model.state(crate::linux::CONSOLE) == Some(&PartitionState::Paused);
    let block = if paused {
        Block::bordered()
            .title(format!("{title}linux: PAUSED (Ctrl-] r resumes) "))
            .border_style(Style::new().fg(Color::Red))
    } else {
        Block::bordered().title(format!("{title}linux console (keys go here) "))
    };
    let inner = block.inner(area);
    console.set_size(inner.height as usize, inner.width as usize);
    let View { rows, cursor } = console.view(inner.width as usize, inner.height as usize);
    let rows: Vec<Line> = rows.into_iter().map(Line::from).collect();
    frame.render_widget(Paragraph::new(rows).block(block), area);
    if inner.width > 0 && inner.height > 0 {
        frame.set_cursor_position((inner.x + cursor.0 as u16, inner.y + cursor.1 as u16));
    }
}

fn render_latency(frame: &mut Frame, model: &Model, area: Rect) {
    let block = Block::bordered().title(Line::from(vec![
        " RTOS latency per round, µs: ".into(),
        "p99".yellow(),
        " ".into(),
        "max".red(),
        " ".into(),
    ]));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [plot, text] = Layout::vertical([Constraint::Fill(1), Constraint::Length(1)]).areas(inner);
    let latest = model
        .latest_latency
        .as_deref()
        .unwrap_or("no latency round yet");
    frame.render_widget(Paragraph::new(latest), text);
    if model.rounds.is_empty() {
        return;
    }
    let start = model::ROUNDS - model.rounds.len();
    // x: the round's slot in the window (the newest at the right); y: µs.
    let series = |ns: fn(&LatencyStats) -> u64| -> Vec<(f64, f64)> {
        (start..)
            .zip(&model.rounds)
            .map(|(x, r)| (x as f64, ns(r) as f64 / 1000.0))
            .collect()
    };
    let p99 = series(|r| r.p99_ns);
    let max = series(|r| r.max_ns);
    let top = max.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let chart = Chart::new(vec![
        plot_line(&max, Color::Red),
        plot_line(&p99, Color::Yellow),
    ])
    .x_axis(Axis::default().bounds([0.0, (model::ROUNDS - 1) as f64]))
    .y_axis(
        Axis::default()
            .bounds([0.0, top])
            .labels(["0".to_string(), format!("{top:.0}")]),
    );
    frame.render_widget(chart, plot);
}

fn plot_line(data: &[(f64, f64)], colour: Color) -> Dataset<'_> {
    Dataset::default()
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(Style::new().fg(colour))
        .data(data)
}

/// The DSM pane: each checker's last pass, then the last findings and events.
fn dsm_lines(model: &Model) -> Vec<Line<'static>> {
    let mut lines: Vec<Line> = model
        .checkers
        .values()
        .map(|pass| Line::from(format!("pass {pass}")))
        .collect();
    if lines.is_empty() {
        lines.push(Line::from("no pass yet"));
    }
    let last = |q: &std::collections::VecDeque<String>, n: usize| {
        q.iter()
            .skip(q.len().saturating_sub(n))
            .cloned()
            .collect::<Vec<_>>()
    };
    for finding in last(&model.findings, 3) {
        lines.push(Line::from(finding).red());
    }
    for event in last(&model.events, 3) {
        lines.push(Line::from(format!("event: {event}")).yellow());
    }
    lines
}

/// One line per partition: its state, its vCPUs' cores and its migration policy.
fn placement_lines(model: &Model) -> Vec<Line<'static>> {
    let mut lines: Vec<Line> = model
        .partitions
        .iter()
        .map(|(name, state)| {
            let state = match state {
                PartitionState::Running => "running".to_string(),
                PartitionState::Paused => "PAUSED".to_string(),
                PartitionState::Stopped(code) => format!("stopped (code {code})"),
            };
            let mut text = format!("{name}: {state}");
            for ((_, vcpu), core) in model.placement.iter().filter(|((p, _), _)| p == name) {
                text.push_str(&format!(" · vcpu {vcpu} on core {core}"));
            }
            if let Some(policy) = model.policies.get(name) {
                text.push_str(&format!(" · policy {policy}"));
            }
            Line::from(text)
        })
        .collect();
    if model.migrations > 0 {
        lines.push(Line::from(format!("{} migrations", model.migrations)));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctrl_bracket_q_leaves_and_only_it_is_taken() {
        let mut keys = Keys::default();
        assert_eq!(keys.feed(b"ls\r"), (b"ls\r".to_vec(), false));
        // spumone's own commands and a doubled escape pass through.
        assert_eq!(
            keys.feed(b"\x1dr\x1dp\x1d\x1d"),
            (b"\x1dr\x1dp\x1d\x1d".to_vec(), false)
        );
        assert_eq!(keys.feed(b"\x03"), (b"\x03".to_vec(), false), "Ctrl-C");
        assert_eq!(keys.feed(b"a\x1dqrest"), (b"a".to_vec(), true));
    }

    #[test]
    fn the_escape_may_come_in_one_read_and_its_letter_in_the_next() {
        let mut keys = Keys::default();
        assert_eq!(keys.feed(b"x\x1d"), (b"x".to_vec(), false));
        assert_eq!(keys.feed(b"r"), (b"\x1dr".to_vec(), false));
        assert_eq!(keys.feed(b"\x1d"), (Vec::new(), false));
        assert_eq!(keys.feed(b"q"), (Vec::new(), true));
        // After a doubled escape, `q` is just a letter for Linux.
        let mut keys = Keys::default();
        assert_eq!(keys.feed(b"\x1d\x1dq"), (b"\x1d\x1dq".to_vec(), false));
    }

    #[test]
    fn the_screen_renders_every_pane() {
        use ratatui::backend::TestBackend;
        let mut model = Model::new(&["rtos".into(), "linux".into()]);
        model.line(
            Origin::Rtos,
            "latency n=1000 min=100 mean=200 p50=190 p99=900 max=4000 misses=0",
            None,
        );
        model.line(
            Origin::Hv,
            "1.0 INFO  dsm pass vectors #1: 5000 ns in 3 calls over 10 ms",
            None,
        );
        model.line(
            Origin::Hv,
            "0.1 INFO  partition linux vcpu 0: entering at 0x4 on core 1",
            None,
        );
        let paused = Event::PartitionPaused {
            name: "linux".into(),
        };
        model.line(
            Origin::Hv,
            "event: partition-paused name=linux",
            Some(&paused),
        );
        let mut console = Console::new();
        console.feed(b"~ # echo hi\r\nhi\r\n~ # ");
        let mut terminal = ratatui::Terminal::new(TestBackend::new(120, 40)).unwrap();
        terminal
            .draw(|f| render(f, &model, &mut console, " t ", "footer"))
            .unwrap();
        let screen: String = terminal
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        for needle in [
            "~ # echo hi",
            "linux: PAUSED",
            "p99=900",
            "pass vectors #1",
            "event: partition-paused name=linux",
            "linux: PAUSED · vcpu 0 on core 1",
            "rtos: running",
            "hypervisor log",
            "footer",
        ] {
            assert!(screen.contains(needle), "{needle:?} not on the screen");
        }
    }
}
