//! pagemap: a buffer of this process translates to the PFNs the kernel reports.
#![cfg(target_os = "linux")]

use physvec::map::pagemap::{self, PagemapError};
use physvec::RangeView;

fn kernel_pfn(vaddr: u64) -> u64 {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open("/proc/self/pagemap").unwrap();
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, (vaddr / 4096) * 8).unwrap();
    u64::from_le_bytes(b) & ((1 << 55) - 1)
}

/// Whether this process has CAP_SYS_ADMIN (bit 21 of `CapEff`), without which the
/// kernel hides PFNs: only then may a test skip.
fn has_cap_sys_admin() -> bool {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let cap = s.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap();
    u64::from_str_radix(cap.trim(), 16).unwrap() & (1 << 21) != 0
}

#[test]
fn buffer_pages_translate_to_the_kernels_pfns() {
    let pages = 16;
    let mut buf = vec![0u8; pages * 4096 + 100];
    for (i, b) in buf.iter_mut().enumerate().step_by(512) {
        *b = i as u8 | 1; // make every page resident and private
    }
    let start = 100; // an unaligned window
    let window = &buf[start..start + pages * 4096 - 200];
    let phys = match pagemap::translate_buf(window) {
        Ok(p) => p,
        Err(e @ PagemapError::PfnHidden { .. }) if !has_cap_sys_admin() => {
            println!("skipped: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    assert_eq!(phys.total_len(), window.len() as u64);
    let view = RangeView::full(&phys).unwrap();
    let va = window.as_ptr() as u64;
    // Every byte of the window: check the first byte of each page and the last byte.
    let mut off = 0;
    while off < window.len() as u64 {
        let v = va + off;
        let want = kernel_pfn(v) * 4096 + (v & 4095);
        assert_eq!(view.addr_at(off).unwrap().as_u64(), want, "byte {off:#x}");
        off = ((va + off) & !4095) + 4096 - va; // the next page's first byte
    }
    let last = window.len() as u64 - 1;
    assert_eq!(
        view.addr_at(last).unwrap().as_u64(),
        kernel_pfn(va + last) * 4096 + ((va + last) & 4095)
    );
    // Ranges are maximal: no two neighbours are contiguous.
    for w in phys.windows(2) {
        assert!(!w[0].is_contiguous_with(w[1]));
    }
}

#[test]
fn bad_input_is_an_error() {
    assert_eq!(pagemap::translate(0x1000, 0).unwrap_err().kind(), "empty");
    assert_eq!(
        pagemap::translate(u64::MAX, 2).unwrap_err().kind(),
        "address_overflow"
    );
    // An address no process maps is not present.
    let e = pagemap::translate(0x10, 1).unwrap_err();
    assert_eq!(e.kind(), "page_not_present");
}

/// Errors name the page (not the byte) that failed, and read as text.
#[test]
fn errors_name_the_page() {
    // Below `mmap_min_addr` (64 KiB): never mapped.
    match pagemap::translate(0x5010, 0x2000) {
        Err(PagemapError::NotPresent { vaddr }) => assert_eq!(vaddr, 0x5000),
        other => panic!("{other:?}"),
    }
    let texts = [
        (PagemapError::Empty, "empty buffer".to_string()),
        (
            PagemapError::AddressOverflow {
                vaddr: 0x10,
                len: 0x20,
            },
            "virtual range 0x10+0x20 passes 2^64".into(),
        ),
        (
            PagemapError::NotPresent { vaddr: 0x5000 },
            "virtual page 0x5000 is not resident (touch and lock the buffer first)".into(),
        ),
        (
            PagemapError::Swapped { vaddr: 0x6000 },
            "virtual page 0x6000 is swapped out".into(),
        ),
    ];
    for (e, want) in texts {
        assert_eq!(e.to_string(), want);
    }
    let hidden = PagemapError::PfnHidden { vaddr: 0x7000 }.to_string();
    assert!(
        hidden.contains("0x7000") && hidden.contains("CAP_SYS_ADMIN"),
        "{hidden}"
    );
    let io = PagemapError::Io {
        vaddr: 0x8000,
        source: std::io::Error::other("boom"),
    };
    assert_eq!(
        io.to_string(),
        "cannot read /proc/self/pagemap for 0x8000: boom"
    );
    assert!(std::error::Error::source(&io).is_some());
}

/// `prefault` makes every page a buffer touches resident, from an unaligned start to a
/// last page of a few bytes, without changing a byte.
#[test]
fn prefault_makes_every_page_resident() {
    use rustix::mm::{madvise, mmap_anonymous, munmap, Advice, MapFlags, ProtFlags};
    let len = 8 * 4096;
    // SAFETY: a fresh private mapping chosen by the kernel replaces nothing.
    let p = unsafe {
        mmap_anonymous(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE,
        )
    }
    .unwrap();
    // SAFETY: `[p, p + len)` is the mapping just made. No transparent hugepage, so that
    // one touch faults in one 4 KiB page only.
    unsafe { madvise(p, len, Advice::LinuxNoHugepage) }.unwrap();
    // SAFETY: `len` bytes of zero-filled memory owned by this test until the munmap.
    let all = unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len) };
    // Starts 100 bytes into page 1, ends 10 bytes into page 6.
    let buf = &mut all[4096 + 100..6 * 4096 + 10];
    let (va, n) = (buf.as_ptr() as u64, buf.len() as u64);
    assert_eq!(
        pagemap::pfns(va, n).unwrap_err().kind(),
        "page_not_present",
        "untouched pages are not resident"
    );
    pagemap::prefault(buf);
    let pfns = pagemap::pfns(va, n).expect("every page resident");
    assert_eq!(pfns.len(), 6);
    assert!(buf.iter().all(|&b| b == 0));
    // Pages outside the buffer stay untouched.
    assert!(pagemap::pfns(p as u64, 4096).is_err());
    assert!(pagemap::pfns(p as u64 + 7 * 4096, 4096).is_err());
    // SAFETY: the mapping made above; no reference into it is used after this.
    unsafe { munmap(p, len) }.unwrap();
}
