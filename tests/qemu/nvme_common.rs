//! Shared by the valid-layout and malformed-layout checks: guest RAM regions, the
//! placement of per-command regions, random segments, failure bookkeeping.

use crate::qemu::Rng;
use crate::valid::SglShape;

/// Disk image size: 8 MiB (16384 LBAs of 512 B).
pub const IMAGE_LEN: usize = 8 << 20;
/// Guest RAM for PRP list pages and SGL segments.
pub const DESC_LO: u64 = 0x20_0000;
pub const DESC_HI: u64 = 0x100_0000;
/// Guest RAM for data destinations.
pub const DATA_LO: u64 = 0x100_0000;
pub const DATA_HI: u64 = 0x800_0000;
/// Bytes checked on each side of every destination segment.
pub const GUARD: u64 = 64;
/// Memory page sizes (CC.MPS 0..=4).
pub const PAGE_SIZES: [u64; 5] = [4 << 10, 8 << 10, 16 << 10, 32 << 10, 64 << 10];

/// Position-dependent image contents: every little-endian u32 holds its own byte offset
/// XOR `salt`, so misplaced, shifted or reordered data is detected.
pub fn pattern_image(salt: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(IMAGE_LEN);
    for off in (0..IMAGE_LEN as u32).step_by(4) {
        v.extend_from_slice(&(off ^ salt).to_le_bytes());
    }
    v
}

/// Hands out non-overlapping regions for one command.
#[derive(Default)]
pub struct Placer {
    pub used: Vec<(u64, u64)>,
}

impl Placer {
    /// A random `align`-aligned start plus `offset` in `[lo, hi)` for `len` bytes, at
    /// least `gap` bytes away from everything placed before.
    pub fn place(
        &mut self,
        rng: &mut Rng,
        lo: u64,
        hi: u64,
        len: u64,
        align: u64,
        offset: u64,
    ) -> u64 {
        for _ in 0..10_000 {
            let slots = (hi - lo - len - offset) / align;
            let a = lo + rng.range(0, slots - 1) * align + offset;
            if self
                .used
                .iter()
                .all(|&(s, e)| a + len + GUARD <= s || e + GUARD <= a)
            {
                self.used.push((a, a + len));
                return a;
            }
        }
        panic!("guest RAM too fragmented for {len:#x} bytes")
    }

    /// `n` PRP list pages of `page` bytes in descriptor RAM, the first starting
    /// `first_off` bytes into its page.
    pub fn list_pages(&mut self, rng: &mut Rng, n: u64, page: u64, first_off: u64) -> Vec<u64> {
        (0..n)
            .map(|i| {
                let off = if i == 0 { first_off } else { 0 };
                self.place(rng, DESC_LO, DESC_HI, page, page, off)
            })
            .collect()
    }
}

/// A transfer's data segments (guest address, length) in transfer order.
pub type Segs = Vec<(u64, u64)>;

/// Random PRP-compatible segments for `len` bytes at page size `page`: the first starts at a
/// dword-aligned offset, the rest are page aligned, runs of 1..=4 contiguous pages each.
pub fn gen_prp_segs(rng: &mut Rng, p: &mut Placer, page: u64, len: u64) -> Segs {
    let off = if rng.chance(1, 3) {
        0
    } else {
        rng.range(0, page / 4 - 1) * 4
    };
    let mut segs = Vec::new();
    let mut done = 0;
    while done < len {
        let o = if segs.is_empty() { off } else { 0 };
        let run = (rng.range(1, 4) * page - o).min(len - done);
        let a = p.place(rng, DATA_LO, DATA_HI, run, page, o);
        segs.push((a, run));
        done += run;
    }
    segs
}

/// Random byte-granular segments for `len` bytes, at most `max_n` of them.
pub fn gen_sgl_segs(rng: &mut Rng, p: &mut Placer, len: u64, max_n: u64) -> Segs {
    let n = rng.log_range(1, max_n.min(len));
    let mut cuts: Vec<u64> = (1..n).map(|_| rng.range(1, len - 1)).collect();
    cuts.push(0);
    cuts.push(len);
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2)
        .map(|w| {
            let l = w[1] - w[0];
            (p.place(rng, DATA_LO, DATA_HI, l, 1, 0), l)
        })
        .collect()
}

#[derive(Default)]
pub struct Stats {
    pub cases: u64,
    pub round_trips: u64,
    pub prp: u64,
    pub sgl: u64,
    pub writes: u64,
    pub bytes: u64,
    pub compared: u64,
    pub classes: std::collections::BTreeMap<&'static str, u64>,
    pub shapes: std::collections::BTreeMap<SglShape, u64>,
    pub defect: u64,
    pub failures: Vec<String>,
}

impl Stats {
    pub fn fail(&mut self, msg: String) {
        eprintln!("FAIL: {msg}");
        self.failures.push(msg);
    }
}

pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if a == b {
        return None;
    }
    Some(
        a.iter()
            .zip(b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len())),
    )
}
