//! `explain`: a human-readable picture of a layout, drawn by [`crate::picture`].
//!
//! `physvec explain < request.json` takes the request of any layout command with one more
//! field, `"command"` (`prp`, `sgl`, `decode-prp`, `decode-sgl`, `sg`, `decode-sg`,
//! `mr-pages`, `mlx5-mtt`, `mlx5-klm`, `map`). It runs that command (the library decides,
//! exactly as the JSON command would) and draws what it built or read: PRP1/PRP2 and each
//! PRP list page with its chain pointer, SGL segments and their descriptors, scatterlist
//! chunks and chain entries, MR pages, MTT/KLM entries, DMA mappings. When the command
//! rejects the request, the picture is still drawn and the offending entry is marked
//! `<== ERROR`. Exit codes are the commands' (0 ok, 1 rejected, 2 malformed).

use crate::cli::CliError;
use crate::picture::{
    klm, mr_pages, mtt, prp, scatterlist, segments, sgl, Picture, Size, Target, MAX_LINES,
};
use physvec::mem::SparseMemory;
use physvec::nvme::SglDescriptor;
use physvec::sg::Vmemmap;
use serde_json::{Map, Value};
use std::fmt::Write as _;

// ---- the `explain` command ----

fn u64_field(req: &Map<String, Value>, key: &str) -> Option<u64> {
    req.get(key).and_then(Value::as_u64)
}

fn pairs(v: Option<&Value>) -> Vec<[u64; 2]> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|p| {
                    let f = |i: usize| p.get(i).and_then(Value::as_u64).unwrap_or(0);
                    [f(0), f(1)]
                })
                .collect()
        })
        .unwrap_or_default()
}

fn memory<S: physvec::AddrSpace>(v: Option<&Value>) -> Result<SparseMemory<S>, CliError> {
    let entries: Vec<crate::cli::MemoryEntry> = match v {
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| CliError::Malformed(format!("bad memory: {e}")))?,
        None => Vec::new(),
    };
    crate::cli::memory(&entries)
}

fn dptr(v: Option<&Value>) -> Result<[u8; 16], CliError> {
    let b = crate::cli::unhex(v.and_then(Value::as_str).unwrap_or(""))?;
    b.try_into()
        .map_err(|_| CliError::Malformed("dptr must be 16 bytes".into()))
}

fn split_dptr(b: [u8; 16]) -> (u64, u64) {
    let mut a = [0u8; 8];
    let mut c = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    c.copy_from_slice(&b[8..]);
    (u64::from_le_bytes(a), u64::from_le_bytes(c))
}

fn total(segs: &[[u64; 2]]) -> u64 {
    segs.iter().fold(0u64, |t, s| t.saturating_add(s[1]))
}

/// What the command said.
enum Verdict {
    Ok(Value),
    Rejected {
        kind: &'static str,
        message: String,
        extra: Map<String, Value>,
    },
}

impl Verdict {
    fn response(&self) -> Option<&Value> {
        match self {
            Verdict::Ok(v) => Some(v),
            Verdict::Rejected { .. } => None,
        }
    }
}

