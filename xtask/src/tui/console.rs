//! A minimal terminal for Linux's console pane: lines, the cursor's column on the last one,
//! carriage return, backspace, tab, erase-in-line and the cursor-position query. Colours and
//! cursor moves between lines are dropped: the pane only ever writes at its bottom line.

use std::collections::VecDeque;

/// Finished lines kept for the pane (it shows the last screenful of them).
const HISTORY: usize = 2000;
/// A longer line is cut there (a stream without newlines must not grow without bound).
const MAX_COLUMNS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ground,
    /// After ESC.
    Escape,
    /// In `ESC [ params final`.
    Csi,
    /// In `ESC ] ... BEL` (a window title, say).
    Osc,
    /// ESC inside an OSC: its `ESC \` terminator.
    OscEscape,
}

#[derive(Debug, Clone)]
pub struct Console {
    lines: VecDeque<Vec<char>>,
    line: Vec<char>,
    col: usize,
    state: State,
    params: String,
    /// An unfinished UTF-8 sequence.
    utf8: Vec<u8>,
    /// Answers the guest is owed (cursor positions), to be written to its input.
    replies: Vec<u8>,
    /// The pane's size (rows, columns), for those answers.
    size: (usize, usize),
    /// After `ESC [ H`: an erase-below next clears the whole pane (`clear`).
    homed: bool,
}

impl Default for Console {
    fn default() -> Console {
        Console::new()
    }
}

/// The rows a pane of some size shows, and where its cursor is (column, row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub rows: Vec<String>,
    pub cursor: (usize, usize),
}

impl Console {
    pub fn new() -> Console {
        Console {
            lines: VecDeque::new(),
            line: Vec::new(),
            col: 0,
            state: State::Ground,
            params: String::new(),
            utf8: Vec::new(),
            replies: Vec::new(),
            size: (24, 80),
            homed: false,
        }
    }

    /// The pane's size as last drawn: cursor-position answers are within it.
    pub fn set_size(&mut self, rows: usize, columns: usize) {
        self.size = (rows.max(1), columns.max(1));
    }

