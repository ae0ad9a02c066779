//! The tour: a human-readable walk through the pipeline. Each section lives with its
//! commands (`map::tour`, `nvme::tour`, ...); this file runs them in pipeline order.

use physvec::fmt::Bytes;
use physvec::{DmaConstraints, PageSize, PhysRange, PhysVec, RangeBuilder};

pub fn run() {
    println!("physvec tour: typed, page-less DMA range lists\n");
    core_section();
    crate::map::tour();
    crate::vtd::tour();
    crate::nvme::tour();
    crate::sg::tour();
    crate::rdma::tour();
}

fn core_section() {
    println!("== 1. ranges, constraints and the builder ==");
    let pages = [0x1000u64, 0x1001, 0x1002, 0x1003, 0x2000, 0x2001, 0x8000];
    println!("input: {} page frames of 4 KiB: {:x?}", pages.len(), pages);
    let c = DmaConstraints::new()
        .with_max_segment_size(0x3000)
        .with_segment_boundary_mask(0xffff_ffff);
    println!(
        "device constraints: max segment {}, boundary {:#x}",
        Bytes(c.max_segment_size()),
        c.segment_boundary_mask() as u128 + 1
    );
    let mut b = RangeBuilder::new(c, PhysVec::new()).expect("valid constraints");
    for pfn in pages {
        b.push_pfn(pfn, PageSize::SIZE_4K).expect("frames fit");
    }
    let list = b.finish();
    println!(
        "builder output: {} segments, {} (coalesced where contiguous, split at {}):",
        list.len(),
        Bytes(list.total_len()),
        Bytes(c.max_segment_size())
    );
    for (i, r) in list.iter().enumerate() {
        println!("  [{i}] {r}");
    }
    let w = list.window(0x800, 0x4000).expect("window fits");
    println!(
        "zero-copy window bytes 0x800..0x4800: {} segments, first {}, last {}",
        w.segment_count(),
        w.first().unwrap_or(PhysRange::new(0, 1)),
        w.last().unwrap_or(PhysRange::new(0, 1))
    );
    println!(
        "metadata: {} bytes as PhysRange (16 B each) vs {} bytes as struct scatterlist (32 B each)\n",
        list.len() * 16,
        list.len() * 32
    );
}
