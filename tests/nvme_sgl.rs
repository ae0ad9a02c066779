//! Property tests of the SGL encoder and decoder (`physvec::nvme`).

use physvec::mem::SparseMemory;
use physvec::nvme::{
    decode_sgl, encode_sgl, sgl_descriptors, sgl_segment_pages_needed, DecodeOptions,
    SglCapabilities, SglDescriptor, SglDescriptorType, SglError, SglItem, SglOptions,
    SglSegmentPage,
};
use physvec::{DmaAddr, DmaRange};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn coalesce(items: &[SglItem]) -> Vec<SglItem> {
    let mut out: Vec<SglItem> = Vec::new();
    for &i in items {
        match out.last().and_then(|l| l.merge(i)) {
            Some(m) => *out.last_mut().unwrap() = m,
            None => out.push(i),
        }
    }
    out
}

const SEG_BASE: u64 = 0xE000_0000_0000;

struct Encoded {
    dptr: SglDescriptor,
    pages: Vec<Vec<SglDescriptor>>,
    used: usize,
    memory: SparseMemory,
}

fn encode(
    items: &[SglItem],
    opts: SglOptions,
    slots: usize,
    pages: usize,
) -> Result<Encoded, SglError> {
    let mut bufs: Vec<Vec<SglDescriptor>> = (0..pages)
        .map(|_| vec![SglDescriptor::default(); slots])
        .collect();
    let pool = bufs
        .iter_mut()
        .enumerate()
        .map(|(i, b)| SglSegmentPage::new(DmaAddr::new(SEG_BASE + i as u64 * 0x10000), b));
    let sgl = encode_sgl(items.iter().copied(), opts, pool)?;
    let mut memory = SparseMemory::new();
    for (i, b) in bufs.iter().enumerate().take(sgl.segments_used()) {
        memory.add(
            physvec::DmaAddr::new(SEG_BASE + i as u64 * 0x10000),
            bytemuck::cast_slice(b).to_vec(),
        );
    }
    Ok(Encoded {
        dptr: sgl.dptr,
        pages: bufs,
        used: sgl.segments_used(),
        memory,
    })
}

/// Descriptor counts of each segment, following the chain from DPTR.
fn segment_counts(e: &Encoded) -> Vec<usize> {
    let mut counts = Vec::new();
    let mut p = e.dptr;
    for page in e.pages.iter().take(e.used) {
        let n = p.length() as usize / 16;
        counts.push(n);
        p = page[n - 1];
    }
    counts
}

fn item() -> impl Strategy<Value = SglItem> {
    prop_oneof![
        8 => (0u64..1 << 40, 1u64..0x10000).prop_map(|(a, l)| SglItem::Data(DmaRange::new(a, l))),
        1 => (1u64..0x1000).prop_map(SglItem::BitBucket),
    ]
}

