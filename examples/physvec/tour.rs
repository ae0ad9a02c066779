//! The tour: a human-readable walk through the pipeline, meant to be read start to end
//! by someone who has never seen the crate. Each section lives with its commands
//! (`map::tour`, `nvme::tour`, ...); this file numbers them, runs them in pipeline order,
//! and holds the formatting rules every section follows:
//!
//! - addresses and frame numbers in hex with `0x`;
//! - sizes exact: in KiB/MiB when that is exact (`4 KiB`, `7.5 KiB`), else in bytes
//!   (`3328 B`) ([`size`]);
//! - no `Debug` output; every byte a line claims to show is shown;
//! - wherever a count changes (pages → ranges, ranges → entries), a `why:` line says
//!   why.

use physvec::{AddrSpace, DmaConstraints, PageSize, PhysVec, Range, RangeBuilder};

pub fn run() {
    println!("physvec tour: typed, page-less DMA range lists");
    println!();
    println!("A driver moves data between memory and a device. The device needs to know where");
    println!("the bytes are: a list of (address, length) ranges. This tour follows one such list");
    println!("through the whole pipeline: build it from page frames (1), map it for the device");
    println!("(2), write it in the formats devices read, NVMe PRP/SGL (3), Linux's struct");
    println!("scatterlist (4) and RDMA memory registrations (5), and read each format back the");
    println!("way the device would; last, the mapping again through real Intel VT-d page tables");
    println!("(6). Addresses are hexadecimal; sizes are exact.");
    println!();
    heading(1, "Ranges, constraints and the builder");
    core_section();
    heading(
        2,
        "Mapping: two-step DMA through a software IOMMU vs. direct mapping",
    );
    crate::map::tour();
    heading(
        3,
        "NVMe: PRP and SGL data pointers, the command and its completion",
    );
    crate::nvme::tour();
    heading(
        4,
        "Legacy struct scatterlist (Linux x86_64, 32-byte entries)",
    );
    crate::sg::tour();
    heading(5, "RDMA memory registration");
    crate::rdma::tour();
    heading(6, "Real IOMMU page tables: Intel VT-d, written and walked");
    crate::vtd::tour();
    println!("End of the tour. `physvec explain` draws any layout the same way; the JSON");
    println!("commands (`physvec --help`, docs/cli.md) build and decode them for scripts.");
}

/// `== N. title ==`, the one heading style of the tour.
pub fn heading(n: u32, title: &str) {
    println!("== {n}. {title} ==");
}

/// An exact size: `4 KiB`, `7.5 KiB` or `512 B` when that is exact, else `3328 B`.
pub fn size(n: u64) -> String {
    crate::picture::Size(n).to_string()
}

/// `0x100800..0x101000 (2 KiB)`: start, end (exclusive), exact size.
pub fn range<S: AddrSpace>(r: Range<S>) -> String {
    let start = r.addr().as_u64();
    // `last` is inclusive; print the exclusive end as 2^64 would not fit.
    let end = r.last().as_u64() as u128 + 1;
    format!("{start:#x}..{end:#x} ({})", size(r.len()))
}

/// `0x1000, 0x1001, ...`: every value in hex with `0x`.
pub fn hex_list(v: &[u64]) -> String {
    v.iter()
        .map(|x| format!("{x:#x}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A `why:` line: the explanation of a count that changed.
pub fn why(text: &str) {
    println!("  why: {text}");
}

fn core_section() {
    println!("A range is {{start address, length in bytes}}, 16 bytes, whatever its size. The");
    println!("builder turns page frames into ranges: it merges frames that are physically");
    println!("next to each other and splits where the device's limits say so.");
    let pages = [0x1000u64, 0x1001, 0x1002, 0x1003, 0x2000, 0x2001, 0x8000];
    println!(
        "input: {} page frames of 4 KiB: {}",
        pages.len(),
        hex_list(&pages)
    );
    let c = DmaConstraints::new()
        .with_max_segment_size(0x3000)
        .with_segment_boundary_mask(0xffff_ffff);
    println!(
        "device constraints: max segment {}, no segment may cross a {:#x}-byte (4 GiB) boundary",
        size(c.max_segment_size()),
        c.segment_boundary_mask() as u128 + 1
    );
    let mut b = RangeBuilder::new(c, PhysVec::new()).expect("valid constraints");
    for pfn in pages {
        b.push_pfn(pfn, PageSize::SIZE_4K).expect("frames fit");
    }
    let list = b.finish();
    println!(
        "builder output: {} segments, {} in total:",
        list.len(),
        size(list.total_len())
    );
    for (i, r) in list.iter().enumerate() {
        println!("  [{i}] {}", range(*r));
    }
    why("frame N sits at address N * 0x1000. Frames 0x1000..0x1003 are contiguous (16 KiB)");
    why("but a segment may hold at most 12 KiB, so they become 12 KiB + 4 KiB; frames");
    why("0x2000 and 0x2001 merge into 8 KiB; frame 0x8000 stands alone: 7 frames -> 4 segments.");
    let w = list.window(0x800, 0x4000).expect("window fits");
    let first = w.first().map_or_else(String::new, range);
    let last = w.last().map_or_else(String::new, range);
    println!(
        "zero-copy window, bytes 0x800..0x4800 of the list: {} segments, first {first}, last {last}",
        w.segment_count()
    );
    why("the 16 KiB window starts 2 KiB into segment [0] and ends 2 KiB into segment [2],");
    why("so it touches 3 of the 4 segments; the first and last are trimmed, nothing is copied.");
    println!(
        "metadata: {} as PhysRange (16 bytes each) vs {} as struct scatterlist (32 bytes each)",
        size(list.len() as u64 * 16),
        size(list.len() as u64 * 32)
    );
    println!();
}