    /// The bytes to write to the guest's input in answer to its queries, once.
    pub fn take_replies(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.replies)
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.byte(b);
        }
    }

    fn byte(&mut self, b: u8) {
        match self.state {
            State::Ground => self.ground(b),
            State::Escape => {
                self.state = match b {
                    b'[' => {
                        self.params.clear();
                        State::Csi
                    }
                    b']' => State::Osc,
                    // Any other two-byte escape (charset, keypad mode...) is dropped.
                    _ => State::Ground,
                }
            }
            State::Csi => match b {
                0x40..=0x7e => {
                    self.state = State::Ground;
                    let params = std::mem::take(&mut self.params);
                    self.csi(&params, b);
                }
                0x20..=0x3f => {
                    // Parameters and intermediates; a runaway sequence is given up.
                    if self.params.len() < 32 {
                        self.params.push(b as char);
                    } else {
                        self.state = State::Ground;
                    }
                }
                0x1b => self.state = State::Escape,
                _ => {}
            },
            State::Osc => match b {
                0x07 => self.state = State::Ground,
                0x1b => self.state = State::OscEscape,
                _ => {}
            },
            State::OscEscape => self.state = State::Ground,
        }
    }

    fn ground(&mut self, b: u8) {
        if !self.utf8.is_empty() || b >= 0x80 {
            self.utf8.push(b);
            match std::str::from_utf8(&self.utf8) {
                Ok(s) => {
                    let c = s.chars().next().unwrap_or(char::REPLACEMENT_CHARACTER);
                    self.utf8.clear();
                    self.put(c);
                }
                Err(e) if e.error_len().is_some() || self.utf8.len() >= 4 => {
                    self.utf8.clear();
                    self.put(char::REPLACEMENT_CHARACTER);
                }
                Err(_) => {}
            }
            return;
        }
        match b {
            0x1b => self.state = State::Escape,
            b'\r' => self.col = 0,
            // The guest's tty turns "\n" into "\r\n" anyway; a bare one starts a line too.
            b'\n' => self.newline(),
            0x08 => self.col = self.col.saturating_sub(1),
            b'\t' => {
                let next = (self.col / 8 + 1) * 8;
                while self.col < next {
                    self.put(' ');
                }
            }
            0x20..=0x7e => self.put(b as char),
            // Bell, NUL, DEL and the other controls show nothing.
            _ => {}
        }
    }

    fn put(&mut self, c: char) {
        self.homed = false;
        if self.col >= MAX_COLUMNS {
            return;
        }
        if self.col < self.line.len() {
            self.line[self.col] = c;
        } else {
            self.line.resize(self.col, ' ');
            self.line.push(c);
        }
        self.col += 1;
    }

    fn newline(&mut self) {
        self.homed = false;
        let done = std::mem::take(&mut self.line);
        self.lines.push_back(done);
        if self.lines.len() > HISTORY {
            self.lines.pop_front();
        }
        self.col = 0;
    }

    fn csi(&mut self, params: &str, command: u8) {
        // Private modes (`ESC [ ? 25 l`...) change nothing shown here.
        if params.starts_with(['?', '>', '=']) {
            return;
        }
        let mut numbers = params.split(';').map(|p| p.parse::<usize>().ok());
        let first = numbers.next().flatten();
        let count = first.unwrap_or(1).max(1);
        match command {
            // Cursor position query: answered with where the pane's cursor is.
            b'n' if first == Some(6) => {
                let (rows, columns) = self.size;
                let row = (self.lines.len() + 1 + self.col / columns).min(rows);
                let col = self.col % columns + 1;
                self.replies
                    .extend(format!("\x1b[{row};{col}R").into_bytes());
            }
            b'C' => self.col = (self.col + count).min(MAX_COLUMNS),
            b'D' => self.col = self.col.saturating_sub(count),
            b'G' => self.col = (count - 1).min(MAX_COLUMNS),
            b'K' => match first.unwrap_or(0) {
                0 => self.line.truncate(self.col),
                1 => {
                    let end = (self.col + 1).min(self.line.len());
                    self.line[..end].fill(' ');
                }
                _ => self.line.clear(),
            },
            // Only "home" is followed: `clear` sends it before erasing the screen.
            b'H' | b'f' if count == 1 && numbers.next().flatten().unwrap_or(1) == 1 => {
                self.homed = true;
            }
            b'J' => match first.unwrap_or(0) {
                0 if self.homed => self.clear(),
                0 => self.line.truncate(self.col),
                2 | 3 => self.clear(),
                _ => {}
            },
            // Colours and everything else.
            _ => {}
        }
    }

    fn clear(&mut self) {
        self.lines.clear();
        self.line.clear();
        self.col = 0;
        self.homed = false;
    }

    /// The last `height` rows of the console wrapped at `width`, with its cursor.
    pub fn view(&self, width: usize, height: usize) -> View {
        let width = width.max(1);
        let height = height.max(1);
        let mut current = wrap(&self.line, width);
        let cursor_row = self.col / width;
        while current.len() <= cursor_row {
            current.push(String::new());
        }
        let mut before: Vec<String> = Vec::new();
        for line in self.lines.iter().rev() {
            if before.len() + current.len() >= height {
                break;
            }
            let mut rows = wrap(line, width);
            rows.extend(before);
            before = rows;
        }
        let cursor_y = before.len() + cursor_row;
        let mut rows = before;
        rows.extend(current);
        let skip = rows.len().saturating_sub(height);
        View {
            rows: rows.split_off(skip),
            cursor: (
                self.col % width,
                cursor_y.saturating_sub(skip).min(height - 1),
            ),
        }
    }
}

