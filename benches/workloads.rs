//! The I/Os both pipelines run, as physical segments (what a bio's multi-page bvecs
//! cover: `bio_add_page()` already merged physically contiguous pages).

use physvec::PhysRange;

/// Page frames of RAM (3 GiB).
pub const RAM_PFNS: u64 = 0xC_0000;
/// A peer device's P2PDMA BAR: `[0xE000_0000, +256 MiB)`.
pub const BAR: (u64, u64) = (0xE000_0000, 0x1000_0000);
/// Bus address = physical address + this, through a PCIe switch (`BUS_ADDR`).
pub const BUS_OFFSET: u64 = 0x10_0000_0000;
/// PFNs the vmemmap covers (RAM, the MMIO hole and the BAR).
pub const VMEMMAP_PFNS: usize = 0xF_0000;

/// How the NVMe driver describes the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dptr {
    /// PRP1/PRP2 and PRP lists (as with `sgl_threshold = 0` or a PRP-only controller).
    Prp,
    /// SGL Data Blocks.
    Sgl,
}

/// One benchmark I/O.
pub struct Workload {
    /// Short id used in bench names.
    pub id: &'static str,
    /// Human description.
    pub what: &'static str,
    /// The physical segments, in transfer order.
    pub phys: Vec<PhysRange>,
    /// PRP or SGL.
    pub dptr: Dptr,
}

impl Workload {
    /// Bytes transferred.
    pub fn total(&self) -> u64 {
        self.phys.iter().map(|r| r.len()).sum()
    }
}

/// xorshift64*: deterministic scatter.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// `n` distinct slots of `slot_pages` pages in `[lo_pfn, hi_pfn)`, no two adjacent (so
/// nothing coalesces by accident), in random order.
fn slots(rng: &mut Rng, n: usize, slot_pages: u64, lo_pfn: u64, hi_pfn: u64) -> Vec<u64> {
    let count = (hi_pfn - lo_pfn) / slot_pages;
    let mut out: Vec<u64> = Vec::with_capacity(n);
    while out.len() < n {
        let s = rng.next() % count;
        if out.iter().any(|&o| o.abs_diff(s) <= 1) {
            continue;
        }
        out.push(s);
    }
    out.into_iter()
        .map(|s| (lo_pfn + s * slot_pages) << 12)
        .collect()
}

fn scattered_pages(seed: u64, n: usize) -> Vec<PhysRange> {
    let mut rng = Rng(seed);
    slots(&mut rng, n, 1, 0x1000, RAM_PFNS)
        .into_iter()
        .map(|a| PhysRange::new(a, 4096))
        .collect()
}

/// Every workload, in report order.
pub fn all() -> Vec<Workload> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let runs_64k: Vec<PhysRange> = slots(&mut rng, 16, 32, 0x1000, RAM_PFNS)
        .into_iter()
        .map(|a| PhysRange::new(a, 0x1_0000))
        .collect();
    let unaligned: Vec<PhysRange> = slots(&mut rng, 16, 32, 0x1000, RAM_PFNS)
        .into_iter()
        .enumerate()
        .map(|(i, a)| match i {
            0 => PhysRange::new(a + 0x200, 0x1_0000 - 0x200),
            15 => PhysRange::new(a, 0x1_0000 + 0x200),
            _ => PhysRange::new(a, 0x1_0000),
        })
        .collect();
    let p2p_sizes = [
        0x1_0000, 0x1000, 0x4000, 0x8000, 0x2000, 0x1_0000, 0x1000, 0x1_0000,
    ];
    let bar_lo = BAR.0 >> 12;
    let p2p: Vec<PhysRange> = slots(
        &mut rng,
        p2p_sizes.len(),
        32,
        bar_lo,
        bar_lo + (BAR.1 >> 12),
    )
    .into_iter()
    .zip(p2p_sizes)
    .map(|(a, len)| PhysRange::new(a, len))
    .collect();
    vec![
        Workload {
            id: "4k",
            what: "4 KiB, one page",
            phys: vec![PhysRange::new(0x1234_5000, 4096)],
            dptr: Dptr::Prp,
        },
        Workload {
            id: "128k_32pages",
            what: "128 KiB, 32 scattered 4 KiB pages",
            phys: scattered_pages(1, 32),
            dptr: Dptr::Prp,
        },
        Workload {
            id: "1m_16x64k",
            what: "1 MiB, 16 contiguous 64 KiB runs",
            phys: runs_64k,
            dptr: Dptr::Prp,
        },
        Workload {
            id: "2m_512pages",
            what: "2 MiB, 512 scattered 4 KiB pages",
            phys: scattered_pages(2, 512),
            dptr: Dptr::Prp,
        },
        Workload {
            id: "1m_unaligned_sgl",
            what: "1 MiB, 16 runs, first starts at +0x200, last ends at +0x200 (SGL)",
            phys: unaligned,
            dptr: Dptr::Sgl,
        },
        Workload {
            id: "p2p_256k",
            what: "256 KiB P2P, 8 peer-BAR ranges of 4-64 KiB (bus addresses)",
            phys: p2p,
            dptr: Dptr::Prp,
        },
    ]
}