/// Draws the request `req` of `command` given the command's verdict.
fn draw(command: &str, req: &Map<String, Value>, v: &Verdict) -> Result<Picture, CliError> {
    let mut p = Picture::new();
    let resp = v.response();
    let segs = pairs(req.get("segments"));
    // Errors point at segment indexes for the encoders, at addresses for the decoders.
    let mut target_kind: fn(u64) -> Target = Target::Index;
    match command {
        "prp" => {
            segments(&mut p, "input DMA segments", &segs);
            if let Some(r) = resp {
                let (prp1, prp2) = split_dptr(dptr(r.get("dptr"))?);
                let mem = memory(r.get("memory"))?;
                prp(
                    &mut p,
                    u64_field(req, "page_size").unwrap_or(4096),
                    total(&segs),
                    prp1,
                    prp2,
                    &mem,
                );
            }
        }
        "sgl" => {
            segments(&mut p, "input DMA segments", &segs);
            if let Some(r) = resp {
                let d = SglDescriptor::from_bytes(dptr(r.get("dptr"))?);
                let mem = memory(r.get("memory"))?;
                sgl(&mut p, Some(total(&segs)), d, &mem);
            }
        }
        "decode-prp" => {
            let b = dptr(req.get("dptr"))?;
            let (prp1, prp2) = split_dptr(b);
            let mem = memory(req.get("memory"))?;
            let mps = u64_field(req, "page_size").unwrap_or(4096);
            prp(
                &mut p,
                mps,
                u64_field(req, "length").unwrap_or(0),
                prp1,
                prp2,
                &mem,
            );
            target_kind = Target::Addr;
            if let Verdict::Rejected {
                kind: "invalid_prp_offset",
                extra,
                ..
            } = v
            {
                if !extra.contains_key("at") {
                    // DPTR itself: PRP1 when it is misaligned, else PRP2.
                    let which = if prp1 & 3 != 0 { 1 } else { 2 };
                    mark(&mut p, v, Some(Target::Dptr(which)));
                    return Ok(p);
                }
            }
        }
        "decode-sgl" => {
            let d = SglDescriptor::from_bytes(dptr(req.get("dptr"))?);
            let mem = memory(req.get("memory"))?;
            sgl(&mut p, u64_field(req, "length"), d, &mem);
            target_kind = Target::Addr;
            if let Verdict::Rejected { extra, .. } = v {
                if !extra.contains_key("at") {
                    mark(&mut p, v, Some(Target::Dptr(1)));
                    return Ok(p);
                }
            }
        }
        "sg" => {
            segments(&mut p, "input physical segments", &segs);
            if let Some(r) = resp {
                let mem = memory(r.get("memory"))?;
                let vm = Vmemmap::new(u64_field(req, "vmemmap_base").unwrap_or(0));
                scatterlist(
                    &mut p,
                    u64_field(r.as_object().unwrap_or(&Map::new()), "sgl").unwrap_or(0),
                    &vm,
                    &mem,
                );
            }
        }
        "decode-sg" => {
            let mem = memory(req.get("memory"))?;
            let vm = Vmemmap::new(u64_field(req, "vmemmap_base").unwrap_or(0));
            scatterlist(&mut p, u64_field(req, "sgl").unwrap_or(0), &vm, &mem);
            target_kind = Target::AddrOrIndex;
        }
        "mr-pages" => {
            segments(&mut p, "input DMA segments", &segs);
            if let Some(r) = resp.and_then(Value::as_object) {
                let pages: Vec<u64> = r
                    .get("pages")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default();
                let mapped = u64_field(r, "mapped").unwrap_or(0);
                mr_pages(
                    &mut p,
                    u64_field(req, "page_size").unwrap_or(4096),
                    u64_field(r, "iova").unwrap_or(0),
                    u64_field(r, "length").unwrap_or(0),
                    &pages,
                );
                if mapped < segs.len() as u64 {
                    p.text(format!(
                        "  page list full: {mapped} of {} segments mapped, resume in segment {mapped} at offset {:#x}",
                        segs.len(),
                        u64_field(r, "sg_offset").unwrap_or(0)
                    ));
                } else {
                    p.text(format!("  all {} segments mapped", segs.len()));
                }
            }
        }
        "mlx5-mtt" => {
            let pages: Vec<u64> = req
                .get("pages")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            p.text(format!("input: {} page address(es)", pages.len()));
            match resp {
                Some(r) => {
                    let b = crate::cli::unhex(r.get("hex").and_then(Value::as_str).unwrap_or(""))?;
                    mtt(&mut p, &b, pages.len());
                }
                None => {
                    for (i, pg) in pages.iter().enumerate().take(MAX_LINES) {
                        p.push(format!("  [{i:>3}] {pg:#x}"), None, Some(i as u64), None);
                    }
                }
            }
        }
        "mlx5-klm" => {
            segments(&mut p, "input DMA segments", &segs);
            if let Some(r) = resp {
                let b = crate::cli::unhex(r.get("hex").and_then(Value::as_str).unwrap_or(""))?;
                let n = physvec::rdma::klm_count(
                    &segs
                        .iter()
                        .filter_map(|&[a, l]| physvec::DmaRange::try_new(a, l).ok())
                        .collect::<Vec<_>>(),
                );
                klm(&mut p, &b, n as usize);
            }
        }
        "map" => {
            segments(&mut p, "input physical segments", &segs);
            if let Some(r) = resp {
                let tr = pairs(r.get("translations"));
                p.text(format!(
                    "through the {} mapper: each segment's first byte lands at",
                    req.get("mapper").and_then(Value::as_str).unwrap_or("?")
                ));
                for (i, [dma, phys]) in tr.iter().enumerate().take(MAX_LINES) {
                    p.text(format!("  [{i}] phys {phys:#x} -> dma {dma:#x}"));
                }
                segments(&mut p, "device-visible DMA ranges", &pairs(r.get("dma")));
                p.text(format!(
                    "IOVA syncs: {}",
                    r.get("iova_syncs").and_then(Value::as_u64).unwrap_or(0)
                ));
            }
        }
        _ => unreachable!("checked by the caller"),
    }
    if let Verdict::Rejected { extra, .. } = v {
        let at = extra.get("at").and_then(Value::as_u64).map(target_kind);
        mark(&mut p, v, at);
    }
    if let (Some(r), true) = (resp, command.starts_with("decode-")) {
        let out = r.get("segments").and_then(Value::as_array);
        p.text(format!(
            "decoded: {} segment(s) (coalesced)",
            out.map_or(0, Vec::len)
        ));
        for (i, s) in out.into_iter().flatten().enumerate().take(MAX_LINES) {
            let a = s.get(0).and_then(Value::as_u64);
            let l = s.get(1).and_then(Value::as_u64).unwrap_or(0);
            match a {
                Some(a) => p.text(format!("  [{i}] {a:#x} {}", Size(l))),
                None => p.text(format!("  [{i}] bit bucket {}", Size(l))),
            }
        }
    }
    Ok(p)
}

