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
        Err(e @ PagemapError::PfnHidden { .. }) => {
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