fn decode(
    e: &Encoded,
    len: u64,
    opts: &DecodeOptions,
) -> Result<Vec<SglItem>, physvec::nvme::DecodeError> {
    let mut out = Vec::new();
    decode_sgl(e.dptr, len, &e.memory, &mut out, opts).map(|_| out)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/nvme_sgl.txt"))),
        ..ProptestConfig::default()
    })]

    /// encode → decode round-trips across several chained segment pages, with and without
    /// keys and the QEMU workaround; page use is minimal without the workaround, and the
    /// workaround never leaves a Last-Segment-ending segment as long as its predecessor.
    #[test]
    fn chained_roundtrip(
        items in prop::collection::vec(item(), 1..40),
        slots in 2usize..9,
        key in prop::option::of(any::<u32>()),
        workaround in any::<bool>(),
    ) {
        let opts = SglOptions::default().with_key(key).with_qemu_chain_workaround(workaround);
        let d = sgl_descriptors(items.iter().copied(), &opts).unwrap();
        let mut needed = sgl_segment_pages_needed(d, slots as u64) as usize;
        if d == 1 && matches!(coalesce(&items)[..], [SglItem::BitBucket(_)]) {
            needed = 1; // a lone bit bucket is not put in DPTR
        }
        let e = encode(&items, opts, slots, needed * 2 + 2).unwrap();
        if !workaround {
            prop_assert_eq!(e.used, needed);
            if needed > 0 {
                let short = encode(&items, opts, slots, needed - 1);
                let too_few = matches!(short, Err(SglError::TooFewSegmentPages { .. }));
                prop_assert!(too_few);
            }
        }
        // The chain shape of the tool's contract.
        if e.used == 0 {
            prop_assert!(!e.dptr.descriptor_type().is_segment());
        } else {
            let counts = segment_counts(&e);
            let mut p = e.dptr;
            for (i, &n) in counts.iter().enumerate() {
                let final_page = i + 1 == counts.len();
                let want = if final_page { SglDescriptorType::LastSegment } else { SglDescriptorType::Segment };
                prop_assert_eq!(p.descriptor_type(), want);
                p = e.pages[i][n - 1];
                if workaround && i >= 1 && !final_page && counts[i + 1..].len() == 1 {
                    prop_assert_ne!(n, counts[i - 1]);
                }
            }
        }
        for (i, page) in e.pages.iter().enumerate().take(e.used) {
            for d in &page[..segment_counts(&e)[i]] {
                if key.is_some() && !d.descriptor_type().is_segment() && d.descriptor_type() != SglDescriptorType::BitBucket {
                    prop_assert_eq!(d.descriptor_type(), SglDescriptorType::KeyedDataBlock);
                    prop_assert_eq!(Some(d.key()), key);
                }
            }
        }
        let total: u64 = items.iter().map(|i| i.len()).sum();
        prop_assert_eq!(decode(&e, total, &DecodeOptions::default()).unwrap(), coalesce(&items));
    }

    /// Malformed chains get the right status.
    #[test]
    fn malformed_statuses(
        items in prop::collection::vec((0u64..1 << 40, 1u64..0x10000).prop_map(|(a, l)| SglItem::Data(DmaRange::new(a * 2 + 1 , l))), 3..30),
        slots in 2usize..6,
        victim in any::<prop::sample::Index>(),
    ) {
        let opts = SglOptions::default();
        let e = encode(&items, opts, slots, 64).unwrap();
        prop_assume!(e.used > 0);
        let total: u64 = items.iter().map(|i| i.len()).sum();
        let o = DecodeOptions::default();
        // Too short / too long.
        prop_assert_eq!(decode(&e, total + 1, &o).unwrap_err().nvme_status().raw(), 0x0f);
        if coalesce(&items).len() > 1 {
            let last_len = coalesce(&items).last().unwrap().len();
            prop_assert_eq!(decode(&e, total - last_len, &o).unwrap_err().nvme_status().raw(), 0x0f);
        }
        // SGL1 length not a multiple of 16 / zero.
        let bad = SglDescriptor::from_bytes({ let mut b = e.dptr.to_bytes(); b[8] |= 8; b });
        prop_assert_eq!(decode(&Encoded { dptr: bad, ..clone(&e) }, total, &o).unwrap_err().nvme_status().raw(), 0x0d);
        // A data descriptor of the first segment retyped: Segment (not last) → 0Eh,
        // reserved type → 11h, at its address.
        let n0 = segment_counts(&e)[0];
        if n0 >= 2 {
            let i = victim.index(n0 - 1);
            let at = SEG_BASE + 16 * i as u64;
            for (ident, status) in [(0x20u8, 0x0e), (0x70, 0x11)] {
                let mut e2 = clone(&e);
                let mut b = e2.pages[0][i].to_bytes();
                b[15] = ident;
                e2.pages[0][i] = SglDescriptor::from_bytes(b);
                e2.memory.add(physvec::DmaAddr::new(SEG_BASE), bytemuck::cast_slice(&e2.pages[0]).to_vec());
                let err = decode(&e2, total, &o).unwrap_err();
                prop_assert_eq!((err.nvme_status().raw(), err.at()), (status, Some(physvec::DmaAddr::new(at))));
            }
        }
        // The first segment's link pointed back at itself → loop (or, for a final page,
        // a segment descriptor inside the last segment → 0Dh).
        let mut e2 = clone(&e);
        let n0 = segment_counts(&e)[0];
        e2.pages[0][n0 - 1] = e.dptr;
        e2.memory.add(physvec::DmaAddr::new(SEG_BASE), bytemuck::cast_slice(&e2.pages[0]).to_vec());
        let err = decode(&e2, u64::MAX, &o).unwrap_err();
        prop_assert_eq!(err.nvme_status().raw(), 0x0d);
        // Unreadable segment → 04h.
        let e3 = Encoded { memory: SparseMemory::new(), ..clone(&e) };
        prop_assert_eq!(decode(&e3, total, &o).unwrap_err().kind(), "memory_unreadable");
    }
}

