//! Scatterlists: every table of up to [`SLOTS`] entries reachable from its first entry
//! (data entries of several shapes, with and without `SG_END`, chain entries to every
//! slot, null, misaligned and unmapped chain pointers), walked with `nents` unknown and
//! known and imported, compared with a model of `sg_next()` and `sg_page()`.

use physvec::mem::SparseMemory;
use physvec::sg::{import, PageModel, Scatterlist, SgImportError, SgWalk, Vmemmap};
use physvec::PhysRange;

pub const SLOTS: usize = 6;
const BASE: u64 = 0x1000;
const PFN0: u64 = 0x100;
const VM: Vmemmap = Vmemmap::new(0);

#[derive(Clone, Copy, Debug, PartialEq)]
enum E {
    /// A data entry: page `PFN0 + slot`, whole page (contiguous with the slot before)
    /// or its second half (`gap`), `SG_END` or not.
    Full {
        end: bool,
    },
    Half {
        end: bool,
    },
    /// `page_link` not a `struct page` of the model.
    BadPage,
    /// Length 0.
    Empty,
    /// Chain to slot `to`.
    Chain {
        to: usize,
    },
    ChainNull,
    /// Chain pointer not 8-byte aligned.
    ChainMisaligned,
    /// Chain pointer to memory that is not there.
    ChainUnmapped,
}

fn alphabet() -> Vec<E> {
    let mut v = vec![
        E::Full { end: false },
        E::Full { end: true },
        E::Half { end: false },
        E::Half { end: true },
        E::BadPage,
        E::Empty,
        E::ChainNull,
        E::ChainMisaligned,
        E::ChainUnmapped,
    ];
    v.extend((0..SLOTS).map(|to| E::Chain { to }));
    v
}

fn addr_of(slot: usize) -> u64 {
    BASE + 32 * slot as u64
}

fn entry(e: E, slot: usize) -> Scatterlist {
    let page = VM.page_of(PFN0 + slot as u64).unwrap();
    match e {
        E::Full { end } => Scatterlist::page_entry(page, 0, 0x1000, end),
        E::Half { end } => Scatterlist::page_entry(page, 0x800, 0x800, end),
        E::BadPage => Scatterlist::page_entry(page + 0x20, 0, 0x1000, false),
        E::Empty => Scatterlist::page_entry(page, 0, 0, false),
        E::Chain { to } => Scatterlist::chain_entry(addr_of(to)),
        E::ChainNull => Scatterlist::chain_entry(0),
        E::ChainMisaligned => Scatterlist::chain_entry(addr_of(1) + 4),
        E::ChainUnmapped => Scatterlist::chain_entry(0x10_0000),
    }
}

/// What the model's walk needs: a slot it has not been told about yet.
struct Need(usize);

#[derive(Debug, PartialEq)]
struct Outcome {
    /// Addresses of the data entries visited, in order.
    visited: Vec<u64>,
    /// How the walk ended: `Ok` at the end, or the error kind.
    walk: Result<(), &'static str>,
    /// The import's result: ranges (coalesced) or the error kind.
    import: Result<Vec<PhysRange>, &'static str>,
    /// Entries read.
    reads: u32,
}

/// The model: `sg_next()` from slot 0 (`nents` entries, or to `SG_END`), reading at most
/// `limit` entries; each data entry turned into `pfn * 4096 + offset` as it is met.
fn model(slots: &[Option<E>], nents: Option<u32>, limit: u32) -> Result<Outcome, Need> {
    let mut o = Outcome {
        visited: Vec::new(),
        walk: Ok(()),
        import: Ok(Vec::new()),
        reads: 0,
    };
    let mut ranges: Vec<PhysRange> = Vec::new();
    // The import stops at the first bad entry; the walk goes on.
    let mut bad_entry: Option<&'static str> = None;
    let read = |o: &mut Outcome, addr: u64| -> Result<Result<Scatterlist, &'static str>, Need> {
        if o.reads >= limit {
            return Ok(Err("too_many_entries"));
        }
        o.reads += 1;
        let off = addr.wrapping_sub(BASE);
        if addr < BASE || off % 32 != 0 || off / 32 >= SLOTS as u64 {
            return Ok(Err("memory_unreadable"));
        }
        let slot = (off / 32) as usize;
        let e = slots[slot].ok_or(Need(slot))?;
        Ok(Ok(entry(e, slot)))
    };
    let fail = |mut o: Outcome, kind, bad_entry: Option<&'static str>| {
        o.walk = Err(kind);
        o.import = Err(bad_entry.unwrap_or(kind));
        Ok(o)
    };
    let mut cur: Option<(u64, Scatterlist)> = None;
    let mut index = 0u32;
    loop {
        if nents == Some(index) {
            break;
        }
        let (addr, e) = match cur {
            None => match read(&mut o, BASE)? {
                Err(k) => return fail(o, k, bad_entry),
                // The first entry must be a data entry.
                Ok(e) if e.is_chain() => return fail(o, "invalid_chain", bad_entry),
                Ok(e) => (BASE, e),
            },
            Some((a, prev)) => {
                if prev.is_last() {
                    if nents.is_some() {
                        return fail(o, "truncated_chain", bad_entry);
                    }
                    break;
                }
                let cand = a + 32;
                match read(&mut o, cand)? {
                    Err(k) => return fail(o, k, bad_entry),
                    Ok(e) if e.is_chain() => {
                        // A chain pointer: non-null, 8-byte aligned, to a data entry.
                        let t = e.chain_ptr();
                        if t == 0 || t % 8 != 0 {
                            return fail(o, "invalid_chain", bad_entry);
                        }
                        match read(&mut o, t)? {
                            Err(k) => return fail(o, k, bad_entry),
                            Ok(te) if te.is_chain() => return fail(o, "invalid_chain", bad_entry),
                            Ok(te) => (t, te),
                        }
                    }
                    Ok(e) => (cand, e),
                }
            }
        };
        // A data entry met twice: the table is a cycle.
        if o.visited.contains(&addr) {
            return fail(o, "loop_detected", bad_entry);
        }
        o.visited.push(addr);
        cur = Some((addr, e));
        index += 1;
        if bad_entry.is_some() {
            continue;
        }
        let Some(pfn) = VM.pfn_of(e.page()) else {
            bad_entry = Some("bad_page_link");
            continue;
        };
        if e.length == 0 {
            bad_entry = Some("empty_entry");
            continue;
        }
        let r = PhysRange::new(pfn * 0x1000 + u64::from(e.offset), u64::from(e.length));
        match ranges.last_mut() {
            Some(l) if l.end_u64() == Some(r.addr().as_u64()) => {
                *l = PhysRange::new(l.addr().as_u64(), l.len() + r.len())
            }
            _ => ranges.push(r),
        }
    }
    if let Some(k) = bad_entry {
        o.import = Err(k);
        return Ok(o);
    }
    o.import = Ok(ranges);
    Ok(o)
}