fn mark(p: &mut Picture, v: &Verdict, target: Option<Target>) {
    if let Verdict::Rejected {
        kind,
        message,
        extra,
    } = v
    {
        let status = extra
            .get("nvme_status")
            .and_then(Value::as_u64)
            .map(|s| format!(" (nvme_status {s:#06x})"))
            .unwrap_or_default();
        p.mark(target, &format!("{kind}{status}: {message}"));
    }
}

/// The commands `explain` draws.
pub const COMMANDS: [&str; 12] = [
    "prp",
    "sgl",
    "decode-prp",
    "decode-sgl",
    "sg",
    "decode-sg",
    "mr-pages",
    "mlx5-mtt",
    "mlx5-klm",
    "map",
    "vtd",
    "vtd-translate",
];

/// `physvec explain`: reads the request, runs its command, prints the picture.
/// Returns the exit code.
pub fn run(input: &str) -> i32 {
    match explain(input) {
        Ok((text, code)) => {
            print!("{text}");
            code
        }
        Err(CliError::Malformed(m)) => {
            eprintln!("physvec explain: {m}");
            2
        }
        Err(CliError::Rejected { kind, message, .. }) => {
            eprintln!("physvec explain: {kind}: {message}");
            2
        }
    }
}

/// The picture's text and the exit code for a request.
pub fn explain(input: &str) -> Result<(String, i32), CliError> {
    let mut req: Map<String, Value> = serde_json::from_str(input)
        .map_err(|e| CliError::Malformed(format!("bad request: {e}")))?;
    let command = match req.remove("command") {
        Some(Value::String(c)) if COMMANDS.contains(&c.as_str()) => c,
        Some(c) => {
            return Err(CliError::Malformed(format!(
                "\"command\" must be one of {COMMANDS:?}, got {c}"
            )))
        }
        None => {
            return Err(CliError::Malformed(format!(
                "missing \"command\" (one of {COMMANDS:?})"
            )))
        }
    };
    if command.starts_with("vtd") {
        return crate::vtd::explain(&command, &req);
    }
    let f = crate::command(&command).ok_or_else(|| CliError::Malformed(command.clone()))?;
    // The command reads the request as sent, with the "command" member blanked out (same
    // length), so the positions in its parse errors point into the caller's input.
    let inner =
        blank_member(input, "command").unwrap_or_else(|| Value::Object(req.clone()).to_string());
    let verdict = match f(&inner) {
        Ok(v) => Verdict::Ok(v),
        Err(CliError::Rejected {
            kind,
            message,
            extra,
        }) => Verdict::Rejected {
            kind,
            message,
            extra,
        },
        Err(e) => return Err(e),
    };
    let p = draw(&command, &req, &verdict)?;
    let mut text = format!("physvec explain: {command}\n\n");
    text.push_str(&p.render());
    let code = match &verdict {
        Verdict::Ok(_) => {
            text.push_str("\nok\n");
            0
        }
        Verdict::Rejected { kind, message, .. } => {
            let _ = writeln!(text, "\nrejected: {kind}: {message}");
            1
        }
    };
    Ok((text, code))
}