fn clone(e: &Encoded) -> Encoded {
    Encoded {
        dptr: e.dptr,
        pages: e.pages.clone(),
        used: e.used,
        memory: e.memory.clone(),
    }
}

#[test]
fn long_ranges_split() {
    let items = [SglItem::Data(DmaRange::new(0x1_0000_0000, 5 << 30))];
    let e = encode(&items, SglOptions::default(), 16, 1).unwrap();
    assert_eq!(segment_counts(&e), [2]);
    assert_eq!(e.pages[0][0].length(), 0xffff_f000);
    assert_eq!(
        decode(&e, 5 << 30, &DecodeOptions::default()).unwrap(),
        items
    );
    // Keyed: 40 MiB → 16 MiB - 4 KiB, 16 MiB - 4 KiB, rest.
    let items = [SglItem::Data(DmaRange::new(0x1000, 40 << 20))];
    let e = encode(&items, SglOptions::default().with_key(Some(7)), 16, 1).unwrap();
    assert_eq!(segment_counts(&e), [3]);
    assert_eq!(e.pages[0][0].keyed_length(), 0xff_f000);
    assert_eq!(
        decode(&e, 40 << 20, &DecodeOptions::default()).unwrap(),
        items
    );
    // Exactly 16 MiB - 1 is one keyed descriptor in DPTR.
    let items = [SglItem::Data(DmaRange::new(0x1000, 0xff_ffff))];
    let e = encode(&items, SglOptions::default().with_key(Some(7)), 16, 0).unwrap();
    assert_eq!(e.dptr.descriptor_type(), SglDescriptorType::KeyedDataBlock);
}

#[test]
fn capabilities_are_honoured() {
    let odd = [SglItem::Data(DmaRange::new(0x1001, 0x10))];
    let dword = SglOptions::new(SglCapabilities::from_raw(2));
    assert_eq!(
        encode(&odd, dword, 4, 1).err(),
        Some(SglError::NotDwordAligned { index: 0 })
    );
    assert_eq!(
        encode(&odd, SglOptions::new(SglCapabilities::NONE), 4, 1).err(),
        Some(SglError::NotSupported)
    );
    let keyed = SglOptions::new(SglCapabilities::from_raw(1)).with_key(Some(1));
    assert_eq!(
        encode(&odd, keyed, 4, 1).err(),
        Some(SglError::KeyedNotSupported)
    );
    // Decoder side: a dword-granularity controller rejects the odd block with 1Dh.
    let e = encode(&odd, SglOptions::default(), 4, 1).unwrap();
    let o = DecodeOptions::default().with_sgls(SglCapabilities::from_raw(2));
    assert_eq!(decode(&e, 0x10, &o).unwrap_err().nvme_status().raw(), 0x1d);
}

/// The pattern of QEMU's defect (notes §7) decodes fine here, and the encoder's
/// workaround avoids it.
#[test]
fn qemu_defect_pattern() {
    let items: Vec<SglItem> = (0..5u64)
        .map(|i| SglItem::Data(DmaRange::new(0x10000 * (i + 1) + 1, 0x100)))
        .collect();
    let e = encode(&items, SglOptions::default(), 2, 8).unwrap();
    assert_eq!(segment_counts(&e), [2, 2, 2, 2]);
    assert!(decode(&e, 0x500, &DecodeOptions::default().with_qemu_compat(true)).is_ok());
    let w = encode(
        &items,
        SglOptions::default().with_qemu_chain_workaround(true),
        2,
        8,
    )
    .unwrap();
    let c = segment_counts(&w);
    assert!(
        c.windows(2)
            .enumerate()
            .all(|(i, p)| i + 3 != c.len() || p[0] != p[1]),
        "{c:?}"
    );
    assert_eq!(decode(&w, 0x500, &DecodeOptions::default()).unwrap(), items);
}

