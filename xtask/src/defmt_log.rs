//! Turns spumone's raw defmt records into text, using the table in its ELF.

use anyhow::{bail, Context, Result};
use defmt_decoder::{Encoding, Table};

pub struct DefmtLog {
    table: Table,
}

impl DefmtLog {
    /// Reads the defmt table from an ELF image. `Ok(None)` when the image logs no defmt.
    pub fn from_elf(elf: &[u8]) -> Result<Option<DefmtLog>> {
        let table = Table::parse(elf).context("reading the defmt table")?;
        match table {
            Some(table) => Ok(Some(DefmtLog::from_table(table)?)),
            None => Ok(None),
        }
    }

    pub fn from_table(table: Table) -> Result<DefmtLog> {
        if table.encoding() != Encoding::Raw {
            bail!("the firmware uses defmt encoding {:?}; spumone must use encoding-raw (one record per frame)", table.encoding());
        }
        Ok(DefmtLog { table })
    }

    /// Formats one record as `<timestamp> <LEVEL> <message>` (timestamp and level when the
    /// firmware has them).
    pub fn format(&self, record: &[u8]) -> Result<String, String> {
        let (frame, consumed) = self
            .table
            .decode(record)
            .map_err(|e| format!("undecodable defmt record ({e:?}): {}", hex(record)))?;
        let mut text = String::new();
        if let Some(ts) = frame.display_timestamp() {
            text.push_str(&ts.to_string());
            text.push(' ');
        }
        if let Some(level) = frame.level() {
            text.push_str(&format!("{:<5} ", level.as_str().to_uppercase()));
        }
        text.push_str(&frame.display_message().to_string());
        if consumed != record.len() {
            text.push_str(&format!(
                " (+{} trailing bytes: {})",
                record.len() - consumed,
                hex(&record[consumed..])
            ));
        }
        Ok(text)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A table as the firmware would carry it: index 1 logs at INFO with a u8 argument,
    /// index 2 warns with a u32 in hex, index 3 has no level (println), index 4 is the timestamp.
    pub(crate) fn synthetic_table(with_timestamp: bool) -> Table {
        let timestamp = if with_timestamp {
            r#"{"string": {"tag": "Timestamp", "string": "{=u32:us}"}, "raw_symbol": "ts"}"#
        } else {
            "null"
        };
        let json = format!(
            r#"{{
            "timestamp": {timestamp},
            "entries": {{
                "1": {{"string": {{"tag": "Info", "string": "core {{=u8}} online"}}, "raw_symbol": "a"}},
                "2": {{"string": {{"tag": "Warn", "string": "unassigned access at {{=u32:#x}}"}}, "raw_symbol": "b"}},
                "3": {{"string": {{"tag": "Println", "string": "plain"}}, "raw_symbol": "c"}}
            }},
            "bitflags": {{}},
            "encoding": "Raw"
        }}"#
        );
        serde_json::from_str(&json).expect("synthetic table parses")
    }

    #[test]
    fn formats_level_timestamp_and_arguments() {
        let log = DefmtLog::from_table(synthetic_table(true)).unwrap();
        // index 1 (LE u16), timestamp 1234 us (LE u32), argument 3.
        let record = [1, 0, 0xd2, 0x04, 0, 0, 3];
        assert_eq!(log.format(&record).unwrap(), "0.001234 INFO  core 3 online");
    }

    #[test]
    fn formats_without_timestamp() {
        let log = DefmtLog::from_table(synthetic_table(false)).unwrap();
        let record = [2, 0, 0x00, 0x10, 0x00, 0x0a];
        assert_eq!(
            log.format(&record).unwrap(),
            "WARN  unassigned access at 0xa001000"
        );
    }

    #[test]
    fn bad_records_are_reported_with_their_bytes() {
        let log = DefmtLog::from_table(synthetic_table(false)).unwrap();
        let unknown_index = log.format(&[9, 0]).unwrap_err();
        assert!(unknown_index.contains("09 00"), "{unknown_index}");
        let truncated = log.format(&[1]).unwrap_err();
        assert!(truncated.contains("undecodable"), "{truncated}");
    }

    #[test]
    fn not_an_elf_is_an_error() {
        assert!(DefmtLog::from_elf(b"not an elf").is_err());
    }
}
