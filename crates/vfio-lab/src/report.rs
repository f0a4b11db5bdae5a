//! The lab's results format: JSON lines, one object per line, written by a
//! conformance run (kernel in the guest, mock on the host) and compared by
//! the lab runner (`packages/testkit/src/lab/conformance.ts`) case by case.
//!
//! ```text
//! {"kind":"run","suite":"x86","backend":"kernel","format":1}
//! {"kind":"host","devices":[{"bdf":"0000:00:03.0","group":1,...}]}      (optional)
//! {"kind":"case","name":"overlapping map fails with EEXIST","steps":[...],"checks":[...],"aborted":null}
//! {"kind":"end","cases":42}
//! ```
//!
//! A case's `steps` are what both backends must agree on: each call made,
//! in order, with its result (`ok` or the errno name) and the values it
//! returned (sizes, flags, capability fields). Its `checks` are facts that
//! must hold on each side on their own (the DMA wrote the pattern); they are
//! not compared, because a check that holds on both sides is the point.
//! `aborted` says why a case stopped before its end (a call that had to
//! succeed did not). The `end` line proves the run was not cut short.
//!
//! The sPAPR suite writes the same format; anything suite-specific goes in
//! step labels and values, never in new line kinds.

use std::io::Write;

use serde::{Deserialize, Serialize};

/// Bumped when a reader of an older format would misread a newer one.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The call and its arguments, e.g. `MAP_DMA iova=0x100000 size=0x1000 flags=RW`.
    pub call: String,
    /// `ok`, or the errno's name (`EEXIST`).
    pub result: String,
    /// What the call returned besides success, as text (`size=0x1000`), or empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub what: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Line {
    Run { suite: String, backend: String, format: u32 },
    Host { devices: Vec<HostDevice> },
    Case { name: String, steps: Vec<Step>, checks: Vec<Check>, aborted: Option<String> },
    End { cases: usize },
}

/// A PCI device of the machine the run saw (the guest's sysfs, or the mock's
/// fixture), for whoever reads a report after a disagreement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostDevice {
    pub role: String,
    pub bdf: String,
    pub group: u32,
    /// The bound driver's name, if any.
    pub driver: Option<String>,
}

/// Writes lines as they come, flushing each so a crash loses nothing written.
pub struct Writer<W: Write> {
    out: W,
    cases: usize,
}

impl<W: Write> Writer<W> {
    pub fn new(mut out: W, suite: &str, backend: &str) -> std::io::Result<Self> {
        write_line(&mut out, &Line::Run { suite: suite.into(), backend: backend.into(), format: FORMAT })?;
        Ok(Self { out, cases: 0 })
    }

    pub fn line(&mut self, line: &Line) -> std::io::Result<()> {
        if matches!(line, Line::Case { .. }) {
            self.cases += 1;
        }
        write_line(&mut self.out, line)
    }

    pub fn finish(mut self) -> std::io::Result<()> {
        let cases = self.cases;
        write_line(&mut self.out, &Line::End { cases })
    }
}

fn write_line<W: Write>(out: &mut W, line: &Line) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Reads a results file; a malformed line is an error naming its number.
#[cfg_attr(not(test), allow(dead_code))] // for suites and tools that read results back
pub fn read(text: &str) -> Result<Vec<Line>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_line_round_trips_through_json() {
        let line = Line::Case {
            name: "overlapping map fails with EEXIST".into(),
            steps: vec![Step { call: "MAP_DMA".into(), result: "EEXIST".into(), value: String::new() }],
            checks: vec![],
            aborted: None,
        };
        let mut buf = Vec::new();
        write_line(&mut buf, &line).unwrap();
        assert_eq!(
            String::from_utf8(buf.clone()).unwrap(),
            "{\"kind\":\"case\",\"name\":\"overlapping map fails with EEXIST\",\"steps\":[{\"call\":\"MAP_DMA\",\"result\":\"EEXIST\"}],\"checks\":[],\"aborted\":null}\n"
        );
        assert_eq!(read(std::str::from_utf8(&buf).unwrap()).unwrap(), vec![line]);
    }

    #[test]
    fn the_end_line_counts_the_cases_written() {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, "x86", "mock").unwrap();
        w.line(&Line::Case { name: "a".into(), steps: vec![], checks: vec![], aborted: None }).unwrap();
        w.finish().unwrap();
        let lines = read(std::str::from_utf8(&buf).unwrap()).unwrap();
        assert_eq!(lines.last(), Some(&Line::End { cases: 1 }));
    }
}