/// `decode_command` dispatches on PSDT: 00b decodes PRPs, 01b and 10b decode SGL1, 11b
/// is Invalid Field (02h); each gives what the dedicated decoder gives.
#[test]
fn decode_command_follows_psdt() {
    use physvec::nvme::{
        decode_command, decode_prp, DataPointer, DecodeError, MemoryPageSize, Psdt,
        SubmissionQueueEntry,
    };
    let mps = MemoryPageSize::SIZE_4K;
    let o = DecodeOptions::default();
    let mut m = SparseMemory::new();
    let seg = [
        SglDescriptor::data_block(DmaAddr::new(0x30_0000), 0x200),
        SglDescriptor::bit_bucket(0x100),
        SglDescriptor::data_block(DmaAddr::new(0x50_0000), 0x300),
    ];
    m.add(
        physvec::DmaAddr::new(0x8_0000),
        bytemuck::cast_slice(&seg).to_vec(),
    );
    let sgl1 = SglDescriptor::last_segment(DmaAddr::new(0x8_0000), 48);
    let mut want_sgl: Vec<SglItem> = Vec::new();
    decode_sgl(sgl1, 0x600, &m, &mut want_sgl, &o).unwrap();
    assert_eq!(want_sgl.len(), 3);
    let mut want_prp: Vec<DmaRange> = Vec::new();
    decode_prp(
        physvec::DmaAddr::new(0x10_0800),
        physvec::DmaAddr::new(0x20_0000),
        0x1000,
        mps,
        &m,
        &mut want_prp,
        &o,
    )
    .unwrap();
    let want_prp: Vec<SglItem> = want_prp.into_iter().map(SglItem::Data).collect();

    let mut sqe = SubmissionQueueEntry::new(0x02);
    sqe.set_data_pointer(DataPointer::Prp {
        prp1: physvec::DmaAddr::new(0x10_0800),
        prp2: physvec::DmaAddr::new(0x20_0000),
    });
    let mut out: Vec<SglItem> = Vec::new();
    decode_command(&sqe, 0x1000, mps, &m, &mut out, &o).unwrap();
    assert_eq!(out, want_prp);
    for psdt in [Psdt::from_bits(1), Psdt::from_bits(2)] {
        sqe.set_dptr(sgl1.to_bytes());
        sqe.set_psdt(psdt);
        let mut out: Vec<SglItem> = Vec::new();
        let sum = decode_command(&sqe, 0x600, mps, &m, &mut out, &o).unwrap();
        assert_eq!(
            (out, sum.descriptors_read, sum.segments),
            (want_sgl.clone(), 3, 1)
        );
    }
    sqe.set_psdt(Psdt::from_bits(3));
    let mut out: Vec<SglItem> = Vec::new();
    let e = decode_command(&sqe, 0x600, mps, &m, &mut out, &o).unwrap_err();
    assert_eq!((e, e.nvme_status().raw()), (DecodeError::InvalidPsdt, 0x02));
    assert!(out.is_empty());
}

/// A segment may end exactly at the top of the address space; one byte more wraps and
/// is an Invalid SGL Segment Descriptor (0Dh).
#[test]
fn segment_at_the_top_of_the_address_space() {
    use physvec::nvme::DecodeError;
    let top = u64::MAX - 15;
    let mut m = SparseMemory::new();
    let db = SglDescriptor::data_block(DmaAddr::new(0x10_0000), 0x200);
    m.add(physvec::DmaAddr::new(top), db.to_bytes().to_vec());
    let o = DecodeOptions::default();
    let mut out: Vec<SglItem> = Vec::new();
    let sgl1 = SglDescriptor::last_segment(DmaAddr::new(top), 16);
    decode_sgl(sgl1, 0x200, &m, &mut out, &o).unwrap();
    assert_eq!(out, [SglItem::Data(DmaRange::new(0x10_0000, 0x200))]);
    let wraps = SglDescriptor::last_segment(DmaAddr::new(top), 32);
    let e = decode_sgl(wraps, 0x200, &m, &mut out, &o).unwrap_err();
    assert_eq!(e, DecodeError::InvalidSegmentDescriptor { at: None });
}