/// `line` cut into rows of `width` characters; an empty line is one empty row.
fn wrap(line: &[char], width: usize) -> Vec<String> {
    if line.is_empty() {
        return vec![String::new()];
    }
    line.chunks(width).map(|c| c.iter().collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(console: &Console) -> Vec<String> {
        console.view(80, 10).rows
    }

    #[test]
    fn partial_lines_show_with_the_cursor_after_them() {
        let mut c = Console::new();
        c.feed(b"Welcome\r\n~ # ");
        let v = c.view(80, 10);
        assert_eq!(v.rows, ["Welcome", "~ # "]);
        assert_eq!(v.cursor, (4, 1));
    }

    #[test]
    fn carriage_return_overwrites_and_backspace_erases() {
        let mut c = Console::new();
        c.feed(b"progress 10%\rprogress 99%\r\n");
        // busybox erases a typed character with "\b \b", and a stretch with ESC [ K.
        c.feed(b"~ # ecko\x08 \x08\x08 \x08ho hi\x08\x08\x1b[K");
        assert_eq!(shown(&c), ["progress 99%", "~ # echo "]);
        assert_eq!(c.view(80, 10).cursor, (9, 1));
    }

    #[test]
    fn colours_and_titles_are_dropped_and_split_escapes_joined() {
        let mut c = Console::new();
        c.feed(b"\x1b[1;3");
        c.feed(b"2mred\x1b[0m \x1b]0;title\x07ok\x1b[?25l");
        c.feed(b"\x1b]2;t\x1b\\!");
        assert_eq!(shown(&c), ["red ok!"]);
    }

    #[test]
    fn utf8_split_across_reads_is_one_character() {
        let mut c = Console::new();
        let text = "µs é".as_bytes();
        c.feed(&text[..1]);
        c.feed(&text[1..5]);
        c.feed(&text[5..]);
        c.feed(b"\xff!");
        assert_eq!(shown(&c), ["µs é\u{fffd}!"]);
    }

    #[test]
    fn cursor_position_query_is_answered_not_shown() {
        let mut c = Console::new();
        c.set_size(20, 80);
        c.feed(b"line\r\n~ # \x1b[6n");
        assert_eq!(shown(&c), ["line", "~ # "]);
        assert_eq!(c.take_replies(), b"\x1b[2;5R");
        assert!(c.take_replies().is_empty(), "answered once");
        // Deep in a long session the answer stays inside the pane.
        for _ in 0..50 {
            c.feed(b"x\r\n");
        }
        c.feed(b"\x1b[6n");
        assert_eq!(c.take_replies(), b"\x1b[20;1R");
    }

    #[test]
    fn long_lines_wrap_and_only_the_last_rows_show() {
        let mut c = Console::new();
        c.feed(b"one\r\ntwo\r\nabcdefgh");
        let v = c.view(3, 3);
        assert_eq!(v.rows, ["abc", "def", "gh"]);
        assert_eq!(v.cursor, (2, 2));
        let v = c.view(5, 3);
        assert_eq!(v.rows, ["two", "abcde", "fgh"]);
        // A full row puts the cursor at the start of the next one.
        let mut c = Console::new();
        c.feed(b"abc");
        let v = c.view(3, 4);
        assert_eq!(v.rows, ["abc", ""]);
        assert_eq!(v.cursor, (0, 1));
    }

    #[test]
    fn clear_and_cursor_moves_within_the_line() {
        let mut c = Console::new();
        c.feed(b"old\r\nlines\r\n\x1b[H\x1b[J~ # ");
        assert_eq!(shown(&c), ["~ # "]);
        c.feed(b"ac\x1b[Db\x1b[C!\x1b[5GX");
        assert_eq!(shown(&c), ["~ # Xb !"]);
        c.feed(b"\x1b[2J");
        assert_eq!(shown(&c), [""]);
    }

    #[test]
    fn history_is_bounded() {
        let mut c = Console::new();
        for i in 0..HISTORY + 10 {
            c.feed(format!("{i}\n").as_bytes());
        }
        assert_eq!(c.lines.len(), HISTORY);
        assert_eq!(c.lines[0].iter().collect::<String>(), "10");
    }
}
