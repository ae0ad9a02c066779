//! DmaBuffer: a 1 MiB window at any offset, and a hugepage buffer, translate on the
//! first try, to the PFNs the kernel reports. Without CAP_SYS_ADMIN, or without free
//! hugepages, the affected tests print SKIPPED and why.
#![cfg(target_os = "linux")]

use physvec::dma_buf::{Backing, DmaBuffer, HugePages};
use physvec::pagemap::PagemapError;
use physvec::RangeView;
use std::sync::{Mutex, MutexGuard};

/// Tests that take hugetlbfs pages or count the free ones run one at a time.
static HUGE_POOL: Mutex<()> = Mutex::new(());
fn pool() -> MutexGuard<'static, ()> {
    HUGE_POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A `/proc/meminfo` counter (`HugePages_Total`, `HugePages_Free`).
fn meminfo(key: &str) -> u64 {
    let m = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = m.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The kernel page size, in KiB, of the mapping that holds `vaddr` (`/proc/self/smaps`:
/// 2048 for hugetlbfs, 4 for base pages even when transparent hugepages back them).
fn kernel_page_kib(vaddr: u64) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                inside = (a..b).contains(&vaddr);
                continue;
            }
        }
        if let (true, Some(v)) = (inside, line.strip_prefix("KernelPageSize:")) {
            return v.trim().trim_end_matches("kB").trim().parse().unwrap();
        }
    }
    panic!("no mapping holds {vaddr:#x}");
}

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
    let _pool = pool();
    let buf = match DmaBuffer::with_huge_pages(4 << 20, HugePages::Require) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("SKIPPED (no free 2 MiB hugepages): {e}");
            return;
        }
    };
    assert!(buf.backing().is_huge());
    assert_eq!(buf.vaddr() % (2 << 20), 0);
    assert_eq!(
        kernel_page_kib(buf.vaddr()),
        2048,
        "hugetlbfs pages, not THP"
    );
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
    let _pool = pool();
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

#[test]
fn require_beyond_the_pool_is_an_error_that_says_how_to_reserve() {
    let _pool = pool();
    let overcommit = std::fs::read_to_string("/proc/sys/vm/nr_overcommit_hugepages")
        .map_or(0, |s| s.trim().parse::<u64>().unwrap_or(0));
    if overcommit > 0 {
        eprintln!("SKIPPED (surplus hugepages allowed: the pool can grow)");
        return;
    }
    let want = meminfo("HugePages_Total:") + 1;
    let len = (want as usize) << 21;
    let e = DmaBuffer::with_huge_pages(len, HugePages::Require).unwrap_err();
    assert_eq!(e.kind(), "no_huge_pages");
    // The OS error that refused the mapping is the error's source.
    let source = std::error::Error::source(&e).expect("the mmap error is the source");
    let io = source
        .downcast_ref::<std::io::Error>()
        .expect("an io::Error");
    assert_eq!(
        io.raw_os_error(),
        Some(12),
        "ENOMEM: the pool has too few free pages"
    );
    let text = e.to_string();
    assert!(
        text.contains(&format!("echo {want} > /proc/sys/vm/nr_hugepages")),
        "{text}"
    );
}

#[test]
fn prefer_without_free_hugepages_falls_back_to_aligned_advised_base_pages() {
    let _pool = pool();
    // Hold every free hugetlbfs page, so that `Prefer` has to fall back.
    let mut held = Vec::new();
    while held.len() < 64 {
        match DmaBuffer::with_huge_pages(2 << 20, HugePages::Require) {
            Ok(b) => held.push(b),
            Err(_) => break,
        }
    }
    if meminfo("HugePages_Free:") != 0 {
        // Mapping more was refused for another reason (RLIMIT_MEMLOCK without root).
        eprintln!("SKIPPED (cannot hold every free hugepage)");
        return;
    }
    let mut buf = DmaBuffer::with_huge_pages(3 << 20, HugePages::Prefer).unwrap();
    match buf.backing() {
        Backing::BasePages {
            hugetlb_error,
            thp_advised,
        } => {
            assert!(hugetlb_error.is_some(), "the reason is kept");
            assert!(*thp_advised);
        }
        Backing::HugeTlb => panic!("no free hugepage was left"),
    }
    // Rounded up to 2 MiB and 2 MiB aligned, so that THP can back it.
    assert_eq!((buf.len(), buf.mapped_len()), (3 << 20, 4 << 20));
    assert_eq!(buf.vaddr() % (2 << 20), 0);
    assert_eq!(kernel_page_kib(buf.vaddr()), 4);
    assert!(buf.iter().all(|&b| b == 0));
    buf[(3 << 20) - 1] = 0xa5;
    assert_eq!(buf[(3 << 20) - 1], 0xa5);
    if let Some(phys) = translated(buf.phys()) {
        check_against_kernel(&buf, 0, &phys, buf.len());
    }
}