/// With `qemu_compat`, a segment must end in a Data Block or a segment descriptor, as
/// QEMU checks before reading the rest (0Dh at the last descriptor); strict mode lets a
/// segment reached through a Segment descriptor end in a Bit Bucket.
#[test]
fn qemu_compat_checks_how_a_segment_ends() {
    use physvec::nvme::DecodeError;
    let seg = [
        SglDescriptor::data_block(DmaAddr::new(0x10_0000), 0x200),
        SglDescriptor::bit_bucket(0x100),
    ];
    let mut m = SparseMemory::new();
    m.add(
        physvec::DmaAddr::new(0x8_0000),
        bytemuck::cast_slice(&seg).to_vec(),
    );
    let sgl1 = SglDescriptor::segment(DmaAddr::new(0x8_0000), 32);
    let strict = DecodeOptions::default();
    let mut out: Vec<SglItem> = Vec::new();
    decode_sgl(sgl1, 0x300, &m, &mut out, &strict).unwrap();
    assert_eq!(out.len(), 2);
    let compat = strict.with_qemu_compat(true);
    let mut out: Vec<SglItem> = Vec::new();
    let e = decode_sgl(sgl1, 0x300, &m, &mut out, &compat).unwrap_err();
    assert_eq!(
        e,
        DecodeError::InvalidSegmentDescriptor {
            at: Some(physvec::DmaAddr::new(0x8_0010))
        }
    );
}

/// A decode that fails after it emitted items leaves every kind of item sink exactly as
/// it found it, whatever it held before: a device model reuses its output buffer across
/// commands and must not see half of a rejected command's transfer.
#[test]
fn failed_decode_rolls_every_sink_back() {
    use physvec::nvme::{DataOnly, DecodeError, SglItemSink};
    // A segment whose Data Block and Bit Bucket are emitted before the next segment
    // turns out to be unreadable.
    let seg = [
        SglDescriptor::data_block(DmaAddr::new(0x10_0000), 0x200),
        SglDescriptor::bit_bucket(0x80),
        SglDescriptor::last_segment(DmaAddr::new(0x9_0000), 16),
    ];
    let mut m = SparseMemory::new();
    m.add(DmaAddr::new(0x8_0000), bytemuck::cast_slice(&seg).to_vec());
    let sgl1 = SglDescriptor::segment(DmaAddr::new(0x8_0000), 48);
    let o = DecodeOptions::default();
    let refused = DecodeError::MemoryUnreadable {
        addr: DmaAddr::new(0x9_0000),
        len: 16,
    };
    // The data range really is emitted before the read fails: a sink with no room
    // refuses it first.
    let mut none: arrayvec::ArrayVec<SglItem, 0> = arrayvec::ArrayVec::new();
    assert_eq!(
        decode_sgl(sgl1, 0x400, &m, &mut none, &o),
        Err(DecodeError::OutputFull)
    );
    let before = [
        SglItem::Data(DmaRange::new(0x1000, 0x10)),
        SglItem::BitBucket(0x20),
    ];
    for held in 0..=before.len() {
        let held = &before[..held];
        let mut v: Vec<SglItem> = held.to_vec();
        assert_eq!(decode_sgl(sgl1, 0x400, &m, &mut v, &o), Err(refused));
        assert_eq!(v, held, "Vec holding {held:?}");
        let mut a: arrayvec::ArrayVec<SglItem, 8> = held.iter().copied().collect();
        assert_eq!(decode_sgl(sgl1, 0x400, &m, &mut a, &o), Err(refused));
        assert_eq!(a.as_slice(), held, "ArrayVec holding {held:?}");
    }
    // Data ranges only: the ranges and the discarded count come back.
    let mut ranges: Vec<DmaRange> = vec![DmaRange::new(0x1000, 0x10)];
    let mut d = DataOnly::new(&mut ranges);
    d.push_item(SglItem::BitBucket(0x40)).unwrap();
    assert_eq!(decode_sgl(sgl1, 0x400, &m, &mut d, &o), Err(refused));
    assert_eq!(d.discarded(), 0x40);
    assert_eq!(d.last_item(), Some(SglItem::BitBucket(0x40)));
    assert_eq!(ranges, [DmaRange::new(0x1000, 0x10)]);
}

