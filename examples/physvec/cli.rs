//! The tool's plumbing: JSON in, JSON out, exit codes, hex blobs and `memory` lists.
//! Every command module turns a request into library calls and library results (or
//! errors) back into JSON; no layout logic lives here.

use physvec::error::ErrorInfo;
use physvec::mem::SparseMemory;
use physvec::{AddrSpace, Range};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// How a command failed.
#[derive(Debug)]
pub enum CliError {
    /// The request itself is malformed (exit 2; message on stderr).
    Malformed(String),
    /// The request was understood but its content is rejected (exit 1; JSON on stdout).
    Rejected {
        kind: &'static str,
        message: String,
        extra: Map<String, Value>,
    },
}

/// Any library error: its `kind`, message, `at` (index or byte address) and, for the
/// decoders, the NVMe status (`nvme_status`, and `nvme_status_hex` for a person).
/// This is what lets every command use `?` on library calls.
impl<E: ErrorInfo> From<E> for CliError {
    fn from(e: E) -> Self {
        let mut err = CliError::rejected(e.kind(), &e);
        if let Some(s) = e.nvme_status() {
            err = err
                .with("nvme_status", s.raw())
                .with("nvme_status_hex", format!("{:#06x}", s.raw()));
        }
        match e.position() {
            Some(at) => err.with("at", at.raw()),
            None => err,
        }
    }
}

impl CliError {
    /// A rejection with a stable `kind` and a message.
    pub fn rejected(kind: &'static str, message: impl ToString) -> Self {
        CliError::Rejected {
            kind,
            message: message.to_string(),
            extra: Map::new(),
        }
    }

    /// Adds a field (`nvme_status`, `at`, ...) to a rejection.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        if let CliError::Rejected { extra, .. } = &mut self {
            extra.insert(key.to_string(), value.into());
        }
        self
    }
}

/// Parses the request, rejecting unknown fields (the command's struct must carry
/// `#[serde(deny_unknown_fields)]`).
pub fn parse<T: DeserializeOwned>(input: &str) -> Result<T, CliError> {
    serde_json::from_str(input).map_err(|e| CliError::Malformed(format!("bad request: {e}")))
}

/// Runs one command and maps the outcome to stdout, stderr and the exit code.
pub fn run(cmd: &str, f: fn(&str) -> Result<Value, CliError>) -> i32 {
    use std::io::Read;
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("physvec {cmd}: cannot read stdin: {e}");
        return 2;
    }
    match f(&input) {
        Ok(v) => {
            println!("{v}");
            0
        }
        Err(CliError::Malformed(m)) => {
            eprintln!("physvec {cmd}: {m}");
            2
        }
        Err(CliError::Rejected {
            kind,
            message,
            extra,
        }) => {
            let mut err = Map::new();
            err.insert("kind".into(), json!(kind));
            err.insert("message".into(), json!(message));
            err.extend(extra);
            println!("{}", json!({ "error": err }));
            1
        }
    }
}

/// Lowercase hex without `0x`.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Decodes a hex blob (exit 2 on bad hex: the request is malformed).
pub fn unhex(s: &str) -> Result<Vec<u8>, CliError> {
    if s.len() % 2 != 0 {
        return Err(CliError::Malformed(format!(
            "hex string of odd length {}",
            s.len()
        )));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| CliError::Malformed(format!("bad hex at character {i}")))
        })
        .collect()
}

/// One `{"addr": u64, "hex": "..."}` entry of a `memory` list.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct MemoryEntry {
    pub addr: u64,
    pub hex: String,
}

/// Builds the memory a decoder reads from a request's `memory` list.
pub fn memory<S: physvec::AddrSpace>(entries: &[MemoryEntry]) -> Result<SparseMemory<S>, CliError> {
    let mut m = SparseMemory::default();
    for e in entries {
        m.add(physvec::Addr::new(e.addr), unhex(&e.hex)?);
    }
    Ok(m)
}

/// A response `memory` list from `(addr, bytes)` pairs.
pub fn memory_json<'a>(entries: impl IntoIterator<Item = (u64, &'a [u8])>) -> Value {
    Value::Array(
        entries
            .into_iter()
            .map(|(addr, bytes)| json!({ "addr": addr, "hex": hex(bytes) }))
            .collect(),
    )
}

/// Converts request `segments` (`[[addr, len], ...]`) into typed ranges.
///
/// Rejects (exit 1) an empty list (`empty`), a zero length (`empty_segment`) and a range
/// past 2^64 (`address_overflow`), with `at` = the segment index.
pub fn segments<S: AddrSpace>(raw: &[[u64; 2]]) -> Result<Vec<Range<S>>, CliError> {
    if raw.is_empty() {
        return Err(CliError::rejected("empty", "no segments"));
    }
    raw.iter()
        .enumerate()
        .map(|(i, &[a, l])| {
            Range::try_new(a, l).map_err(|e| {
                let kind = match e {
                    physvec::RangeError::Empty { .. } => "empty_segment",
                    _ => "address_overflow",
                };
                CliError::rejected(kind, format!("segment {i}: {e}")).with("at", i)
            })
        })
        .collect()
}

/// Response `segments` from typed ranges.
pub fn segments_json<S: AddrSpace>(ranges: &[Range<S>]) -> Value {
    Value::Array(
        ranges
            .iter()
            .map(|r| json!([r.addr().as_u64(), r.len()]))
            .collect(),
    )
}
