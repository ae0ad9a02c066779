//! DmaBuffer: a 1 MiB window at any offset, and a hugepage buffer, translate on the
//! first try, to the PFNs the kernel reports. Without CAP_SYS_ADMIN, or without free
//! hugepages, the affected tests print SKIPPED and why.
#![cfg(target_os = "linux")]

use physvec::dma_buf::{DmaBuffer, HugePages};
use physvec::pagemap::PagemapError;
use physvec::RangeView;

fn kernel_pfn(vaddr: u64) -> u64 {
    let pfns = physvec::pagemap::pfns(vaddr, 1).unwrap();
    pfns[0]
}

/// `Some(phys)`, or `None` after printing why the test is skipped.
fn translated(r: Result<physvec::PhysVec, PagemapError>) -> Option<physvec::PhysVec> {
    match r {
        Ok(p) => Some(p),
        Err(e @ PagemapError::PfnHidden { .. }) => {
            eprintln!("SKIPPED (not root): {e}");
            None
        }
        Err(e) => panic!("translation failed on the first try: {e}"),
    }
}

fn check_against_kernel(buf: &DmaBuffer, offset: usize, phys: &physvec::PhysVec, len: usize) {
    assert_eq!(phys.total_len(), len as u64);
    let view = RangeView::full(phys).unwrap();
    let va = buf.vaddr() + offset as u64;
    let mut off = 0u64;
    while off < len as u64 {
        let v = va + off;
        let want = kernel_pfn(v) * 4096 + (v & 4095);
        assert_eq!(
            view.addr_at(off).unwrap().as_u64(),
            want,
            "offset {offset:#x} byte {off:#x}"
        );
        off = (off | 4095) + 1; // next page start
    }
    let last = len as u64 - 1;
    let v = va + last;
    assert_eq!(
        view.addr_at(last).unwrap().as_u64(),
        kernel_pfn(v) * 4096 + (v & 4095)
    );
}

#[test]
fn one_mib_at_any_offset_translates_first_try() {
    let mib = 1 << 20;
    let buf = DmaBuffer::with_huge_pages(mib + 8192, HugePages::Never).unwrap();
    for offset in [0, 0x10, 0x7f8, 0xff0, 0xfff, 0x1000, 0x1ff8] {
        let Some(phys) = translated(buf.phys_window(offset, mib)) else {
            return;
        };
        check_against_kernel(&buf, offset, &phys, mib);
    }
    // And the whole buffer.
    if let Some(phys) = translated(buf.phys()) {
        check_against_kernel(&buf, 0, &phys, buf.len());
    }
}

#[test]
fn hugepage_buffer_is_one_contiguous_2mib_range() {
    let buf = match DmaBuffer::with_huge_pages(4 << 20, HugePages::Require) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("SKIPPED (no free 2 MiB hugepages): {e}");
            return;
        }
    };
    assert!(buf.backing().is_huge());
    assert_eq!(buf.vaddr() % (2 << 20), 0);
    let Some(phys) = translated(buf.phys()) else {
        return;
    };
    check_against_kernel(&buf, 0, &phys, buf.len());
    // Each 2 MiB page is physically contiguous and 2 MiB aligned.
    assert!(phys.len() <= 2);
    for r in phys.iter() {
        assert_eq!(r.addr().as_u64() % (2 << 20), 0);
        assert_eq!(r.len() % (2 << 20), 0);
    }
    // An unaligned 1 MiB window inside one hugepage is one range.
    let w = translated(buf.phys_window(0x10, 1 << 20)).unwrap();
    assert_eq!(w.len(), 1);
}

#[test]
fn prefer_falls_back_with_a_reason_or_uses_hugepages() {
    let buf = DmaBuffer::new(2 << 20).unwrap();
    let shown = buf.backing().to_string();
    match buf.backing() {
        physvec::dma_buf::Backing::HugeTlb => assert_eq!(shown, "2 MiB hugetlbfs pages"),
        physvec::dma_buf::Backing::BasePages {
            hugetlb_error,
            thp_advised,
        } => {
            assert!(*thp_advised);
            assert!(hugetlb_error.is_some());
            assert!(shown.contains("nr_hugepages"), "{shown}");
            eprintln!("fallback: {shown}");
        }
    }
}

#[test]
fn drop_gives_the_memory_back() {
    // Map, lock and drop 64 MiB in total, far above the default RLIMIT_MEMLOCK (8 MiB):
    // a leaked lock would make a later mlock fail for a process without CAP_IPC_LOCK,
    // and VmLck (this process's locked memory) must come back down.
    let locked = || -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = s.lines().find(|l| l.starts_with("VmLck:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    for _ in 0..64 {
        let b = DmaBuffer::with_huge_pages(1 << 20, HugePages::Never).unwrap();
        assert!(locked() >= 1024, "the buffer is locked");
        drop(b);
    }
    // Other tests of this binary may hold buffers meanwhile, but not 64 MiB of leaks.
    assert!(locked() < 32 << 10, "VmLck {} KiB after dropping", locked());
}