/// The error text names what could not be read, in the right number, and the status.
#[test]
fn unreadable_memory_message_counts_bytes() {
    use physvec::nvme::DecodeError;
    let one = DecodeError::MemoryUnreadable {
        addr: DmaAddr::new(0x1000),
        len: 1,
    };
    let many = DecodeError::MemoryUnreadable {
        addr: DmaAddr::new(0x1000),
        len: 16,
    };
    assert_eq!(
        one.to_string(),
        "cannot read 1 byte at 0x1000: Data Transfer Error (SCT 0h, SC 04h)"
    );
    assert_eq!(
        many.to_string(),
        "cannot read 16 bytes at 0x1000: Data Transfer Error (SCT 0h, SC 04h)"
    );
}

/// The descriptor fields a controller reads, byte by byte (NVMe base spec, "SGL
/// Descriptor"): the type nibble round trip, the subtype nibble, the data length of
/// keyed and plain blocks, the text form, and the SGLS capability bits.
#[test]
fn descriptor_and_capability_fields_follow_the_spec() {
    for n in 0u8..16 {
        let t = SglDescriptorType::from_nibble(n);
        assert_eq!(t.nibble(), n, "{t:?}");
        assert_eq!(SglDescriptorType::from_nibble(n | 0xf0), t);
    }
    assert_eq!(SglDescriptorType::Reserved(0x16).nibble(), 6);

    let d = SglDescriptor::data_block(DmaAddr::new(0x1122_3344_5566_7788), 0x99aa_bbcc);
    assert_eq!(
        d.to_bytes(),
        [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0xcc, 0xbb, 0xaa, 0x99, 0, 0, 0, 0x00]
    );
    assert_eq!(d.data_length(), 0x99aa_bbcc);
    // The subtype is the low nibble of byte 15; the type nibble is kept.
    let s = SglDescriptor::segment(DmaAddr::new(0x2000), 0x30).with_subtype(0xa1);
    assert_eq!((s.identifier(), s.subtype()), (0x21, 1));
    assert_eq!(s.with_subtype(0).identifier(), 0x20);
    // Keyed: 24-bit length in bytes 8-10, key in 11-14; `length()` would read a key byte.
    let k = SglDescriptor::keyed_data_block(DmaAddr::new(0x3000), 0x12_3456, 0xdead_beef)
        .expect("24-bit length");
    assert_eq!(k.data_length(), 0x12_3456);
    assert_ne!(u64::from(k.length()), k.data_length());
    assert_eq!(
        SglDescriptor::bit_bucket(0x200).to_string(),
        "Bit Bucket len=0x200",
        "a bit bucket has no address"
    );

    assert_eq!(SglCapabilities::from_raw(0x000d_0005).raw(), 0x000d_0005);
    assert!(SglCapabilities::from_raw(1 << 19).metadata_sgl());
    assert!(!SglCapabilities::from_raw(!(1 << 19)).metadata_sgl());
    let c = SglCapabilities::NONE.with_bit(19, true).with_bit(2, true);
    assert_eq!(c.raw(), 1 << 19 | 1 << 2);
    assert_eq!(c.with_bit(19, false).raw(), 1 << 2);
    assert_eq!(c.with_bit(32, true), c, "bits past 31 do not exist");
    assert!(!SglItem::BitBucket(1).is_empty());
    assert!(SglItem::BitBucket(0).is_empty());
}