#[test]
fn never_means_base_pages_without_advice() {
    let buf = DmaBuffer::with_huge_pages(2 << 20, HugePages::Never).unwrap();
    assert!(matches!(
        buf.backing(),
        Backing::BasePages {
            hugetlb_error: None,
            thp_advised: false
        }
    ));
    assert!(!buf.backing().is_huge());
    assert_eq!(kernel_page_kib(buf.vaddr()), 4);
}

#[test]
fn lengths_windows_and_errors() {
    assert_eq!(Backing::HugeTlb.page_size(), 2 << 20);
    let base = Backing::BasePages {
        hugetlb_error: None,
        thp_advised: false,
    };
    assert_eq!(base.page_size(), 4096);

    let e = DmaBuffer::new(0).unwrap_err();
    assert_eq!(
        (e.kind(), e.to_string()),
        ("empty", "a DMA buffer of 0 bytes".into())
    );
    let e = DmaBuffer::with_huge_pages(usize::MAX, HugePages::Never).unwrap_err();
    assert_eq!(e.kind(), "too_large");
    assert_eq!(
        e.to_string(),
        format!(
            "a DMA buffer of {:#x} bytes is larger than the address space allows",
            usize::MAX
        )
    );

    let buf = DmaBuffer::with_huge_pages(100, HugePages::Never).unwrap();
    assert!(!buf.is_empty());
    assert_eq!(
        (buf.len(), buf.mapped_len(), buf.len()),
        (100, 4096, buf.as_ref().len())
    );
    // The window must stay inside the 100 bytes asked for, not the 4 KiB mapped.
    let e = buf.phys_window(50, 51).unwrap_err();
    assert_eq!(e.kind(), "address_overflow");
    assert_eq!(
        buf.phys_window(usize::MAX, 2).unwrap_err().kind(),
        "address_overflow"
    );
    if let Some(phys) = translated(buf.phys_window(50, 50)) {
        check_against_kernel(&buf, 50, &phys, 50);
    }
}

/// Dropping a buffer unmaps it: its hugetlbfs page goes back to the pool.
#[test]
fn dropping_a_buffer_returns_its_hugepage() {
    let _pool = pool();
    let free = meminfo("HugePages_Free:");
    let buf = match DmaBuffer::with_huge_pages(2 << 20, HugePages::Require) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("SKIPPED (no free hugepage: {e})");
            return;
        }
    };
    assert_eq!(meminfo("HugePages_Free:"), free - 1);
    drop(buf);
    assert_eq!(meminfo("HugePages_Free:"), free);
}

/// Every page of a new buffer is its own resident frame (not the shared zero page),
/// and its `Debug` names the mapping and the backing.
#[test]
fn every_page_is_a_private_frame() {
    let buf = DmaBuffer::with_huge_pages(8 << 12, HugePages::Never).unwrap();
    let dbg = format!("{buf:?}");
    assert!(
        dbg.starts_with(&format!(
            "DmaBuffer {{ vaddr: {:#x}, len: 0x8000, mapped_len: 0x8000, backing: ",
            buf.vaddr()
        )),
        "{dbg}"
    );
    let Some(phys) = translated(buf.phys()) else {
        return;
    };
    let mut frames: Vec<u64> = Vec::new();
    for r in phys.iter() {
        let mut a = r.addr().as_u64();
        while a < r.addr().as_u64() + r.len() {
            frames.push(a >> 12);
            a += 4096;
        }
    }
    let n = frames.len();
    frames.sort_unstable();
    frames.dedup();
    assert_eq!((n, frames.len()), (8, 8), "{phys:?}");
}