fn memory(slots: &[Option<E>]) -> SparseMemory<physvec::Virt> {
    let mut m = SparseMemory::default();
    let mut bytes = Vec::new();
    for (i, s) in slots.iter().enumerate() {
        // Slots the walk never reads hold zeroes (a data entry of page 0, not SG_END).
        let e = s.map_or(Scatterlist::default(), |e| entry(e, i));
        bytes.extend_from_slice(&e.to_le_bytes());
    }
    m.add(physvec::VirtAddr::new(BASE), bytes);
    m
}

fn run(mem: &SparseMemory<physvec::Virt>, nents: Option<u32>, limit: u32) -> Outcome {
    let mut visited = Vec::new();
    let mut walk_err = None;
    for e in SgWalk::new(mem, physvec::VirtAddr::new(BASE), nents, limit) {
        match e {
            Ok(e) => visited.push(e.addr.as_u64()),
            Err(e) => walk_err = Some(e),
        }
    }
    let mut out: Vec<PhysRange> = Vec::new();
    let import = import(
        mem,
        physvec::VirtAddr::new(BASE),
        nents,
        &VM,
        limit,
        &mut out,
    )
    .map(|_| out)
    .map_err(|e: SgImportError| e.kind());
    Outcome {
        visited,
        walk: walk_err.map_or(Ok(()), |e| Err(e.kind())),
        import,
        reads: 0,
    }
}

/// Enumerates every table the model's walk can distinguish: slots are decided only when
/// the walk reaches them. Returns (tables, walks compared).
pub fn check_all() -> (u64, u64) {
    let alpha = alphabet();
    let mut stack: Vec<Vec<Option<E>>> = vec![vec![None; SLOTS]];
    let (mut tables, mut walks) = (0u64, 0u64);
    while let Some(slots) = stack.pop() {
        match model(&slots, None, 64) {
            Err(Need(i)) => {
                for &e in &alpha {
                    let mut s = slots.clone();
                    s[i] = Some(e);
                    stack.push(s);
                }
            }
            Ok(full) => {
                tables += 1;
                let mem = memory(&slots);
                let n = full.visited.len() as u32;
                let mut cases = vec![(None, 64), (Some(n), 64)];
                // The read budget: exactly enough, and one short. (Not for cycles: Brent's
                // algorithm reads a few entries past the model's first repeat.)
                if full.walk != Err("loop_detected") {
                    cases.push((None, full.reads));
                    cases.push((None, full.reads - 1));
                }
                if n > 1 {
                    cases.push((Some(n - 1), 64));
                }
                cases.push((Some(n + 1), 64));
                for (nents, limit) in cases {
                    walks += 1;
                    let Ok(want) = model(&slots, nents, limit) else {
                        panic!("model needs a slot it did not need without nents");
                    };
                    let got = run(&mem, nents, limit);
                    let loops = want.walk == Err("loop_detected");
                    // The walk finds a cycle with Brent's algorithm, possibly a few entries
                    // after the model's first repeat (or not at all when `nents` entries
                    // are reached first: `for_each_sg` visits them too); what it visited
                    // before is the same.
                    let ok = if loops {
                        let nents_reached = nents == Some(got.visited.len() as u32);
                        got.visited.starts_with(&want.visited)
                            && (got.walk == want.walk || nents_reached)
                            && (got.import == want.import || nents_reached)
                    } else {
                        got.visited == want.visited
                            && got.walk == want.walk
                            && got.import == want.import
                    };
                    assert!(
                        ok,
                        "slots {slots:?} nents {nents:?} limit {limit}: got {got:x?}, model {want:x?}"
                    );
                }
            }
        }
    }
    (tables, walks)
}
