//! Scatterlist import on hostile tables: up to 8 chunks of up to 16 `struct scatterlist`
//! entries whose data entries, chain pointers (to any slot, possibly misaligned or raw)
//! and flags come from the fuzzer. Checks: no panic; at most `max_entries` reads of 32
//! bytes; the `sg_next` walk matches a reference walk (a `HashSet` of visited entries);
//! a loop is reported as `LoopDetected` within the documented `μ + 2λ` steps (or the
//! walk stops at the entry limit / `nents` first); `import` returns exactly the
//! coalesced ranges of the walked entries.
#![no_main]

mod common;

use std::cell::Cell;
use std::collections::HashMap;

use arbitrary::Arbitrary;
use common::coalesce;
use libfuzzer_sys::fuzz_target;
use physvec::mem::{MemoryError, MemoryReader};
use physvec::sg::{
    entry_phys, import, PageModel, Scatterlist, SgChunk, SgEntry, SgImportError, SgWalk, Vmemmap,
};
use physvec::PhysVec;

#[derive(Arbitrary, Debug)]
enum RawEntry {
    Data {
        pfn: u16,
        offset: u16,
        length: u32,
        last: bool,
    },
    Chain {
        chunk: u8,
        slot: u8,
        skew: u8,
    },
    Raw {
        page_link: u64,
        offset: u32,
        length: u32,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    chunks: Vec<Vec<RawEntry>>,
    start_chunk: u8,
    start_slot: u8,
    nents: Option<u8>,
    max_entries: u8,
    /// Far pfns (near 2^52) to reach the overflow paths.
    high_pfn: bool,
}

const VMEMMAP: u64 = 0xffff_ea00_0000_0000;

fn chunk_addr(i: usize) -> u64 {
    0x10_0000 * (i as u64 + 1)
}

struct Counting<'c, 'a> {
    chunks: &'c [SgChunk<'a>],
    reads: Cell<u32>,
    max_read: Cell<usize>,
}

impl MemoryReader<physvec::Virt> for Counting<'_, '_> {
    fn read(
        &self,
        addr: physvec::VirtAddr,
        buf: &mut [u8],
    ) -> Result<(), MemoryError<physvec::Virt>> {
        self.reads.set(self.reads.get() + 1);
        self.max_read.set(self.max_read.get().max(buf.len()));
        self.chunks.read(addr, buf)
    }
}

#[derive(Debug, PartialEq)]
enum Step {
    Entry(SgEntry),
    End,
    Err(SgImportError),
}

