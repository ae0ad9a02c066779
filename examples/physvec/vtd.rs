//! `vtd` and `vtd-translate` (Intel VT-d tables: the driver side and the device side),
//! their `explain` pictures and the VT-d part of the tour.
use crate::cli::{self, CliError};
use crate::map::Direction;
use physvec::fmt::Bytes;
use physvec::map::vtd::{
    self, Access, DirtyPages, Invalidation, PageList, VtdCaps, VtdConfig, VtdMapper, WalkError,
    WalkStep,
};
use physvec::map::{self as m, DataDirection, MapError};
use physvec::mem::{MemoryError, MemoryReader, MemoryWriter, SparseMemory};
use physvec::{DmaVec, Phys, PhysAddr, PhysRange};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::fmt::Write as _;

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum Op {
    Map {
        segments: Vec<[u64; 2]>,
        direction: Direction,
    },
    Unmap {
        io: usize,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    aw_bits: u32,
    source_id: u16,
    domain_id: u16,
    table_pages: Vec<u64>,
    ops: Vec<Op>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum AccessArg {
    Read,
    Write,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TranslateRequest {
    root_table: u64,
    source_id: u16,
    iova: u64,
    access: AccessArg,
    aw_bits: u32,
    memory: Vec<cli::MemoryEntry>,
}

fn check_aw(aw: u32) -> Result<(), CliError> {
    if aw == 39 || aw == 48 {
        Ok(())
    } else {
        Err(CliError::rejected(
            "invalid_aw_bits",
            format!("aw_bits {aw} is not 39 or 48"),
        ))
    }
}

fn map_error(e: MapError, op: usize) -> CliError {
    let kind = match e {
        MapError::IovaExhausted { .. } => "no_iova_space",
        e => e.kind(),
    };
    CliError::rejected(kind, format!("op {op}: {e}")).with("at", op)
}

fn invalidation_json(inv: &Invalidation, did: u16) -> Value {
    match *inv {
        Invalidation::ContextGlobal
        | Invalidation::ContextDomain { .. }
        | Invalidation::ContextDevice { .. } => json!({ "granularity": "context" }),
        Invalidation::IotlbGlobal => json!({ "granularity": "global", "domain_id": did }),
        Invalidation::IotlbDomain { did } => json!({ "granularity": "domain", "domain_id": did }),
        Invalidation::IotlbPage { did, addr, am } => {
            json!({ "granularity": "page", "domain_id": did, "addr": addr, "am": am })
        }
    }
}

/// The table pages of a request: only pages the writer touches are materialised, so a
/// long `table_pages` list costs nothing until used. Untouched pages read as zeros.
#[derive(Default)]
struct TablePages {
    allowed: HashSet<u64>,
    pages: std::collections::HashMap<u64, Box<[u8; 4096]>>,
}

impl TablePages {
    fn page(&self, at: PhysAddr, len: usize) -> Result<(u64, usize), MemoryError<Phys>> {
        let err = MemoryError::at(at, len);
        let addr = at.as_u64();
        let base = addr & !0xfff;
        let off = (addr & 0xfff) as usize;
        if !self.allowed.contains(&base) || off + len > 4096 {
            return Err(err);
        }
        Ok((base, off))
    }
}

impl MemoryReader<Phys> for TablePages {
    fn read(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), MemoryError<Phys>> {
        let (base, off) = self.page(addr, buf.len())?;
        match self.pages.get(&base) {
            Some(p) => buf.copy_from_slice(&p[off..off + buf.len()]),
            None => buf.fill(0),
        }
        Ok(())
    }
}

impl MemoryWriter<Phys> for TablePages {
    fn write(&mut self, addr: PhysAddr, buf: &[u8]) -> Result<(), MemoryError<Phys>> {
        let (base, off) = self.page(addr, buf.len())?;
        let p = self
            .pages
            .entry(base)
            .or_insert_with(|| Box::new([0; 4096]));
        p[off..off + buf.len()].copy_from_slice(buf);
        Ok(())
    }
}

type Mapper = VtdMapper<DirtyPages<TablePages>, PageList>;

/// Builds the mapper over the request's table pages (all zeroed memory).
fn mapper(req: &Request) -> Result<Mapper, CliError> {
    check_aw(req.aw_bits)?;
    let mut mem = TablePages::default();
    for (i, &p) in req.table_pages.iter().enumerate() {
        if p & 0xfff != 0 || p > u64::MAX - 0xfff {
            return Err(CliError::rejected(
                "misaligned",
                format!("table page {i} ({p:#x}) is not 4 KiB-aligned"),
            )
            .with("at", i));
        }
        if !mem.allowed.insert(p) {
            return Err(CliError::rejected(
                "duplicate_table_page",
                format!("table page {i} ({p:#x}) is listed twice"),
            )
            .with("at", i));
        }
    }
    let pages = PageList::new(req.table_pages.iter().copied());
    let cfg = VtdConfig::new(req.aw_bits, req.source_id, req.domain_id);
    VtdMapper::new(DirtyPages::new(mem), pages, cfg).map_err(|e| match e {
        MapError::TablePagesExhausted => CliError::rejected(
            "too_few_table_pages",
            "the root table, the context table and the top-level table need 3 pages",
        ),
        e => CliError::rejected(e.kind(), e.to_string()),
    })
}

/// The whole run: steps as JSON plus the root table.
fn run_ops(req: &Request) -> Result<(u64, Vec<Value>), CliError> {
    let mapper = mapper(req)?;
    let root = mapper.root_table();
    let mut live: Vec<Option<m::Mapping<'_, Mapper, DmaVec>>> = Vec::new();
    let mut steps = Vec::with_capacity(req.ops.len());
    for (i, op) in req.ops.iter().enumerate() {
        let dma = match op {
            Op::Map {
                segments,
                direction,
            } => {
                let phys: Vec<PhysRange> =
                    cli::segments::<physvec::Phys>(segments).map_err(|e| e.with("at", i))?;
                let mapping =
                    m::map(&mapper, &phys, (*direction).into()).map_err(|e| map_error(e, i))?;
                let dma = cli::segments_json(mapping.dma());
                live.push(Some(mapping));
                dma
            }
            Op::Unmap { io } => {
                let bad = || {
                    CliError::rejected(
                        "invalid_unmap",
                        format!("op {i}: op {io} is not an earlier live map"),
                    )
                    .with("at", i)
                };
                if *io >= i || !matches!(req.ops.get(*io), Some(Op::Map { .. })) {
                    return Err(bad());
                }
                // Index among the maps: the number of maps before op `io`.
                let k = req.ops[..*io]
                    .iter()
                    .filter(|o| matches!(o, Op::Map { .. }))
                    .count();
                let mapping = live.get_mut(k).and_then(Option::take).ok_or_else(bad)?;
                mapping.unmap().map_err(|e| map_error(e, i))?;
                Value::Array(Vec::new())
            }
        };
        let dirty = mapper.memory_mut().take_dirty();
        let mem = mapper.memory();
        let mut memory = Vec::with_capacity(dirty.len());
        for p in dirty {
            let mut b = vec![0u8; 0x1000];
            mem.read(physvec::PhysAddr::new(p), &mut b)
                .map_err(|e| CliError::rejected("table_memory", e.to_string()))?;
            memory.push(json!({ "addr": p, "hex": cli::hex(&b) }));
        }
        drop(mem);
        let invalidate: Vec<Value> = mapper
            .drain_invalidations()
            .iter()
            .map(|inv| invalidation_json(inv, req.domain_id))
            .collect();
        steps.push(json!({ "dma": dma, "memory": memory, "invalidate": invalidate }));
    }
    // Mappings still live are torn down when `live` drops; the response is complete.
    Ok((root, steps))
}

pub fn vtd(input: &str) -> Result<Value, CliError> {
    let req: Request = cli::parse(input)?;
    let (root, steps) = run_ops(&req)?;
    Ok(json!({ "root_table": root, "steps": steps }))
}

fn translate(
    req: &TranslateRequest,
    trace: &mut dyn FnMut(WalkStep),
) -> Result<Result<vtd::Translation, WalkError>, CliError> {
    check_aw(req.aw_bits)?;
    let mem = cli::memory(&req.memory)?;
    let access = match req.access {
        AccessArg::Read => Access::Read,
        AccessArg::Write => Access::Write,
    };
    Ok(vtd::translate_traced(
        &mem,
        req.root_table,
        VtdCaps::qemu(req.aw_bits),
        req.source_id,
        req.iova,
        access,
        trace,
    ))
}

fn walk_error(e: WalkError) -> CliError {
    let err = CliError::rejected(e.kind(), e.to_string());
    match e {
        WalkError::Fault(f) => {
            let err = err.with("fault_reason", f.reason.code());
            if f.recorded {
                err
            } else {
                err.with("recorded", false)
            }
        }
        WalkError::Memory(m) => err.with("at", m.addr.as_u64()),
        WalkError::InterruptWindow => err,
    }
}

pub fn vtd_translate(input: &str) -> Result<Value, CliError> {
    let req: TranslateRequest = cli::parse(input)?;
    match translate(&req, &mut |_| {})? {
        Ok(t) => Ok(json!({
            "phys": t.phys,
            "page_size": t.page_size,
            "domain_id": t.domain_id,
        })),
        Err(e) => Err(walk_error(e)),
    }
}

// ---------------------------------------------------------------------------------------
// explain

fn bits(raw: u64, level: u32) -> String {
    let mut s = String::new();
    s.push(if raw & vtd::SL_R != 0 { 'R' } else { '-' });
    s.push(if raw & vtd::SL_W != 0 { 'W' } else { '-' });
    if raw & vtd::SL_PS != 0 && level > 1 {
        s.push_str(" PS");
    }
    if raw & vtd::SL_SNP != 0 {
        s.push_str(" SNP");
    }
    s
}

fn level_name(level: u32) -> &'static str {
    match level {
        4 => "PML4E",
        3 => "PDPTE",
        2 => "PDE",
        1 => "PTE",
        _ => "?",
    }
}

/// Draws one walk: root → context → each level, the entry bits, where it stopped.
fn draw_walk(out: &mut String, req: &TranslateRequest) -> Result<i32, CliError> {
    let mut steps = Vec::new();
    let r = translate(req, &mut |s| steps.push(s))?;
    let _ = writeln!(
        out,
        "walk of IOVA {:#x} ({}) for source {:02x}:{:02x}.{} through root table {:#x} (aw {})",
        req.iova,
        match req.access {
            AccessArg::Read => "read",
            AccessArg::Write => "write",
        },
        req.source_id >> 8,
        (req.source_id >> 3) & 0x1f,
        req.source_id & 7,
        req.root_table,
        req.aw_bits
    );
    for s in &steps {
        match *s {
            WalkStep::Root { addr, raw } => {
                let _ = writeln!(
                    out,
                    "  root[{:#04x}]    @ {addr:#x} = {:#018x} {:#018x}  P={} ctp={:#x}",
                    req.source_id >> 8,
                    raw[1],
                    raw[0],
                    raw[0] & 1,
                    raw[0] & !0xfff
                );
            }
            WalkStep::Context { addr, raw } => {
                let _ = writeln!(
                    out,
                    "  context[{:#04x}] @ {addr:#x} = {:#018x} {:#018x}  P={} FPD={} TT={} AW={} DID={} slptptr={:#x}",
                    req.source_id & 0xff,
                    raw[1],
                    raw[0],
                    raw[0] & 1,
                    (raw[0] >> 1) & 1,
                    (raw[0] >> 2) & 3,
                    raw[1] & 7,
                    (raw[1] >> 8) & 0xffff,
                    raw[0] & !0xfff
                );
            }
            WalkStep::Sl { level, addr, raw } => {
                let shift = 12 + 9 * (level.max(1) - 1);
                let idx = (req.iova >> shift.min(63)) & 0x1ff;
                let _ = writeln!(
                    out,
                    "  {:<5}[{idx:>3}]   @ {addr:#x} = {raw:#018x}  {} -> {:#x}",
                    level_name(level),
                    bits(raw, level),
                    vtd::sl_addr(raw, req.aw_bits)
                );
            }
        }
    }
    match r {
        Ok(t) => {
            let _ = writeln!(
                out,
                "  => phys {:#x} ({} page{}), domain {}\n\nok",
                t.phys,
                Bytes(t.page_size),
                if t.pass_through { ", pass-through" } else { "" },
                t.domain_id
            );
            Ok(0)
        }
        Err(e) => {
            let reason = match e {
                WalkError::Fault(f) => format!(" (fault reason {:#x})", f.reason.code()),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "  <== ERROR {}{reason}: {e}\n\nrejected: {}",
                e.kind(),
                e.kind()
            );
            Ok(1)
        }
    }
}

/// `explain` for `vtd` and `vtd-translate`: returns the picture and the exit code.
pub fn explain(command: &str, req: &Map<String, Value>) -> Result<(String, i32), CliError> {
    let text = Value::Object(req.clone()).to_string();
    let mut out = format!("physvec explain: {command}\n\n");
    if command == "vtd-translate" {
        let req: TranslateRequest = cli::parse(&text)?;
        let code = draw_walk(&mut out, &req)?;
        return Ok((out, code));
    }
    let parsed: Request = cli::parse(&text)?;
    let _ = writeln!(
        out,
        "VT-d tables for source {:02x}:{:02x}.{}, domain {}, {}-level tables (aw {}), {} table page(s) offered",
        parsed.source_id >> 8,
        (parsed.source_id >> 3) & 0x1f,
        parsed.source_id & 7,
        parsed.domain_id,
        if parsed.aw_bits == 48 { 4 } else { 3 },
        parsed.aw_bits,
        parsed.table_pages.len()
    );
    match run_ops(&parsed) {
        Ok((root, steps)) => {
            let _ = writeln!(out, "root table {root:#x}");
            for (i, (op, step)) in parsed.ops.iter().zip(&steps).enumerate() {
                match op {
                    Op::Map {
                        segments,
                        direction,
                    } => {
                        let d: DataDirection = (*direction).into();
                        let _ = writeln!(out, "op {i}: map {} segment(s) {d}", segments.len());
                        for [a, l] in segments {
                            let _ = writeln!(out, "    phys {a:#x} {}", Bytes(*l));
                        }
                    }
                    Op::Unmap { io } => {
                        let _ = writeln!(out, "op {i}: unmap the I/O of op {io}");
                    }
                }
                for r in step["dma"].as_array().into_iter().flatten() {
                    let _ = writeln!(
                        out,
                        "    => dma {:#x} {}",
                        r[0].as_u64().unwrap_or(0),
                        Bytes(r[1].as_u64().unwrap_or(0))
                    );
                }
                let pages: Vec<String> = step["memory"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| format!("{:#x}", e["addr"].as_u64().unwrap_or(0)))
                    .collect();
                let _ = writeln!(out, "    table pages written: {}", pages.join(" "));
                for inv in step["invalidate"].as_array().into_iter().flatten() {
                    let _ = writeln!(out, "    invalidate {inv}");
                }
            }
            // The walk of the first byte of every live map's DMA, on the final tables.
            for (i, step) in steps.iter().enumerate() {
                let Some(Op::Map { direction, .. }) = parsed.ops.get(i) else {
                    continue;
                };
                let unmapped = parsed
                    .ops
                    .iter()
                    .any(|o| matches!(o, Op::Unmap { io } if *io == i));
                let Some(first) = step["dma"].get(0).and_then(|r| r[0].as_u64()) else {
                    continue;
                };
                let access = if DataDirection::from(*direction).device_writes() {
                    AccessArg::Write
                } else {
                    AccessArg::Read
                };
                let t = TranslateRequest {
                    root_table: root,
                    source_id: parsed.source_id,
                    iova: first,
                    access,
                    aw_bits: parsed.aw_bits,
                    memory: final_memory(&steps)?,
                };
                let _ = writeln!(
                    out,
                    "\nop {i}{}: ",
                    if unmapped { " (unmapped since)" } else { "" }
                );
                let mut walk = String::new();
                draw_walk(&mut walk, &t)?;
                for line in walk.lines().filter(|l| !l.is_empty() && *l != "ok") {
                    if !line.starts_with("rejected") {
                        let _ = writeln!(out, "{line}");
                    }
                }
            }
            out.push_str("\nok\n");
            Ok((out, 0))
        }
        Err(CliError::Rejected {
            kind,
            message,
            extra,
        }) => {
            let at = extra.get("at").and_then(Value::as_u64);
            let _ = writeln!(
                out,
                "<== ERROR {kind}{}: {message}\n\nrejected: {kind}: {message}",
                at.map(|a| format!(" at op/page {a}")).unwrap_or_default()
            );
            Ok((out, 1))
        }
        Err(e) => Err(e),
    }
}

/// The memory after every step (later steps overwrite earlier pages).
fn final_memory(steps: &[Value]) -> Result<Vec<cli::MemoryEntry>, CliError> {
    let mut pages: std::collections::BTreeMap<u64, String> = Default::default();
    for s in steps {
        for e in s["memory"].as_array().into_iter().flatten() {
            let a = e["addr"].as_u64().unwrap_or(0);
            pages.insert(a, e["hex"].as_str().unwrap_or("").to_string());
        }
    }
    Ok(pages
        .into_iter()
        .map(|(addr, hex)| cli::MemoryEntry { addr, hex })
        .collect())
}

// ---------------------------------------------------------------------------------------
// tour

pub fn tour() {
    let pages: Vec<u64> = (0..16).map(|i| 0x10_0000 + i * 0x1000).collect();
    let mut mem = SparseMemory::default();
    for &p in &pages {
        mem.add_zeroed(physvec::PhysAddr::new(p), 0x1000);
    }
    let cfg = VtdConfig::new(48, 0x0008, 1);
    let iommu = match VtdMapper::new(DirtyPages::new(mem), PageList::new(pages), cfg) {
        Ok(i) => i,
        Err(e) => {
            println!("  cannot build tables: {e}\n");
            return;
        }
    };
    println!(
        "tables for NVMe at 00:01.0 (source id 0x0008), domain 1, 4 levels; root table at {:#x}",
        iommu.root_table()
    );
    let phys = [
        PhysRange::new(0x4000_0000, 0x20_0000),
        PhysRange::new(0x7000, 0x1000),
    ];
    let io = match m::map(&iommu, &phys, DataDirection::FromDevice) {
        Ok(io) => io,
        Err(e) => {
            println!("  map failed: {e}\n");
            return;
        }
    };
    let dma = io.dma()[0];
    let t = iommu.tables();
    let c = t.counts();
    drop(t);
    println!(
        "map 2 MiB + 4 KiB from the device: one IOVA range {dma}, {} table page(s), leaves {:?} (4K/2M/1G)",
        c.tables, c.leaves
    );
    let caps = VtdCaps::qemu(48);
    for (off, access) in [
        (0x1234, Access::Write),
        (0x20_0010, Access::Write),
        (0x10, Access::Read),
    ] {
        let iova = dma.addr().as_u64() + off;
        let r = vtd::translate(
            &*iommu.memory(),
            iommu.root_table(),
            caps,
            0x0008,
            iova,
            access,
        );
        match r {
            Ok(t) => println!(
                "  device {} at IOVA {iova:#x} -> phys {:#x} through a {} leaf",
                access.as_str(),
                t.phys,
                Bytes(t.page_size)
            ),
            Err(e) => println!("  device {} at IOVA {iova:#x} -> {e}", access.as_str()),
        }
    }
    let _ = iommu.drain_invalidations();
    if let Err(e) = io.unmap() {
        println!("  unmap failed: {e}");
    }
    for inv in iommu.drain_invalidations() {
        let regs: Vec<String> = inv
            .register_writes(0xf0)
            .iter()
            .map(|w| format!("[{:#x}] <- {:#x}", w.offset, w.value))
            .collect();
        let d = inv.descriptor();
        println!(
            "unmap needs {inv:?}: registers {} or queued descriptor {:#x}:{:#x}",
            regs.join(", "),
            d[1],
            d[0]
        );
    }
    println!("(tests/qemu_vtd.rs checks all of this against QEMU's intel-iommu)\n");
}
