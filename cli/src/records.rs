//! Reading collected audit files for `query` and `replay`: records with where they came
//! from, and the time expressions the commands accept.

use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{bail, Context as _};
use mcptrail::audit::chain::{read_line, record_line};
use mcptrail::audit::record::Record;
use mcptrail::time::{parse_rfc3339_ms, rfc3339_ms};

/// One record of a collected file.
#[derive(Debug, Clone)]
pub struct Entry {
    pub file: String,
    /// 1-based line in `file`.
    pub line: usize,
    /// The line exactly as stored.
    pub raw: String,
    /// The record, read through the filter's own schema.
    pub record: Record,
    /// `ts` in Unix milliseconds.
    pub ts_ms: Option<u64>,
    /// `chain.stream`: the Envoy VM that wrote the record.
    pub stream: Option<String>,
}

impl Entry {
    pub fn kind(&self) -> &'static str {
        self.record.kind.as_str()
    }

    /// The MCP method, tool, prompt and resource, where the record has them.
    pub fn mcp(&self) -> Option<&mcptrail::audit::record::Mcp> {
        self.record.mcp.as_ref()
    }

    pub fn session(&self) -> Option<&str> {
        self.record.session.as_deref()
    }

    pub fn duration_ms(&self) -> Option<u64> {
        self.record.outcome.as_ref().and_then(|o| o.duration_ms)
    }

    /// When the exchange started: `ts` (its end) less `outcome.duration_ms`.
    pub fn started_ms(&self) -> Option<u64> {
        let d = self.duration_ms().unwrap_or(0);
        self.ts_ms.map(|t| t.saturating_sub(d))
    }

    /// Who: the subject, else the email, else `-` (anonymous or unauthenticated).
    pub fn who(&self) -> &str {
        let id = self.record.identity.as_ref();
        id.and_then(|i| i.sub.as_deref().or(i.email.as_deref()))
            .unwrap_or("-")
    }
}

/// Reads files in order. Lines that are not audit records (not JSON, or not of the record
/// schema: a field missing or of the wrong type, a kind this build does not know) are skipped
/// and reported in the second element (`FILE:LINE: why`), so a damaged file can still be
/// searched.
pub fn read_files(files: &[impl AsRef<Path>]) -> anyhow::Result<(Vec<Entry>, Vec<String>)> {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for f in files {
        let f = f.as_ref();
        let name = f.display().to_string();
        let file = std::fs::File::open(f).with_context(|| format!("cannot open {name}"))?;
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("cannot read {name}"))?;
            let Some(line) = record_line(&line).map(str::to_string) else {
                continue;
            };
            match serde_json::from_str::<Record>(&line) {
                Ok(record) => {
                    let ts_ms = parse_rfc3339_ms(&record.ts);
                    let stream = read_line(&line).ok().map(|r| r.chain.stream);
                    out.push(Entry {
                        file: name.clone(),
                        line: i + 1,
                        raw: line,
                        record,
                        ts_ms,
                        stream,
                    });
                }
                Err(e) if e.is_data() => {
                    skipped.push(format!("{name}:{}: not an audit record: {e}", i + 1))
                }
                Err(e) => skipped.push(format!("{name}:{}: not JSON: {e}", i + 1)),
            }
        }
    }
    Ok((out, skipped))
}

/// Test support: `lines` written as one trail file and read back (every line a record).
#[cfg(test)]
pub fn write_trail(lines: &[serde_json::Value]) -> (tempfile::TempDir, Vec<Entry>) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("audit.ndjson");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&f, text).unwrap();
    let (entries, skipped) = read_files(&[&f]).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    (dir, entries)
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

const DAY_MS: u64 = 86_400_000;

/// Parses a time bound: an RFC 3339 time (`2026-11-23T10:00:00Z`, offsets allowed), a UTC
/// date (`2026-11-23`, `today`, `yesterday`), `now`, or a duration before now (`90s`, `15m`,
/// `24h`, `7d`, `2w`). A date starts at its midnight; as an upper bound (`end`) it reaches
/// to the next midnight, so `--since D --until D` is the whole day D.
pub fn parse_time(s: &str, now_ms: u64, end: bool) -> anyhow::Result<u64> {
    let s = s.trim();
    let today = now_ms - now_ms % DAY_MS;
    let day = |start: u64| if end { start + DAY_MS } else { start };
    match s {
        "now" => return Ok(now_ms),
        "today" => return Ok(day(today)),
        "yesterday" => return Ok(day(today.saturating_sub(DAY_MS))),
        _ => {}
    }
    if let Some(t) = parse_rfc3339_ms(s) {
        return Ok(t);
    }
    if s.len() == 10 {
        if let Some(t) = parse_rfc3339_ms(&format!("{s}T00:00:00Z")) {
            return Ok(day(t));
        }
    }
    if let Some(unit) = s.chars().last() {
        let ms = match unit {
            's' => Some(1_000),
            'm' => Some(60_000),
            'h' => Some(3_600_000),
            'd' => Some(DAY_MS),
            'w' => Some(7 * DAY_MS),
            _ => None,
        };
        let n = s[..s.len() - unit.len_utf8()].parse::<u64>().ok();
        if let (Some(ms), Some(n)) = (ms, n) {
            return Ok(now_ms.saturating_sub(n.saturating_mul(ms)));
        }
    }
    bail!(
        "`{s}` is not a time: use RFC 3339 (2026-11-23T10:00:00Z), a date (2026-11-23, today, \
         yesterday), now, or a duration ago (90s, 15m, 24h, 7d, 2w)"
    )
}