/// A Keyed Data Block prints its 24-bit length and its key, in both forms.
#[test]
fn keyed_descriptors_print_length_and_key() {
    let k =
        physvec::nvme::SglDescriptor::keyed_data_block(physvec::DmaAddr::new(0x2000), 0x1000, 0xab)
            .unwrap();
    assert_eq!(
        k.to_string(),
        "Keyed Data Block addr=0x2000 len=0x1000 key=0xab"
    );
    assert_eq!(format!("{k:?}"), "KeyedDataBlock(0x2000+0x1000, key 0xab)");
    let b = physvec::nvme::SglDescriptor::bit_bucket(0x200);
    assert_eq!(format!("{b:?}"), "BitBucket(0x200)");
    // SGLS bit by bit (Identify Controller bytes 539:536).
    use physvec::nvme::SglCapabilities;
    for (bit, name) in [
        (2, "keyed"),
        (16, "bit bucket"),
        (18, "excess length"),
        (19, "metadata SGL"),
    ] {
        let c = SglCapabilities::from_raw(1 | 1 << bit);
        let got = [
            c.keyed(),
            c.bit_bucket(),
            c.excess_length(),
            c.metadata_sgl(),
        ];
        let want = [bit == 2, bit == 16, bit == 18, bit == 19];
        assert_eq!(got, want, "{name}");
    }
    assert!(!SglCapabilities::ALL_TYPES.excess_length());
    // Setting a bit that is already set keeps it; clearing twice keeps it clear.
    let k = SglCapabilities::ALL_TYPES.with_bit(2, true);
    assert!(k.keyed());
    assert_eq!(k.raw(), SglCapabilities::ALL_TYPES.raw());
    let n = k.with_bit(2, false).with_bit(2, false);
    assert_eq!(n.raw(), SglCapabilities::ALL_TYPES.raw() & !(1 << 2));
    assert_eq!(k.with_bit(32, true).raw(), k.raw());
}

/// Every SGL encoder error: its kind, the index it points at and its text.
#[test]
fn sgl_errors_say_what_and_where() {
    use physvec::nvme::SglError;
    let cases = [
        (SglError::Empty, "empty", None, "no segments to encode"),
        (
            SglError::EmptyBitBucket { index: 1 },
            "empty_bit_bucket",
            Some(1),
            "bit bucket 1 has length 0",
        ),
        (
            SglError::NotSupported,
            "sgl_not_supported",
            None,
            "the controller does not support SGLs",
        ),
        (
            SglError::KeyedNotSupported,
            "keyed_not_supported",
            None,
            "the controller does not support Keyed SGL Data Blocks",
        ),
        (
            SglError::BitBucketNotSupported { index: 2 },
            "bit_bucket_not_supported",
            Some(2),
            "segment 2 is a bit bucket, which the controller does not support",
        ),
        (
            SglError::NotDwordAligned { index: 3 },
            "not_dword_aligned",
            Some(3),
            "segment 3: the controller requires dword-aligned addresses and lengths",
        ),
        (
            SglError::TooFewSegmentPages {
                needed: 1,
                supplied: 0,
            },
            "too_few_segment_pages",
            None,
            "the SGL needs 1 segment page, only 0 were supplied",
        ),
        (
            SglError::SegmentPageTooSmall { index: 4, slots: 1 },
            "segment_page_too_small",
            Some(4),
            "segment page 4 holds 1 descriptors, too few to link onward",
        ),
        (
            SglError::SegmentPageMisaligned {
                index: 5,
                bus: 0x1004,
            },
            "segment_page_misaligned",
            Some(5),
            "segment page 5 at 0x1004 is not qword aligned",
        ),
        (
            SglError::StreamLength {
                declared: 3,
                streamed: 2,
            },
            "stream_length",
            None,
            "the SGL writer was created for 3 data descriptors but 2 were produced",
        ),
    ];
    for (e, kind, index, text) in cases {
        assert_eq!(
            (e.kind(), e.index(), e.to_string().as_str()),
            (kind, index, text)
        );
    }
}