/// `input` (a JSON object) with the top-level member `key` (and one comma next to it)
/// replaced by spaces, newlines kept: every other byte stays at its line and column.
/// `None` when `key` is not a top-level member or the text is not a JSON object.
fn blank_member(input: &str, key: &str) -> Option<String> {
    let b = input.as_bytes();
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    // End (exclusive) of the string starting at `i` (a quote).
    let string_end = |mut i: usize| {
        i += 1;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 2,
                b'"' => return Some(i + 1),
                _ => i += 1,
            }
        }
        None
    };
    // End (exclusive) of the value starting at `i`.
    let value_end = |mut i: usize| {
        let mut depth = 0usize;
        while i < b.len() {
            match b[i] {
                b'"' => {
                    i = string_end(i)?;
                    if depth == 0 {
                        return Some(i);
                    }
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    if depth == 0 {
                        return Some(i);
                    }
                    depth -= 1;
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
                b',' if depth == 0 => return Some(i),
                _ => {}
            }
            i += 1;
        }
        None
    };
    let mut i = skip_ws(0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    let mut prev_comma: Option<usize> = None;
    loop {
        i = skip_ws(i);
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_start = i;
        let key_end = string_end(i)?;
        let name: String = serde_json::from_str(&input[key_start..key_end]).ok()?;
        i = skip_ws(key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let end = value_end(skip_ws(i + 1))?;
        let after = skip_ws(end);
        if name == key {
            // Blank `"key": value` and the comma after it, or, for the last member, the
            // comma before it.
            let (from, to) = match (b.get(after), prev_comma) {
                (Some(b','), _) => (key_start, after + 1),
                (_, Some(c)) => (c, end),
                _ => (key_start, end),
            };
            let mut out = input.as_bytes().to_vec();
            for c in &mut out[from..to] {
                if *c != b'\n' {
                    *c = b' ';
                }
            }
            return String::from_utf8(out).ok();
        }
        match b.get(after) {
            Some(b',') => {
                prev_comma = Some(after);
                i = after + 1;
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::blank_member;

    #[test]
    fn blanking_keeps_positions() {
        let s = r#"{"command": "prp", "a": [1, {"b": "x,}"}], "c": 2}"#;
        let out = blank_member(s, "command").unwrap();
        assert_eq!(out.len(), s.len());
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(v.get("command").is_none() && v["c"] == 2);
        assert_eq!(out.find("\"c\""), s.find("\"c\""));
        let last = r#"{"a": 1,
 "command": "sg"}"#;
        let out = blank_member(last, "command").unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&out).unwrap()["a"],
            1
        );
        assert!(blank_member(r#"{"a": 1}"#, "command").is_none());
        assert!(blank_member("[1]", "command").is_none());
    }
}