/// `rfc3339_ms`, or `?` for an unknown time.
pub fn fmt_ms(ms: Option<u64>) -> String {
    ms.map_or_else(|| "?".to_string(), rfc3339_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-24T10:30:00.000Z
    const NOW: u64 = 1_795_516_200_000;

    fn t(s: &str) -> u64 {
        parse_rfc3339_ms(s).unwrap()
    }

    #[test]
    fn time_bounds() {
        assert_eq!(
            parse_time("2026-11-23T10:00:00Z", NOW, false).unwrap(),
            t("2026-11-23T10:00:00Z")
        );
        assert_eq!(
            parse_time("2026-11-23T11:00:00+01:00", NOW, true).unwrap(),
            t("2026-11-23T10:00:00Z")
        );
        assert_eq!(
            parse_time("2026-11-23", NOW, false).unwrap(),
            t("2026-11-23T00:00:00Z")
        );
        assert_eq!(
            parse_time("2026-11-23", NOW, true).unwrap(),
            t("2026-11-24T00:00:00Z")
        );
        assert_eq!(
            parse_time("yesterday", NOW, false).unwrap(),
            t("2026-11-23T00:00:00Z")
        );
        assert_eq!(
            parse_time("yesterday", NOW, true).unwrap(),
            t("2026-11-24T00:00:00Z")
        );
        assert_eq!(
            parse_time("today", NOW, false).unwrap(),
            t("2026-11-24T00:00:00Z")
        );
        assert_eq!(parse_time("now", NOW, true).unwrap(), NOW);
        assert_eq!(
            parse_time("24h", NOW, false).unwrap(),
            t("2026-11-23T10:30:00Z")
        );
        assert_eq!(
            parse_time("7d", NOW, false).unwrap(),
            t("2026-11-17T10:30:00Z")
        );
        assert_eq!(parse_time("90s", NOW, false).unwrap(), NOW - 90_000);
        assert_eq!(parse_time("15m", NOW, false).unwrap(), NOW - 900_000);
        assert_eq!(parse_time("2w", NOW, false).unwrap(), NOW - 14 * DAY_MS);
        for bad in [
            "",
            "h",
            "24x",
            "-3h",
            "2026-13-01",
            "2026-11-23T10:00",
            "soon",
        ] {
            assert!(parse_time(bad, NOW, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_records_and_reports_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.ndjson");
        let rec = |kind: &str, ts: &str, identity: &str| {
            format!(
                r#"{{"v":1,"kind":"{kind}","ts":"{ts}","id":"x","session":null,"request_id":null,"identity":{identity},"source":null,"mcp":null,"outcome":null,"masked":[]}}"#
            )
        };
        let alice = r#"{"sub":"alice","iss":null,"email":null,"groups":[],"client_id":null}"#;
        std::fs::write(
            &f,
            format!(
                "{}\n\nnope\n[1]\n{}\r\n{}\n{{\"kind\":\"command\"}}\n",
                rec("command", "2026-11-24T10:00:00.123Z", alice),
                rec("audit.dropped", "x", "null"),
                rec("no.such.kind", "2026-11-24T10:00:00.123Z", "null"),
            ),
        )
        .unwrap();
        let (entries, skipped) = read_files(&[&f]).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].line, 1);
        assert_eq!(entries[0].who(), "alice");
        assert_eq!(entries[0].kind(), "command");
        assert_eq!(entries[0].ts_ms, Some(t("2026-11-24T10:00:00.123Z")));
        assert_eq!(entries[1].line, 5);
        assert_eq!(entries[1].who(), "-");
        assert_eq!(entries[1].ts_ms, None);
        assert!(!entries[1].raw.ends_with('\r'));
        assert_eq!(skipped.len(), 4, "{skipped:?}");
        assert!(skipped[0].ends_with(":3: not JSON: expected ident at line 1 column 2"));
        assert!(
            skipped[1].contains(":4: not an audit record: "),
            "{skipped:?}"
        );
        assert!(skipped[2].contains(":6: not an audit record: unknown variant `no.such.kind`"));
        assert!(skipped[3].contains(":7: not an audit record: missing field"));
        assert!(read_files(&[dir.path().join("missing")]).is_err());
    }
}