/// Reference `sg_next` walk without loop detection (the entry limit stops it), recording
/// the address of each data entry.
fn reference(
    mem: &dyn MemoryReader<physvec::Virt>,
    sgl: u64,
    nents: Option<u32>,
    limit: u32,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut reads = 0u32;
    let mut read = |a: u64| -> Result<Scatterlist, SgImportError> {
        if reads >= limit {
            return Err(SgImportError::TooManyEntries { limit });
        }
        reads += 1;
        let mut b = [0u8; 32];
        mem.read(physvec::VirtAddr::new(a), &mut b)
            .map_err(|_| SgImportError::Unreadable { addr: a })?;
        Ok(Scatterlist::from_le_bytes(&b))
    };
    let mut prev: Option<(u64, Scatterlist)> = None;
    let mut index = 0u32;
    loop {
        if nents == Some(index) {
            steps.push(Step::End);
            return steps;
        }
        let r = match prev {
            None => read(sgl).and_then(|e| {
                if e.is_chain() {
                    Err(SgImportError::InvalidChain { at: sgl, target: 0 })
                } else {
                    Ok((sgl, e))
                }
            }),
            Some((pa, pe)) => {
                if pe.is_last() {
                    steps.push(match nents {
                        Some(expected) => Step::Err(SgImportError::Truncated {
                            expected,
                            found: index,
                        }),
                        None => Step::End,
                    });
                    return steps;
                }
                match pa.checked_add(32) {
                    None => Err(SgImportError::AddressOverflow { at: pa }),
                    Some(c) => read(c).and_then(|e| {
                        if !e.is_chain() {
                            return Ok((c, e));
                        }
                        let t = e.chain_ptr();
                        if t == 0 || t % 8 != 0 {
                            return Err(SgImportError::InvalidChain { at: c, target: t });
                        }
                        let te = read(t)?;
                        if te.is_chain() {
                            return Err(SgImportError::InvalidChain { at: c, target: t });
                        }
                        Ok((t, te))
                    }),
                }
            }
        };
        match r {
            Ok((addr, entry)) => {
                steps.push(Step::Entry(SgEntry {
                    index,
                    addr: physvec::VirtAddr::new(addr),
                    entry,
                }));
                prev = Some((addr, entry));
                index += 1;
            }
            Err(e) => {
                steps.push(Step::Err(e));
                return steps;
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let vm = Vmemmap::new(VMEMMAP);
    let nchunks = input.chunks.len().min(8);
    if nchunks == 0 {
        return;
    }
    let mut storage: Vec<Vec<Scatterlist>> = Vec::new();
    for raw in input.chunks.iter().take(nchunks) {
        let mut entries = Vec::new();
        for e in raw.iter().take(16) {
            entries.push(match *e {
                RawEntry::Data {
                    pfn,
                    offset,
                    length,
                    last,
                } => {
                    let pfn = if input.high_pfn {
                        (1u64 << 52) - 1 - u64::from(pfn)
                    } else {
                        u64::from(pfn)
                    };
                    let page = vm.page_of(pfn).unwrap_or(0);
                    Scatterlist::page_entry(page, u32::from(offset), length, last)
                }
                RawEntry::Chain { chunk, slot, skew } => {
                    let t = chunk_addr(usize::from(chunk) % nchunks)
                        + 32 * u64::from(slot % 17)
                        + if skew >= 248 { u64::from(skew % 8) } else { 0 };
                    Scatterlist::chain_entry(t)
                }
                RawEntry::Raw {
                    page_link,
                    offset,
                    length,
                } => Scatterlist {
                    page_link,
                    offset,
                    length,
                    ..Scatterlist::default()
                },
            });
        }
        if entries.is_empty() {
            entries.push(Scatterlist::default());
        }
        storage.push(entries);
    }
    let chunks: Vec<SgChunk> = storage
        .iter_mut()
        .enumerate()
        .map(|(i, e)| SgChunk {
            addr: physvec::VirtAddr::new(chunk_addr(i)),
            entries: e,
        })
        .collect();
    let mem = Counting {
        chunks: &chunks,
        reads: Cell::new(0),
        max_read: Cell::new(0),
    };
    let sgl = chunk_addr(usize::from(input.start_chunk) % nchunks)
        + 32 * u64::from(input.start_slot % 16);
    let nents = input.nents.map(u32::from);
    let limit = u32::from(input.max_entries);

    let expect = reference(&mem, sgl, nents, limit);
    mem.reads.set(0);
    let mut walk: Vec<Step> = SgWalk::new(&mem, physvec::VirtAddr::new(sgl), nents, limit)
        .map(|r| match r {
            Ok(e) => Step::Entry(e),
            Err(e) => Step::Err(e),
        })
        .collect();
    if !matches!(walk.last(), Some(Step::Err(_))) {
        walk.push(Step::End);
    }
    assert!(
        mem.reads.get() <= limit,
        "{} reads, limit {limit}",
        mem.reads.get()
    );
    assert!(mem.max_read.get() <= 32);

    // The walk equals the reference, except that it may stop early with LoopDetected at
    // an address the reference visited before.
    let mut first_seen: HashMap<u64, usize> = HashMap::new();
    for (i, got) in walk.iter().enumerate() {
        let want = &expect[i];
        if got == want {
            if let Step::Entry(e) = want {
                first_seen.entry(e.addr.as_u64()).or_insert(i);
            }
            continue;
        }
        let (Step::Err(SgImportError::LoopDetected { at }), Step::Entry(e)) = (got, want) else {
            panic!("walk differs from the reference at step {i}: {got:?} vs {want:?}");
        };
        assert_eq!(*at, e.addr.as_u64());
        let mu = *first_seen
            .get(at)
            .expect("loop reported at the first visit of an entry");
        let lambda = i - mu;
        // Brent: the tortoise jumps at steps 2^k - 1, so the cycle is found within
        // 2 max(mu, lambda) + lambda steps.
        assert!(
            i <= 2 * mu.max(lambda) + lambda,
            "loop found late: step {i}, mu {mu}, lambda {lambda}"
        );
        assert_eq!(i + 1, walk.len());
    }
    // Once the walk repeats an entry (first repeat at step i0 of the one first seen at
    // mu), it yields no entry beyond the detection bound.
    let mut seen: HashMap<u64, usize> = HashMap::new();
    let mut bound = usize::MAX;
    for (i, s) in walk.iter().enumerate() {
        if let Step::Entry(e) = s {
            assert!(i <= bound, "loop not detected by step {bound}");
            if let Some(&mu) = seen.get(&e.addr.as_u64()) {
                if bound == usize::MAX {
                    let lambda = i - mu;
                    bound = 2 * mu.max(lambda) + lambda;
                }
            } else {
                seen.insert(e.addr.as_u64(), i);
            }
        }
    }

    // import == the walk's entries, converted and coalesced.
    mem.reads.set(0);
    let mut out = PhysVec::new();
    let r = import(
        &mem,
        physvec::VirtAddr::new(sgl),
        nents,
        &vm,
        limit,
        &mut out,
    );
    assert!(mem.reads.get() <= limit);
    let mut want: Vec<(u64, u64)> = Vec::new();
    let mut want_err = None;
    for s in &walk {
        match s {
            Step::Entry(e) => match entry_phys(&vm, e.index, &e.entry) {
                Ok(r) => want.push((r.addr().as_u64(), r.len())),
                Err(err) => {
                    want_err = Some(err);
                    break;
                }
            },
            Step::Err(err) => {
                want_err = Some(*err);
                break;
            }
            Step::End => break,
        }
    }
    match (r, want_err) {
        (Ok(n), None) => {
            assert_eq!(n as usize, want.len());
            let got: Vec<(u64, u64)> = out.iter().map(|r| (r.addr().as_u64(), r.len())).collect();
            assert_eq!(got, coalesce(&want));
        }
        (Err(e), Some(w)) => {
            assert_eq!(e, w);
            let _ = (e.to_string(), e.kind(), e.at());
        }
        (r, w) => panic!("import {r:?}, expected error {w:?}"),
    }
});
