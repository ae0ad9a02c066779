//! NVMe commands by name and completion entries: every constructor puts its fields where
//! the specification says, LBA ranges round-trip through the command, completion fields
//! stay apart, `Display`/`Debug` are one line; and the encoders take slices, `DmaVec`s
//! and `RangeView`s as they are.

use physvec::nvme::{
    self, opcode, CommandError, CompletionQueueEntry, CompletionStatus, DataPointer, LbaRange,
    MemoryPageSize, NamespaceId, NvmeStatus, PrpListPage, SglDescriptor, SglItem, SglOptions,
    SglSegmentPage, SubmissionQueueEntry,
};
use physvec::{DmaAddr, DmaRange, DmaVec, RangeView};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Read/Write carry SLBA in CDW10-11 and NLB (0's based) in CDW12 15:0, read back as
    /// the same range; bad ranges are errors, never panics.
    #[test]
    fn lba_ranges_round_trip(slba in any::<u64>(), blocks in 0u32..70_000, nsid in any::<u32>(), write in any::<bool>()) {
        let ns = NamespaceId::try_new(nsid);
        prop_assert_eq!(ns.is_ok(), nsid != 0 && nsid != u32::MAX);
        let lbas = LbaRange::try_new(slba, blocks);
        let fits = (1..=65536).contains(&blocks) && slba.checked_add(u64::from(blocks) - 1).is_some();
        prop_assert_eq!(lbas.is_ok(), fits);
        if let (Ok(ns), Ok(lbas)) = (ns, lbas) {
            let sqe = if write { SubmissionQueueEntry::write(ns, lbas) } else { SubmissionQueueEntry::read(ns, lbas) };
            prop_assert_eq!(sqe.opcode(), if write { opcode::io::WRITE } else { opcode::io::READ });
            prop_assert_eq!(sqe.nsid(), nsid);
            prop_assert_eq!(u64::from(sqe.cdw10()) | u64::from(sqe.cdw11()) << 32, slba);
            prop_assert_eq!(sqe.cdw12(), blocks - 1);
            prop_assert_eq!(sqe.lba_range(), Some(lbas));
            let shown = sqe.to_string();
            prop_assert!(!shown.contains('\n'));
            let dbg = format!("{:?}", sqe);
            prop_assert!(!dbg.contains('\n'));
        }
    }

    /// Byte offsets and lengths convert to blocks exactly or are rejected with the reason.
    #[test]
    fn lba_range_from_bytes(offset in any::<u64>(), len in 0u64..(1 << 26), shift in 8u32..14) {
        let bs = 1u32 << shift;
        match LbaRange::from_bytes(offset, len, bs) {
            Ok(r) => {
                prop_assert_eq!(r.slba(), offset / u64::from(bs));
                prop_assert_eq!(r.byte_len(bs), len);
            }
            Err(CommandError::InvalidBlockSize { .. }) => prop_assert!(bs < 512),
            Err(CommandError::NotBlockMultiple { bytes, .. }) => prop_assert!(bytes % u64::from(bs) != 0),
            Err(CommandError::ZeroBlocks) => prop_assert_eq!(len, 0),
            Err(CommandError::TooManyBlocks { blocks }) => prop_assert!(blocks > 65536),
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }

    /// Completion fields never bleed into each other, and any 16 bytes parse.
    #[test]
    fn completion_entries(bytes in any::<[u8; 16]>(), cid in any::<u16>(), sqid in any::<u16>(), sqhd in any::<u16>(), raw in any::<u16>(), p in any::<bool>()) {
        let c = CompletionQueueEntry::from_bytes(bytes);
        prop_assert_eq!(c.as_bytes(), &bytes);
        prop_assert!(!c.to_string().contains('\n'));
        let status = CompletionStatus::from_raw(raw);
        let c = CompletionQueueEntry::new(cid, sqid, sqhd, status, p);
        prop_assert_eq!((c.cid(), c.sq_id(), c.sq_head(), c.phase()), (cid, sqid, sqhd, p));
        prop_assert_eq!(c.status().raw(), raw & 0x7fff);
        prop_assert_eq!(c.status(), NvmeStatus::new(status.sct(), status.sc()));
        let dw3 = u32::from_le_bytes(c.as_bytes()[12..16].try_into().unwrap());
        prop_assert_eq!(dw3 >> 17, u32::from(raw & 0x7fff));
        prop_assert_eq!(c.status().dnr(), dw3 >> 31 == 1);
        prop_assert_eq!(c.status().more(), (dw3 >> 30) & 1 == 1);
    }
}

#[test]
fn admin_commands_by_name() {
    let id = SubmissionQueueEntry::identify_controller();
    assert_eq!(
        (id.opcode(), id.nsid(), id.cdw10()),
        (opcode::admin::IDENTIFY, 0, 1)
    );
    let cq =
        SubmissionQueueEntry::create_io_cq(3, 1024, DmaAddr::new(0x1_0000_0000), None).unwrap();
    assert_eq!((cq.cdw10(), cq.cdw11()), (1023 << 16 | 3, 1));
    assert_eq!(
        cq.data_pointer(),
        Some(DataPointer::Prp {
            prp1: physvec::DmaAddr::new(0x1_0000_0000),
            prp2: physvec::DmaAddr::ZERO
        })
    );
    let sq = SubmissionQueueEntry::create_io_sq(3, 65536, DmaAddr::new(0x2000), 3).unwrap();
    assert_eq!(sq.cdw10(), 0xffff << 16 | 3);
    let q = SubmissionQueueEntry::set_features_number_of_queues(65535, 1).unwrap();
    assert_eq!(q.cdw11(), 0xfffe);
    for (e, kind) in [
        (
            SubmissionQueueEntry::create_io_cq(0, 16, DmaAddr::new(0), None).unwrap_err(),
            "invalid_queue_id",
        ),
        (
            SubmissionQueueEntry::create_io_cq(1, 1, DmaAddr::new(0), None).unwrap_err(),
            "invalid_queue_size",
        ),
        (
            SubmissionQueueEntry::create_io_cq(1, 65537, DmaAddr::new(0), None).unwrap_err(),
            "invalid_queue_size",
        ),
        (
            SubmissionQueueEntry::create_io_sq(1, 16, DmaAddr::new(0x800), 1).unwrap_err(),
            "queue_not_page_aligned",
        ),
        (
            SubmissionQueueEntry::create_io_sq(1, 16, DmaAddr::new(0x1000), 0).unwrap_err(),
            "invalid_queue_id",
        ),
        (
            SubmissionQueueEntry::set_features_number_of_queues(0, 1).unwrap_err(),
            "invalid_queue_count",
        ),
        (
            SubmissionQueueEntry::set_features_number_of_queues(1, 65536).unwrap_err(),
            "invalid_queue_count",
        ),
    ] {
        assert_eq!(e.kind(), kind, "{e}");
    }
}

#[test]
fn displays_name_the_fields() {
    let sgl =
        SubmissionQueueEntry::read(NamespaceId::new(2), LbaRange::new(1, 1)).with_data_pointer(
            DataPointer::Sgl(SglDescriptor::last_segment(DmaAddr::new(0x9000), 48)),
        );
    assert_eq!(
        sgl.to_string(),
        "opcode=0x02 flags=0x40 cid=0x0000 nsid=0x2 mptr=0x0 sgl1=(Last Segment addr=0x9000 len=0x30) \
         cdw10=0x00000001 cdw11=0x00000000 cdw12=0x00000000 cdw13=0x00000000 cdw14=0x00000000 cdw15=0x00000000"
    );
    assert!(format!("{sgl:?}").starts_with("SubmissionQueueEntry { opcode=0x02 "));
    let sg = physvec::sg::Scatterlist::page_entry(0x1000, 0x10, 0x20, false);
    assert_eq!(
        sg.to_string(),
        "page_link=0x1000 (page=0x1000) offset=0x10 length=0x20 dma_address=0x0 dma_length=0x0 dma_flags=0x0"
    );
}

/// The call sites a driver writes: no `.iter().copied()`, no `.map(SglItem::Data)`.
#[test]
fn encoders_take_slices_vecs_and_views() {
    let mps = MemoryPageSize::SIZE_4K;
    let ranges = [
        DmaRange::new(0x10_0800, 0x800),
        DmaRange::new(0x20_0000, 0x2000),
    ];
    let v: Vec<DmaRange> = ranges.to_vec();
    let mut dv = DmaVec::new();
    for r in ranges {
        dv.push(r);
    }
    let view = RangeView::full(&ranges).unwrap();
    let mut want = None;
    let mut lists = [[0u64; 512]; 5];
    let [l0, l1, l2, l3, l4] = &mut lists;
    for (input, list) in [
        (
            nvme::encode_prp(
                &ranges[..],
                mps,
                [PrpListPage::new(DmaAddr::new(0x8000), l0)],
            ),
            0,
        ),
        (
            nvme::encode_prp(&v, mps, [PrpListPage::new(DmaAddr::new(0x8000), l1)]),
            1,
        ),
        (
            nvme::encode_prp(&dv, mps, [PrpListPage::new(DmaAddr::new(0x8000), l2)]),
            2,
        ),
        (
            nvme::encode_prp(view, mps, [PrpListPage::new(DmaAddr::new(0x8000), l3)]),
            3,
        ),
        (
            nvme::encode_prp(ranges, mps, [PrpListPage::new(DmaAddr::new(0x8000), l4)]),
            4,
        ),
    ] {
        let prp = input.unwrap();
        let got = (prp.prp1, prp.prp2);
        assert_eq!(*want.get_or_insert(got), got, "input {list}");
    }
    assert!(lists.iter().all(|l| l[..2] == lists[0][..2]));
    assert!(nvme::is_prp_compatible(&v, mps));
    assert_eq!(nvme::prp_entries(view, mps), Ok(3));

    let mut segs = [[SglDescriptor::default(); 4]; 4];
    let [s0, s1, s2, s3] = &mut segs;
    let page = |d| [SglSegmentPage::new(DmaAddr::new(0x9000), d)];
    let a = nvme::encode_sgl(&ranges[..], SglOptions::default(), page(s0)).unwrap();
    let b = nvme::encode_sgl(&dv, SglOptions::default(), page(s1)).unwrap();
    let c = nvme::encode_sgl(view, SglOptions::default(), page(s2)).unwrap();
    // Bit buckets still go in as SglItems, by value or by reference.
    let mixed = [
        SglItem::Data(ranges[0]),
        SglItem::BitBucket(0x200),
        SglItem::Data(ranges[1]),
    ];
    let opts = SglOptions::new(physvec::nvme::SglCapabilities::from_raw(1 | 1 << 16));
    let d = nvme::encode_sgl(mixed.iter(), opts, page(s3)).unwrap();
    assert_eq!((a.dptr, b.dptr, c.dptr), (a.dptr, a.dptr, a.dptr));
    assert_eq!(segs[0], segs[1]);
    assert_eq!(segs[0], segs[2]);
    assert_eq!(d.data_descriptors(), 3);
    assert_eq!(nvme::sgl_descriptors(&v, &SglOptions::default()), Ok(2));
}

/// Status fields bit by bit (NVMe base spec, "Completion Queue Entry" and "Status Field
/// Definition"): SCT/SC, DNR/More/CRD, their DW3 position, the names this crate knows,
/// and the comparisons between a status and a completion status.
#[test]
fn status_fields_sit_where_the_spec_puts_them() {
    let s = NvmeStatus::new(2, 0x81);
    assert_eq!((s.sct(), s.sc(), s.raw()), (2, 0x81, 0x281));
    assert_eq!(format!("{s:?}"), "NvmeStatus(SCT 2h, SC 81h)");
    assert!(NvmeStatus::SUCCESS.is_success() && !s.is_success());
    assert_eq!(s.cqe_dw3_status(false), 0x281 << 17);
    assert_eq!(s.cqe_dw3_status(true), 0x281 << 17 | 1 << 31);
    for (sc, name) in [
        (0x06, "Internal Error"),
        (0x10, "Metadata SGL Length Invalid"),
        (0x1d, "SGL Data Block Granularity Invalid"),
    ] {
        assert_eq!(NvmeStatus::new(0, sc).known_name(), Some(name));
    }

    let c = CompletionStatus::new(NvmeStatus::INVALID_FIELD);
    assert_eq!(c.with_dnr(true).raw(), 0x0002 | 1 << 14);
    assert_eq!(c.with_more(true).raw(), 0x0002 | 1 << 13);
    assert_eq!(c.with_crd(3).raw(), 0x0002 | 3 << 11);
    assert_eq!(c.with_crd(0xff).with_crd(1).raw(), 0x0002 | 1 << 11);
    let all = c.with_dnr(true).with_more(true).with_crd(2);
    assert_eq!(all.with_dnr(false).with_more(false).with_crd(0), c);
    assert_eq!(NvmeStatus::INVALID_FIELD, all);
    assert_eq!(all, NvmeStatus::INVALID_FIELD);
    assert_ne!(NvmeStatus::SUCCESS, all);
    assert_ne!(all, NvmeStatus::SUCCESS);
}

/// Completion entries: DW1 and the one-line text form.
#[test]
fn completion_entry_dw1_and_text() {
    let mut b = [0u8; 16];
    b[4..8].copy_from_slice(&0xdead_beefu32.to_le_bytes());
    let e = CompletionQueueEntry::from_bytes(b);
    assert_eq!(e.dw1(), 0xdead_beef);
    assert_eq!(
        e.to_string(),
        "cid=0x0000 sqid=0x0 sqhd=0x0 p=0 status=0x0 (Successful Completion) dw0=0x0 dw1=0xdeadbeef"
    );
}

/// The metadata pointer is bytes 16-23 of the command, little-endian.
#[test]
fn metadata_pointer_round_trips() {
    let mut sqe = SubmissionQueueEntry::new(opcode::io::READ);
    sqe.set_mptr(0x1122_3344_5566_7788);
    assert_eq!(sqe.mptr(), 0x1122_3344_5566_7788);
    assert_eq!(
        sqe.as_bytes()[16..24],
        0x1122_3344_5566_7788u64.to_le_bytes()
    );
    sqe.set_fuse(0xff);
    assert_eq!(sqe.fuse(), 3);
}

/// Byte offsets and lengths to LBA ranges: whole blocks only, the block count checked
/// before it is narrowed to 32 bits.
#[test]
fn lba_ranges_from_bytes() {
    let r = LbaRange::from_bytes(4096, 1024, 512).unwrap();
    assert_eq!(
        (r.slba(), r.blocks(), r.nlb(), r.byte_len(512)),
        (8, 2, 1, 1024)
    );
    assert_eq!(r.byte_len(4096), 8192);
    let huge = ((1u64 << 32) + 1) * 512;
    assert_eq!(
        LbaRange::from_bytes(0, huge, 512),
        Err(CommandError::TooManyBlocks {
            blocks: (1 << 32) + 1
        })
    );
    assert_eq!(
        LbaRange::from_bytes(0, 65_537 * 512, 512),
        Err(CommandError::TooManyBlocks { blocks: 65_537 })
    );
    assert_eq!(
        LbaRange::from_bytes(100, 512, 512),
        Err(CommandError::NotBlockMultiple {
            bytes: 100,
            block_size: 512
        })
    );
    assert_eq!(
        CommandError::ZeroBlocks.to_string(),
        "a transfer of 0 logical blocks"
    );
}

/// PRP or SGL (the Linux driver's rule): SGL when usable and either the layout is not
/// PRP-compatible or the average segment reaches the threshold; never SGL on the admin
/// queue.
#[test]
fn data_pointer_choice_follows_the_policy() {
    use physvec::nvme::{
        choose_data_pointer, DataPointerChoice, DataPointerPolicy, SglCapabilities,
    };
    let p = DataPointerPolicy::new(SglCapabilities::from_raw(1), MemoryPageSize::SIZE_4K);
    let admin = DataPointerPolicy {
        admin_queue: true,
        ..p
    };
    let small = [DmaRange::new(0x1000, 0x1000), DmaRange::new(0x5000, 0x1000)];
    let big = [DmaRange::new(0x10_0000, 0x1_0000)];
    let odd = [DmaRange::new(0x1000, 0x10), DmaRange::new(0x5000, 0x10)];
    assert_eq!(choose_data_pointer(&small, &p), DataPointerChoice::Prp);
    assert_eq!(choose_data_pointer(&big, &p), DataPointerChoice::Sgl);
    assert_eq!(choose_data_pointer(&odd, &p), DataPointerChoice::Sgl);
    assert_eq!(choose_data_pointer(&big, &admin), DataPointerChoice::Prp);
    assert_eq!(choose_data_pointer(&odd, &admin), DataPointerChoice::Bounce);
    let no_sgl = DataPointerPolicy::new(SglCapabilities::NONE, MemoryPageSize::SIZE_4K);
    assert_eq!(choose_data_pointer(&big, &no_sgl), DataPointerChoice::Prp);
}

/// The submission queue entry's common fields sit at the byte offsets of the NVMe base
/// specification (Figure "Common Command Format"), each field apart from its neighbours.
#[test]
fn sqe_fields_sit_at_their_byte_offsets() {
    let mut s = SubmissionQueueEntry::new(0x81);
    s.set_fuse(0b10);
    s.set_psdt(nvme::Psdt::SglMetadataDescriptor);
    s.set_cid(0xbeef);
    s.set_nsid(0x1234_5678);
    s.set_mptr(0x1122_3344_5566_7788);
    let dptr: [u8; 16] = core::array::from_fn(|i| 0xa0 + i as u8);
    s.set_dptr(dptr);
    for (k, set) in [
        SubmissionQueueEntry::set_cdw10 as fn(&mut SubmissionQueueEntry, u32),
        SubmissionQueueEntry::set_cdw11,
        SubmissionQueueEntry::set_cdw12,
        SubmissionQueueEntry::set_cdw13,
        SubmissionQueueEntry::set_cdw14,
        SubmissionQueueEntry::set_cdw15,
    ]
    .into_iter()
    .enumerate()
    {
        set(&mut s, 0xc0de_0000 + k as u32);
    }
    let b = s.as_bytes();
    assert_eq!(b[0], 0x81);
    assert_eq!(b[1], 0b1000_0010, "PSDT in bits 7:6, FUSE in bits 1:0");
    assert_eq!(&b[2..4], &[0xef, 0xbe]);
    assert_eq!(&b[4..8], &[0x78, 0x56, 0x34, 0x12]);
    assert_eq!(&b[8..16], &[0; 8], "CDW2-3 untouched");
    assert_eq!(&b[16..24], &0x1122_3344_5566_7788u64.to_le_bytes());
    assert_eq!(&b[24..40], &dptr);
    for k in 0..6 {
        let o = 40 + 4 * k;
        assert_eq!(&b[o..o + 4], &(0xc0de_0000 + k as u32).to_le_bytes());
    }
    // Reading back through the accessors and from the raw bytes.
    let r = SubmissionQueueEntry::from_bytes(*b);
    assert_eq!(r, s);
    assert_eq!(
        (r.opcode(), r.fuse(), r.psdt(), r.cid(), r.nsid()),
        (
            0x81,
            2,
            nvme::Psdt::SglMetadataDescriptor,
            0xbeef,
            0x1234_5678
        )
    );
    assert_eq!((r.mptr(), r.dptr()), (0x1122_3344_5566_7788, dptr));
    assert_eq!(
        [
            r.cdw10(),
            r.cdw11(),
            r.cdw12(),
            r.cdw13(),
            r.cdw14(),
            r.cdw15()
        ],
        core::array::from_fn(|k| 0xc0de_0000 + k as u32)
    );
    assert_eq!(r.dword(0), 0xbeef_8281);
    assert_eq!(r.dword(1), 0x1234_5678);
    assert_eq!(r.dword(15), 0xc0de_0005);
    // Indices are masked to 0..16: dword 17 is dword 1.
    assert_eq!(r.dword(17), r.dword(1));
    let mut w = r;
    w.set_dword(16 + 2, 0xdead_beef);
    assert_eq!(w.dword(2), 0xdead_beef);
    assert_eq!(&w.as_bytes()[8..12], &0xdead_beefu32.to_le_bytes());
    w.set_opcode(0x02);
    assert_eq!(w.as_bytes()[0], 0x02);
    assert_eq!(
        w.as_bytes()[1],
        0b1000_0010,
        "the opcode leaves FUSE/PSDT alone"
    );
    // Changing FUSE keeps PSDT and the other way round.
    w.set_fuse(0b01);
    assert_eq!(w.psdt(), nvme::Psdt::SglMetadataDescriptor);
    w.set_psdt(nvme::Psdt::Prp);
    assert_eq!((w.fuse(), w.as_bytes()[1]), (1, 1));
}

#[test]
fn psdt_values_and_named_admin_commands() {
    use nvme::Psdt;
    for (bits, p, sgl) in [
        (0, Psdt::Prp, false),
        (1, Psdt::SglContiguousMetadata, true),
        (2, Psdt::SglMetadataDescriptor, true),
        (3, Psdt::Reserved, false),
    ] {
        assert_eq!(Psdt::from_bits(bits), p);
        assert_eq!(Psdt::from_bits(bits | 0xfc), p, "only bits 1:0 count");
        assert_eq!(p.bits(), bits);
        assert_eq!(p.is_sgl(), sgl, "{p:?}");
    }
    let ns = SubmissionQueueEntry::identify_namespace(NamespaceId::new(7)).with_cid(9);
    assert_eq!(
        (ns.opcode(), ns.nsid(), ns.cdw10(), ns.cid()),
        (opcode::admin::IDENTIFY, 7, 0, 9)
    );
    assert_eq!(opcode::admin::name(0x06), Some("Identify"));
    assert_eq!(opcode::admin::name(0x7f), None);
    assert_eq!(opcode::io::name(0x01), Some("Write"));
    assert_eq!(opcode::io::name(0x02), Some("Read"));
    assert_eq!(opcode::io::name(0x7f), None);
}

/// Success is SCT 0 and SC 0 whatever DNR, More and CRD say; the entry answers for its
/// status; its `Debug` is the one-line form.
#[test]
fn success_ignores_the_retry_bits() {
    let ok = CompletionStatus::SUCCESS;
    assert!(ok.is_success());
    assert!(ok.with_dnr(true).with_more(true).with_crd(3).is_success());
    assert!(!CompletionStatus::new(NvmeStatus::INVALID_FIELD).is_success());
    assert!(!CompletionStatus::new(NvmeStatus::new(1, 0)).is_success());
    let good = CompletionQueueEntry::new(5, 1, 2, ok, true);
    let bad = CompletionQueueEntry::new(
        5,
        1,
        2,
        CompletionStatus::new(NvmeStatus::INVALID_FIELD),
        true,
    );
    assert!(good.is_success());
    assert!(!bad.is_success());
    assert_eq!(
        format!("{good:?}"),
        format!("CompletionQueueEntry {{ {good} }}")
    );
    assert!(format!("{good:?}").contains("cid=0x0005"));
}

/// The edges of namespace identifiers, LBA ranges and block sizes: 0 and FFFFFFFFh are
/// not namespaces; 65,536 blocks is the most one command moves; the last block may be
/// LBA 2^64 - 1; a block size is a power of two of at least 512 bytes.
#[test]
fn namespace_and_lba_edges() {
    for bad in [0, u32::MAX] {
        assert_eq!(
            NamespaceId::try_new(bad),
            Err(CommandError::InvalidNamespaceId { nsid: bad })
        );
    }
    for good in [1, 0xffff_fffe] {
        assert_eq!(NamespaceId::try_new(good).map(NamespaceId::get), Ok(good));
    }
    assert_eq!(NamespaceId::new(0x2a).to_string(), "0x2a");
    assert_eq!(LbaRange::try_new(0, 65_536).map(|r| r.nlb()), Ok(0xffff));
    assert_eq!(
        LbaRange::try_new(0, 65_537),
        Err(CommandError::TooManyBlocks { blocks: 65_537 })
    );
    assert_eq!(LbaRange::try_new(5, 0), Err(CommandError::ZeroBlocks));
    assert_eq!(
        LbaRange::try_new(u64::MAX, 1).map(|r| r.slba()),
        Ok(u64::MAX)
    );
    assert_eq!(
        LbaRange::try_new(u64::MAX - 7, 8).map(|r| r.blocks()),
        Ok(8)
    );
    assert_eq!(
        LbaRange::try_new(u64::MAX - 6, 8),
        Err(CommandError::LbaOverflow {
            slba: u64::MAX - 6,
            blocks: 8
        })
    );
    assert_eq!(
        LbaRange::try_new(u64::MAX, 2),
        Err(CommandError::LbaOverflow {
            slba: u64::MAX,
            blocks: 2
        })
    );
    for bad in [0, 256, 511, 513, 768, 4095] {
        assert_eq!(
            LbaRange::from_bytes(0, 4096, bad),
            Err(CommandError::InvalidBlockSize { block_size: bad })
        );
    }
    assert_eq!(
        LbaRange::from_bytes(0, 65_536 * 512, 512).map(|r| r.nlb()),
        Ok(0xffff)
    );
    assert_eq!(
        LbaRange::try_new(0x10, 8).unwrap().to_string(),
        "slba=0x10 nlb=0x7"
    );
    let f = SubmissionQueueEntry::flush(NamespaceId::new(3));
    assert_eq!((f.opcode(), f.nsid()), (opcode::io::FLUSH, 3));
    let all = SubmissionQueueEntry::flush(NamespaceId::BROADCAST);
    assert_eq!(all.nsid(), 0xffff_ffff);
    for good in [512, 4096, 1 << 16] {
        assert_eq!(
            LbaRange::from_bytes(0, 1 << 16, good).map(|r| r.byte_len(good)),
            Ok(1 << 16)
        );
    }
}

/// Every generic status code the module names, by the specification's name.
#[test]
fn generic_status_names() {
    for (sc, name) in [
        (0x00, "Successful Completion"),
        (0x02, "Invalid Field in Command"),
        (0x04, "Data Transfer Error"),
        (0x06, "Internal Error"),
        (0x0d, "Invalid SGL Segment Descriptor"),
        (0x0e, "Invalid Number of SGL Descriptors"),
        (0x0f, "Data SGL Length Invalid"),
        (0x10, "Metadata SGL Length Invalid"),
        (0x11, "SGL Descriptor Type Invalid"),
        (0x12, "Invalid Use of Controller Memory Buffer"),
        (0x13, "PRP Offset Invalid"),
        (0x1d, "SGL Data Block Granularity Invalid"),
    ] {
        let s = NvmeStatus::new(0, sc);
        assert_eq!((s.known_name(), s.name()), (Some(name), name));
        // The same code in another status code type is not a generic status.
        assert_eq!(NvmeStatus::new(1, sc).known_name(), None);
    }
    assert_eq!(NvmeStatus::new(0, 0x80).name(), "status");
}

/// The queue-creation and queue-count commands put every CDW11 field where the
/// specification says: IV 31:16, IEN bit 1, PC bit 0 (Create I/O CQ); CQID 31:16, PC
/// (Create I/O SQ); NCQR 31:16, NSQR 15:0, both 0's based (Number of Queues).
#[test]
fn queue_commands_fill_cdw11() {
    let cq = SubmissionQueueEntry::create_io_cq(2, 64, DmaAddr::new(0x4000), Some(5)).unwrap();
    assert_eq!(cq.cdw11(), 5 << 16 | 0b11);
    assert_eq!(cq.cdw10(), 63 << 16 | 2);
    let sq = SubmissionQueueEntry::create_io_sq(4, 32, DmaAddr::new(0x8000), 2).unwrap();
    assert_eq!(sq.cdw11(), 2 << 16 | 1);
    assert_eq!(sq.cdw10(), 31 << 16 | 4);
    assert_eq!(
        sq.data_pointer(),
        Some(DataPointer::Prp {
            prp1: DmaAddr::new(0x8000),
            prp2: DmaAddr::ZERO
        })
    );
    let q = SubmissionQueueEntry::set_features_number_of_queues(3, 7).unwrap();
    assert_eq!(q.cdw11(), 6 << 16 | 2);
    assert_eq!(q.opcode(), opcode::admin::SET_FEATURES);
}

/// Every opcode the module names, by the specification's name.
#[test]
fn opcode_names() {
    use opcode::{admin, io};
    for (op, name) in [
        (admin::DELETE_IO_SQ, "Delete I/O Submission Queue"),
        (admin::CREATE_IO_SQ, "Create I/O Submission Queue"),
        (admin::GET_LOG_PAGE, "Get Log Page"),
        (admin::DELETE_IO_CQ, "Delete I/O Completion Queue"),
        (admin::CREATE_IO_CQ, "Create I/O Completion Queue"),
        (admin::IDENTIFY, "Identify"),
        (admin::ABORT, "Abort"),
        (admin::SET_FEATURES, "Set Features"),
        (admin::GET_FEATURES, "Get Features"),
        (admin::ASYNC_EVENT_REQUEST, "Asynchronous Event Request"),
        (admin::NAMESPACE_MANAGEMENT, "Namespace Management"),
        (admin::FIRMWARE_COMMIT, "Firmware Commit"),
        (admin::FIRMWARE_IMAGE_DOWNLOAD, "Firmware Image Download"),
        (admin::NAMESPACE_ATTACHMENT, "Namespace Attachment"),
        (admin::KEEP_ALIVE, "Keep Alive"),
        (admin::FORMAT_NVM, "Format NVM"),
    ] {
        assert_eq!(admin::name(op), Some(name));
    }
    for (op, name) in [
        (io::FLUSH, "Flush"),
        (io::WRITE, "Write"),
        (io::READ, "Read"),
        (io::WRITE_UNCORRECTABLE, "Write Uncorrectable"),
        (io::COMPARE, "Compare"),
        (io::WRITE_ZEROES, "Write Zeroes"),
        (io::DATASET_MANAGEMENT, "Dataset Management"),
        (io::VERIFY, "Verify"),
    ] {
        assert_eq!(io::name(op), Some(name));
    }
    // The values themselves (NVMe base specification, Figure "Opcodes for Admin
    // Commands"; NVM Command Set specification, "Opcodes for NVM Commands").
    assert_eq!(
        [
            admin::DELETE_IO_SQ,
            admin::CREATE_IO_SQ,
            admin::GET_LOG_PAGE,
            admin::DELETE_IO_CQ,
            admin::CREATE_IO_CQ,
            admin::IDENTIFY,
            admin::ABORT,
            admin::SET_FEATURES,
            admin::GET_FEATURES,
            admin::ASYNC_EVENT_REQUEST
        ],
        [0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x08, 0x09, 0x0a, 0x0c]
    );
    assert_eq!(
        [
            io::FLUSH,
            io::WRITE,
            io::READ,
            io::WRITE_UNCORRECTABLE,
            io::COMPARE,
            io::WRITE_ZEROES,
            io::DATASET_MANAGEMENT,
            io::VERIFY
        ],
        [0x00, 0x01, 0x02, 0x04, 0x05, 0x08, 0x09, 0x0c]
    );
}
