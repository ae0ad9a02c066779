//! vm-memory integration: decoding from a rust-vmm `GuestMemoryMmap` gives the same
//! ranges and the same statuses as decoding from the crate's own `SparseMemory`, for
//! random PRP and SGL layouts, and guest RAM that ends early is a Data Transfer Error.
#![cfg(feature = "vm-memory")]

use physvec::mem::{MemoryReader, MemoryWriter, SparseMemory};
use physvec::nvme::{
    decode_prp, decode_sgl, encode_prp, encode_sgl, DecodeOptions, MemoryPageSize, NvmeStatus,
    PrpListPage, SglDescriptor, SglOptions, SglSegmentPage,
};
use physvec::vm_memory::GuestMem;
use physvec::{DmaAddr, DmaRange};
use proptest::prelude::*;
use vm_memory::{GuestAddress, GuestMemoryMmap};

const LIST: u64 = 0x8_0000;

/// 1 MiB of guest RAM at 0 holding `bytes` at `LIST`, and the same as SparseMemory.
fn both(bytes: &[u8], ram_len: usize) -> (GuestMemoryMmap<()>, SparseMemory) {
    let ram = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), ram_len)]).unwrap();
    let mut m = GuestMem::new(&ram);
    let keep = bytes.len().min(ram_len.saturating_sub(LIST as usize));
    m.write(DmaAddr::new(LIST), &bytes[..keep]).unwrap();
    let mut sparse = SparseMemory::new();
    sparse.add_zeroed(DmaAddr::new(0), ram_len);
    sparse.write(DmaAddr::new(LIST), &bytes[..keep]).unwrap();
    (ram, sparse)
}

fn layout() -> impl Strategy<Value = Vec<DmaRange>> {
    prop::collection::vec((0u64..64, 1u64..4), 1..12).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (page, n))| {
                DmaRange::new(
                    (0x10_0000 + i as u64 * 0x10_0000) + page * 0x1000,
                    n * 0x1000,
                )
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn prp_decodes_the_same(ranges in layout(), cut in prop::option::of(0usize..0x1000)) {
        let mps = MemoryPageSize::SIZE_4K;
        let mut list = [0u64; 512];
        let prp = encode_prp(&ranges, mps, [PrpListPage::new(DmaAddr::new(LIST), &mut list)]).unwrap();
        let len: u64 = ranges.iter().map(|r| r.len()).sum();
        // Optionally end guest RAM inside the list: both memories must fail alike.
        let ram_len = cut.map_or(1 << 20, |c| LIST as usize + (c & !7));
        let (ram, sparse) = both(bytemuck::cast_slice(&list), ram_len);
        let opts = DecodeOptions::default();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let ra = decode_prp(prp.prp1, prp.prp2, len, mps, &GuestMem::new(&ram), &mut a, &opts);
        let rb = decode_prp(prp.prp1, prp.prp2, len, mps, &sparse, &mut b, &opts);
        prop_assert_eq!(ra.is_ok(), rb.is_ok());
        match (ra, rb) {
            (Ok(_), Ok(_)) => prop_assert_eq!(a, b),
            (Err(x), Err(y)) => {
                prop_assert_eq!(x.nvme_status(), y.nvme_status());
                prop_assert_eq!(x.nvme_status(), NvmeStatus::DATA_TRANSFER_ERROR);
                prop_assert_eq!(x.at(), y.at());
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn sgl_decodes_the_same(ranges in layout()) {
        let mut seg = [SglDescriptor::default(); 256];
        let sgl = encode_sgl(&ranges, SglOptions::default(), [SglSegmentPage::new(DmaAddr::new(LIST), &mut seg)]).unwrap();
        let len: u64 = ranges.iter().map(|r| r.len()).sum();
        let (ram, sparse) = both(bytemuck::cast_slice(&seg), 1 << 20);
        let opts = DecodeOptions::default();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        decode_sgl(sgl.dptr, len, &GuestMem::new(&ram), &mut a, &opts).unwrap();
        decode_sgl(sgl.dptr, len, &sparse, &mut b, &opts).unwrap();
        prop_assert_eq!(a, b);
    }
}

#[test]
fn reads_outside_guest_ram_fail_without_panicking() {
    let ram = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0x1000), 0x1000)]).unwrap();
    let m = GuestMem::new(&ram);
    let mut b = [0u8; 16];
    for a in [0, 0xff8, 0x1ff8, 0x2000, u64::MAX - 7, u64::MAX] {
        assert!(m.read(DmaAddr::new(a), &mut b).is_err(), "{a:#x}");
    }
    assert!(m.read(DmaAddr::new(0x1ff0), &mut b).is_ok());
}

/// `Debug` names the adapter and prints no guest memory (which may be large).
#[test]
fn debug_prints_the_adapter_not_the_memory() {
    let ram = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
    assert_eq!(format!("{:?}", GuestMem::new(&ram)), "GuestMem { .. }");
}
