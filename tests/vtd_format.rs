//! VT-d formats pinned to the specification (and to QEMU 7.2's `intel-iommu`, see
//! `shared/reference/vtd.md`): every field of the root, context and second-level
//! entries, the reserved-bit masks, the invalidation registers and queued descriptors,
//! the fault registers, the walker's entry addresses and checks, the IOTLB model's
//! eviction rules, and the mapper's bookkeeping. Expected values are written from the
//! spec's bit positions with distinct non-zero field values, so that a field moved,
//! masked or merged with another shows up.

use physvec::map::vtd::{
    self, reg, Access, DirtyPages, FaultReason, FaultRecord, Fsts, Invalidation, PageList,
    PageSource, VtdCaps, VtdConfig, VtdFormat, VtdIotlb, VtdMapper, VtdTables, WalkError, WalkStep,
};
use physvec::map::{Attrs, DataDirection, DmaMapper, IoPerm, MapError, PageTableFormat, Pte};
use physvec::mem::{MemoryReader, MemoryWriter, SparseMemory};
use physvec::{DmaRange, PageSize, Phys, PhysAddr, PhysRange};

type Mem = SparseMemory<Phys>;

fn put(m: &mut Mem, a: u64, v: u64) {
    m.write(PhysAddr::new(a), &v.to_le_bytes()).unwrap();
}

fn get<M: MemoryReader<Phys>>(m: &M, a: u64) -> u64 {
    m.read_u64_le(PhysAddr::new(a)).unwrap()
}

const RW: IoPerm = IoPerm::from_bits(3);

// ---------------------------------------------------------------------------------
// entry.rs
// ---------------------------------------------------------------------------------

#[test]
fn bit_constants_sit_where_the_spec_puts_them() {
    // Second-level entry: R 0, W 1, PS 7, SNP 11, TM 62; ignored 52..=61 and 63.
    assert_eq!(vtd::SL_R, 0b1);
    assert_eq!(vtd::SL_W, 0b10);
    assert_eq!(vtd::SL_PS, 0x80);
    assert_eq!(vtd::SL_SNP, 0x800);
    assert_eq!(vtd::SL_TM, 0x4000_0000_0000_0000);
    let ignored: u64 = (52..=61).chain([63]).map(|b| 1u64 << b).sum();
    assert_eq!(vtd::SL_IGNORED, ignored);
    // Root / context entry: P 0; context lo FPD 1; context hi reserved 7 and 63:24.
    assert_eq!(vtd::ENTRY_P, 1);
    assert_eq!(vtd::CTX_FPD, 2);
    let ctx_hi: u64 = (24..=63).chain([7]).map(|b| 1u64 << b).sum();
    assert_eq!(vtd::CTX_HI_RSVD, ctx_hi);
    assert_eq!(vtd::INTERRUPT_FIRST, 0xFEE0_0000);
    assert_eq!(vtd::INTERRUPT_LAST, 0xFEEF_FFFF);
}

#[test]
fn haw_mask_covers_exactly_the_address_width() {
    assert_eq!(vtd::haw_mask(39), 0x7f_ffff_ffff);
    assert_eq!(vtd::haw_mask(48), 0xffff_ffff_ffff);
    assert_eq!(vtd::haw_mask(12), 0xfff);
    assert_eq!(vtd::haw_mask(1), 1);
    assert_eq!(vtd::haw_mask(0), 0);
    assert_eq!(vtd::haw_mask(64), u64::MAX);
    assert_eq!(vtd::haw_mask(100), u64::MAX);
}

#[test]
fn root_entry_is_pointer_and_present_bit_with_zero_high_quadword() {
    assert_eq!(vtd::root_entry(0x1234_5000), [0x1234_5001, 0]);
    // Bits 11:0 of the pointer are not part of the address (11:1 are reserved).
    assert_eq!(vtd::root_entry(0xabc_d7ff), [0xabc_d001, 0]);
    assert_eq!(vtd::root_entry(0x7f_ffff_f000), [0x7f_ffff_f001, 0]);
}

#[test]
fn context_entry_fields_land_in_their_bits() {
    // lo: SLPTPTR 63:12 | TT 00 | FPD 0 | P; hi: DID 23:8 | AW 2:0.
    let [lo, hi] = vtd::context_entry(0x1234_5678, 2, 0xBEEF);
    assert_eq!(lo, 0x1234_5001);
    assert_eq!(hi, 0x00BE_EF02);
    let [lo, hi] = vtd::context_entry(0x00ff_ffff_f000, 1, 0x0105);
    assert_eq!(lo, 0x00ff_ffff_f001);
    assert_eq!(hi, 0x0001_0501);
    // The widest DID still stays clear of the reserved bits.
    let [lo, hi] = vtd::context_entry(0x3000, 2, 0xffff);
    assert_eq!(hi, 0x00ff_ff02);
    assert_eq!(hi & vtd::CTX_HI_RSVD, 0);
    assert_eq!(lo & vtd::ctx_lo_reserved(48), 0);
    assert_eq!((lo >> 2) & 3, 0, "translation type 00");
    assert_eq!(lo & vtd::CTX_FPD, 0);
}

#[test]
fn aw_field_encodes_3_and_4_level_widths() {
    assert_eq!(vtd::aw_field(39), Some(1));
    assert_eq!(vtd::aw_field(48), Some(2));
    assert_eq!(vtd::aw_field(57), None);
    assert_eq!(vtd::aw_field(0), None);
}

#[test]
fn root_and_context_reserved_masks() {
    // Root lo: 11:1 and every bit at or above the host address width.
    assert_eq!(vtd::root_lo_reserved(48), 0xffff_0000_0000_0ffe);
    assert_eq!(vtd::root_lo_reserved(39), 0xffff_ff80_0000_0ffe);
    // Context lo: 11:4 and the bits above the width (FPD, TT and P are fields).
    assert_eq!(vtd::ctx_lo_reserved(48), 0xffff_0000_0000_0ff0);
    assert_eq!(vtd::ctx_lo_reserved(39), 0xffff_ff80_0000_0ff0);
    // The masks are unions: a (hypothetical) width below 12 bits overlaps both parts.
    assert_eq!(vtd::root_lo_reserved(8), 0xffff_ffff_ffff_fffe);
    assert_eq!(vtd::ctx_lo_reserved(8), 0xffff_ffff_ffff_fff0);
}

#[test]
fn sl_reserved_masks_per_level_and_width() {
    // Above the width: 48..=51 (48-bit) or 39..=51 (39-bit), and TM (62, DT = 0).
    let hi48 = 0x400f_0000_0000_0000;
    let hi39 = 0x400f_ff80_0000_0000;
    let snp = 0x800;
    assert_eq!(vtd::sl_reserved(1, false, 48), hi48 | snp);
    assert_eq!(vtd::sl_reserved(1, false, 39), hi39 | snp);
    assert_eq!(
        vtd::sl_reserved(1, true, 48),
        hi48 | snp,
        "PS means nothing in a PTE"
    );
    assert_eq!(vtd::sl_reserved(2, false, 48), hi48 | snp);
    assert_eq!(vtd::sl_reserved(3, false, 48), hi48 | snp);
    // A 2 MiB leaf reserves address bits 20:12, a 1 GiB leaf 29:12.
    assert_eq!(vtd::sl_reserved(2, true, 48), hi48 | snp | 0x1f_f000);
    assert_eq!(vtd::sl_reserved(3, true, 48), hi48 | snp | 0x3fff_f000);
    assert_eq!(vtd::sl_reserved(3, true, 39), hi39 | snp | 0x3fff_f000);
    // PML4E: PS (7) is reserved too.
    assert_eq!(vtd::sl_reserved(4, false, 48), hi48 | snp | 0x80);
    assert_eq!(vtd::sl_reserved(4, true, 48), hi48 | snp | 0x80);
    // Ignored bits are never reserved, even with a width reaching into them (57-bit).
    assert_eq!(vtd::sl_reserved(1, false, 57), 0x4000_0000_0000_0000 | snp);
    // A union, not a difference: a (hypothetical) 24-bit width overlaps 29:12.
    assert_eq!(vtd::sl_reserved(3, true, 24), 0x400f_ffff_ffff_f800);
}

#[test]
fn sl_addr_is_bits_12_up_to_the_width() {
    let raw =
        (1u64 << 63) | (1 << 62) | (1 << 52) | (1 << 50) | (1 << 45) | (1 << 38) | 0x5000 | 0xfff;
    assert_eq!(vtd::sl_addr(raw, 48), (1 << 45) | (1 << 38) | 0x5000);
    assert_eq!(vtd::sl_addr(raw, 39), (1 << 38) | 0x5000);
    assert_eq!(vtd::sl_addr(0x1234_5003, 48), 0x1234_5000);
}

#[test]
fn sl_perm_reads_r_and_w_only() {
    assert_eq!(vtd::sl_perm(0), IoPerm::default());
    assert_eq!(vtd::sl_perm(1), IoPerm::READ);
    assert_eq!(vtd::sl_perm(2), IoPerm::WRITE);
    assert_eq!(vtd::sl_perm(3), RW);
    assert_eq!(vtd::sl_perm(0x4000_0000_0000_1001), IoPerm::READ);
    assert_eq!(vtd::sl_perm(0xffff_ffff_ffff_fffc), IoPerm::default());
    assert_eq!(vtd::sl_perm(0xffff_ffff_ffff_fffe), IoPerm::WRITE);
}

#[test]
fn sl_table_and_leaf_entries() {
    // Non-leaf: next table | R | W.
    assert_eq!(vtd::sl_table_entry(0x1234_5000), 0x1234_5003);
    assert_eq!(vtd::sl_table_entry(0x1234_5abc), 0x1234_5003);
    // Leaf: address | R? | W? | PS for 2 MiB / 1 GiB only.
    assert_eq!(
        vtd::sl_leaf_entry(0x4000_0000, IoPerm::READ, 1),
        0x4000_0001
    );
    assert_eq!(
        vtd::sl_leaf_entry(0x4000_0000, IoPerm::WRITE, 1),
        0x4000_0002
    );
    assert_eq!(vtd::sl_leaf_entry(0x4000_0000, RW, 1), 0x4000_0003);
    assert_eq!(vtd::sl_leaf_entry(0x4000_0fff, RW, 1), 0x4000_0003);
    assert_eq!(vtd::sl_leaf_entry(0x4000_0000, RW, 2), 0x4000_0083);
    assert_eq!(
        vtd::sl_leaf_entry(0x4000_0000, IoPerm::READ, 3),
        0x4000_0081
    );
    // No memory type in legacy mode: MMIO adds nothing.
    assert_eq!(
        vtd::sl_leaf_entry(0x9000, IoPerm::MMIO | IoPerm::WRITE, 1),
        0x9002
    );
}

#[test]
fn interrupt_window_overlap_edges() {
    use vtd::overlaps_interrupt_window as ov;
    assert!(ov(0xFEE0_0000, 1));
    assert!(ov(0xFEEF_FFFF, 1), "last byte of the window");
    assert!(ov(0xFEEF_F000, 0x1000));
    assert!(!ov(0xFEF0_0000, 1), "first byte after the window");
    assert!(!ov(0xFEF0_0000, 0x1000));
    assert!(!ov(0xFEDF_FFFF, 1), "last byte before the window");
    assert!(!ov(0xFEDF_F000, 0x1000));
    assert!(
        ov(0xFEDF_F000, 0x1001),
        "ends on the first byte of the window"
    );
    assert!(ov(0xC000_0000, 1 << 30), "a 1 GiB leaf covering it");
    assert!(ov(0, 1 << 32));
    assert!(!ov(0x1_0000_0000, 1 << 30));
    assert!(!ov(0x8000_0000, 1 << 30));
    assert!(ov(0xFEC0_0000, 0x40_0000));
    assert!(!ov(u64::MAX - 0xfff, 0x2000));
}

// ---------------------------------------------------------------------------------
// fault.rs
// ---------------------------------------------------------------------------------

fn snake(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn fault_reason_codes_names_and_display() {
    use FaultReason::*;
    let all = [
        (1, RootNotPresent),
        (2, ContextNotPresent),
        (3, ContextInvalid),
        (4, AddressBeyondAgaw),
        (5, WriteNotPermitted),
        (6, ReadNotPermitted),
        (7, PagingEntryInvalid),
        (8, RootTableInvalid),
        (9, ContextTableInvalid),
        (0xA, RootEntryReserved),
        (0xB, ContextEntryReserved),
        (0xC, PagingEntryReserved),
        (0xD, ContextEntryTt),
        (0xE, InterruptAddress),
    ];
    let mut texts = Vec::new();
    for (code, r) in all {
        assert_eq!(FaultReason::from_code(code), r);
        assert_eq!(r.code(), code);
        // The documented stable name is the variant's name in snake_case.
        assert_eq!(r.kind(), snake(&format!("{r:?}")));
        let t = r.to_string();
        assert!(!t.is_empty());
        texts.push(t);
    }
    texts.sort();
    texts.dedup();
    assert_eq!(texts.len(), all.len(), "every reason has its own text");
    for c in [0u8, 0xF, 0x42, 0xff] {
        assert_eq!(FaultReason::from_code(c), Other(c));
        assert_eq!(Other(c).code(), c);
        assert_eq!(Other(c).kind(), "vtd_fault");
    }
    // Faults found before the context entry is read cannot be FPD-qualified; the
    // permission and paging faults below it are.
    for r in [RootNotPresent, RootTableInvalid, RootEntryReserved] {
        assert!(!r.is_qualified(), "{r:?}");
    }
    for r in [
        AddressBeyondAgaw,
        WriteNotPermitted,
        ReadNotPermitted,
        PagingEntryInvalid,
        PagingEntryReserved,
    ] {
        assert!(r.is_qualified(), "{r:?}");
    }
    assert_eq!(Access::Read.as_str(), "read");
    assert_eq!(Access::Write.as_str(), "write");
}

#[test]
fn fsts_decodes_each_field_alone() {
    let none = Fsts {
        overflow: false,
        primary_pending: false,
        queue_error: false,
        fault_record_index: 0,
    };
    assert_eq!(Fsts::decode(0), none);
    assert_eq!(
        Fsts::decode(1),
        Fsts {
            overflow: true,
            ..none
        }
    );
    assert_eq!(
        Fsts::decode(2),
        Fsts {
            primary_pending: true,
            ..none
        }
    );
    assert_eq!(
        Fsts::decode(0x10),
        Fsts {
            queue_error: true,
            ..none
        }
    );
    assert_eq!(
        Fsts::decode(0xAB00),
        Fsts {
            fault_record_index: 0xAB,
            ..none
        }
    );
    // AFO 2, APF 3, ICE 5, ITE 6, bit 7 and bits 31:16 are not these fields.
    assert_eq!(Fsts::decode(0xffff_00ec), none);
    assert_eq!(
        Fsts::decode(0xffff_ffff),
        Fsts {
            overflow: true,
            primary_pending: true,
            queue_error: true,
            fault_record_index: 0xff,
        }
    );
}

#[test]
fn fault_record_decodes_every_field() {
    const F: u64 = 1 << 63;
    const T: u64 = 1 << 62;
    // Read fault, reason 6, SID 0a:07.5, with PASID/AT bits (40..=61), bits 31:16 and
    // the low 12 bits of FI set around the fields.
    let lo = 0x0000_6543_2100_0abc;
    let hi = F | T | (0x3f_ffff << 40) | (0x06 << 32) | (0xf00f << 16) | 0x0a3d;
    let r = FaultRecord::decode(lo, hi).unwrap();
    assert_eq!(r.reason, FaultReason::ReadNotPermitted);
    assert_eq!(r.source_id, 0x0a3d);
    assert_eq!(r.addr, 0x6543_2100_0000);
    assert_eq!(r.access, Access::Read);
    let text = r.to_string();
    assert!(text.contains("0a:07.5"), "{text}");
    assert!(text.contains("read"), "{text}");
    // Write fault (T = 0), reason 5, an even SID.
    let r = FaultRecord::decode(0x7000, F | (0x05 << 32) | 0x0a3c).unwrap();
    assert_eq!(
        (r.reason, r.source_id, r.addr, r.access),
        (
            FaultReason::WriteNotPermitted,
            0x0a3c,
            0x7000,
            Access::Write
        )
    );
    let r = FaultRecord::decode(0, F | (0xff << 40) | (0x0e << 32)).unwrap();
    assert_eq!(r.reason, FaultReason::InterruptAddress);
    // F clear: no fault, whatever else is set.
    assert_eq!(FaultRecord::decode(lo, !F), None);
    assert_eq!(FaultRecord::decode(lo, 0), None);
}

// ---------------------------------------------------------------------------------
// inval.rs
// ---------------------------------------------------------------------------------

#[test]
fn register_offsets_and_command_bits() {
    assert_eq!(
        [
            reg::VER,
            reg::CAP,
            reg::ECAP,
            reg::GCMD,
            reg::GSTS,
            reg::RTADDR,
            reg::CCMD,
            reg::FSTS,
            reg::FECTL,
            reg::IQH,
            reg::IQT,
            reg::IQA,
            reg::ICS
        ],
        [0, 0x08, 0x10, 0x18, 0x1C, 0x20, 0x28, 0x34, 0x38, 0x80, 0x88, 0x90, 0x9C]
    );
    assert_eq!(reg::GCMD_TE, 0x8000_0000);
    assert_eq!(reg::GCMD_SRTP, 0x4000_0000);
    assert_eq!(reg::GCMD_QIE, 0x0400_0000);
    // The echo mask drops the one-shot commands SRTP 30, SFL 29, WBF 27, SIRTP 24.
    let one_shot = (1u32 << 30) | (1 << 29) | (1 << 27) | (1 << 24);
    assert_eq!(reg::GCMD_ECHO_MASK, !one_shot);
    assert_eq!(reg::CCMD_ICC, 0x8000_0000_0000_0000);
    assert_eq!(reg::IOTLB_IVT, 0x8000_0000_0000_0000);
    assert_eq!(reg::IOTLB_DR, 0x0002_0000_0000_0000);
    assert_eq!(reg::IOTLB_DW, 0x0001_0000_0000_0000);
}

#[test]
fn page_selective_invalidation_picks_the_smallest_aligned_block() {
    let psi = |did, addr, am| Invalidation::IotlbPage { did, addr, am };
    assert_eq!(
        Invalidation::page(7, 0x1234_5000, 0x1000, 18),
        psi(7, 0x1234_5000, 0)
    );
    assert_eq!(
        Invalidation::page(7, 0x1234_5abc, 0x10, 18),
        psi(7, 0x1234_5000, 0)
    );
    // Pages 0x10003 and 0x10004 first share a block at 8 pages.
    assert_eq!(
        Invalidation::page(7, 0x1000_3000, 0x2000, 18),
        psi(7, 0x1000_0000, 3)
    );
    assert_eq!(
        Invalidation::page(0xBEEF, 0x1000_4000, 0x4000, 18),
        psi(0xBEEF, 0x1000_4000, 2)
    );
    // AM = MAMV is still page-selective; one more is domain-selective.
    assert_eq!(
        Invalidation::page(7, 0x4000_0000, 0x4000_0000, 18),
        psi(7, 0x4000_0000, 18)
    );
    assert_eq!(
        Invalidation::page(7, 0x4000_0000, 0x4000_0000, 17),
        Invalidation::IotlbDomain { did: 7 }
    );
    assert_eq!(
        Invalidation::page(7, 0x4000_0000, 0x4000_0000, 19),
        psi(7, 0x4000_0000, 18)
    );
}

#[test]
fn is_context_classifies() {
    assert!(Invalidation::ContextGlobal.is_context());
    assert!(Invalidation::ContextDomain { did: 1 }.is_context());
    assert!(Invalidation::ContextDevice {
        did: 1,
        sid: 2,
        fm: 0
    }
    .is_context());
    assert!(!Invalidation::IotlbGlobal.is_context());
    assert!(!Invalidation::IotlbDomain { did: 1 }.is_context());
    assert!(!Invalidation::IotlbPage {
        did: 1,
        addr: 0,
        am: 0
    }
    .is_context());
}

fn writes(inv: Invalidation, iro: u32) -> Vec<(u32, u64, u64)> {
    inv.register_writes(iro)
        .iter()
        .map(|w| (w.offset, w.value, w.poll))
        .collect()
}

#[test]
fn register_writes_follow_ccmd_iva_and_iotlb_layouts() {
    const ICC: u64 = 1 << 63;
    // CCMD: ICC 63 | CIRG 62:61 | FM 33:32 | SID 31:16 | DID 15:0.
    assert_eq!(
        writes(Invalidation::ContextGlobal, 0xf0),
        [(0x28, ICC | (1 << 61), ICC)]
    );
    assert_eq!(
        writes(Invalidation::ContextDomain { did: 0x1234 }, 0xf0),
        [(0x28, ICC | (2 << 61) | 0x1234, ICC)]
    );
    let dev = Invalidation::ContextDevice {
        did: 0x1234,
        sid: 0xab3d,
        fm: 2,
    };
    assert_eq!(
        writes(dev, 0xf0),
        [(
            0x28,
            ICC | (3 << 61) | (2 << 32) | (0xab3d << 16) | 0x1234,
            ICC
        )]
    );
    let dev = Invalidation::ContextDevice {
        did: 0xffff,
        sid: 0xffff,
        fm: 1,
    };
    assert_eq!(
        writes(dev, 0xf0),
        [(0x28, 0xE000_0001_FFFF_FFFF, ICC)],
        "every field at its widest stays in its bits"
    );
    // IOTLB_REG at IRO + 8: IVT 63 | IIRG 61:60 | DR 49 | DW 48 | DID 47:32.
    const IVT: u64 = 1 << 63;
    const DRW: u64 = (1 << 49) | (1 << 48);
    assert_eq!(
        writes(Invalidation::IotlbGlobal, 0x100),
        [(0x108, IVT | (1 << 60) | DRW, IVT)]
    );
    assert_eq!(
        writes(Invalidation::IotlbDomain { did: 0xbeef }, 0x100),
        [(0x108, IVT | (2 << 60) | DRW | (0xbeef << 32), IVT)]
    );
    // PSI: IVA first (address 63:12 | IH 6 = 0 | AM 5:0), then IOTLB_REG.
    let page = Invalidation::IotlbPage {
        did: 0x5a5a,
        addr: 0x7654_3000,
        am: 3,
    };
    assert_eq!(
        writes(page, 0xf0),
        [
            (0xf0, 0x7654_3003, 0),
            (0xf8, IVT | (3 << 60) | DRW | (0x5a5a << 32), IVT)
        ]
    );
    let page = Invalidation::IotlbPage {
        did: 1,
        addr: 0x1_2345_6abc,
        am: 0x2a,
    };
    let w = writes(page, 0xf0);
    assert_eq!(w[0], (0xf0, 0x1_2345_602a, 0));
    // An out-of-range AM never spills into IH (6) or the reserved bits 11:7.
    for am in [0x3f, 0x40, 0x7f, 0xff] {
        let page = Invalidation::IotlbPage {
            did: 1,
            addr: 0x8000,
            am,
        };
        let iva = writes(page, 0xf0)[0].1;
        assert_eq!(iva & 0xfc0, 0, "am {am:#x}");
        assert_eq!(iva & !0xfff, 0x8000);
    }
}

#[test]
fn queued_descriptors_follow_the_spec_layout() {
    // Type 1, context-cache: G 5:4 | DID 31:16 | SID 47:32 | FM 49:48; hi 0.
    assert_eq!(Invalidation::ContextGlobal.descriptor(), [0x11, 0]);
    assert_eq!(
        Invalidation::ContextDomain { did: 0x1234 }.descriptor(),
        [0x1234_0021, 0]
    );
    let dev = Invalidation::ContextDevice {
        did: 0x1234,
        sid: 0xab3d,
        fm: 2,
    };
    assert_eq!(dev.descriptor(), [0x0002_ab3d_1234_0031, 0]);
    let dev = Invalidation::ContextDevice {
        did: 0xffff,
        sid: 0xffff,
        fm: 3,
    };
    assert_eq!(dev.descriptor(), [0x0003_ffff_ffff_0031, 0]);
    // Type 2, IOTLB: G 5:4 | DW 6 | DR 7 | DID 31:16; PSI hi: address | IH 6 | AM 5:0.
    assert_eq!(Invalidation::IotlbGlobal.descriptor(), [0xd2, 0]);
    assert_eq!(
        Invalidation::IotlbDomain { did: 0xbeef }.descriptor(),
        [0xbeef_00e2, 0]
    );
    let page = Invalidation::IotlbPage {
        did: 0x5a5a,
        addr: 0x7654_3abc,
        am: 3,
    };
    assert_eq!(page.descriptor(), [0x5a5a_00f2, 0x7654_3003]);
    for am in [0, 9, 18, 0x3f, 0x40, 0xff] {
        let [lo, hi] = Invalidation::IotlbPage {
            did: 0xffff,
            addr: 0xffff_ffff_f000,
            am,
        }
        .descriptor();
        // Reserved: lo 15:8 and 63:32, hi 11:7; IH (6) is 0 (no hint).
        assert_eq!(lo & 0xffff_ffff_0000_ff00, 0);
        assert_eq!(hi & 0xfc0, 0);
        assert_eq!(hi & !0xfff, 0xffff_ffff_f000);
    }
}

#[test]
fn wait_descriptor_sets_sw_and_status() {
    // Type 5 | IF 4 = 0 | SW 5 = 1 | FN 6 = 0 | data 63:32; hi = 4-byte-aligned address.
    assert_eq!(
        vtd::wait_descriptor(0x1234_5677, 0xdead_beef),
        [0xdead_beef_0000_0025, 0x1234_5674]
    );
    let [lo, hi] = vtd::wait_descriptor(0x9000, 1);
    assert_eq!(lo, 0x1_0000_0025);
    assert_eq!(hi, 0x9000);
    assert_eq!(lo & (1 << 4), 0, "no interrupt");
    assert_eq!(lo & (1 << 6), 0, "no fence");
}

// ---------------------------------------------------------------------------------
// walk.rs
// ---------------------------------------------------------------------------------

const ROOT: u64 = 0x10_0000;
const CTX: u64 = 0x10_1000;
const PML4: u64 = 0x10_2000;
const PDPT: u64 = 0x10_3000;
const PD: u64 = 0x10_4000;
const PT: u64 = 0x10_5000;
/// Bus 0x0a, device 7, function 5: 4 levels, DID 0xBEEF.
const SID: u16 = 0x0a3d;
const DID: u16 = 0xBEEF;
/// Same bus, devfn 0x3e: 3 levels (AW = 1) from PDPT, DID 0x0102.
const SID3: u16 = 0x0a3e;
/// devfn 0x3f: pass-through (TT = 10), DID 0x0203.
const SID_PT: u16 = 0x0a3f;
/// devfn 0x40: the same 4-level tables in domain 0x0777.
const SID_B: u16 = 0x0a40;
const DID_B: u16 = 0x0777;
const LEAF: u64 = 0x7654_3000;
const IOVA: u64 = (0x0CA << 39) | (0x1B5 << 30) | (0x0F3 << 21) | (0x1A7 << 12) | 0x9c4;
const IOVA3: u64 = IOVA & ((1 << 39) - 1);

fn ctx_addr(sid: u16) -> u64 {
    CTX + u64::from(sid & 0xff) * 16
}

fn tables() -> Mem {
    let mut m = Mem::default();
    m.add_zeroed(PhysAddr::new(ROOT), 0x6000);
    put(&mut m, ROOT + 0x0a * 16, CTX | 1);
    put(&mut m, ctx_addr(SID) + 8, (u64::from(DID) << 8) | 2);
    put(&mut m, ctx_addr(SID), PML4 | 1);
    put(&mut m, ctx_addr(SID3) + 8, (0x0102 << 8) | 1);
    put(&mut m, ctx_addr(SID3), PDPT | 1);
    put(&mut m, ctx_addr(SID_PT) + 8, (0x0203 << 8) | 2);
    put(&mut m, ctx_addr(SID_PT), PML4 | (2 << 2) | 1);
    put(&mut m, ctx_addr(SID_B) + 8, (u64::from(DID_B) << 8) | 2);
    put(&mut m, ctx_addr(SID_B), PML4 | 1);
    put(&mut m, PML4 + 0x0CA * 8, PDPT | 3);
    put(&mut m, PDPT + 0x1B5 * 8, PD | 3);
    put(&mut m, PD + 0x0F3 * 8, PT | 3);
    put(&mut m, PT + 0x1A7 * 8, LEAF | 3);
    m
}

fn walk_with(
    m: &Mem,
    caps: VtdCaps,
    sid: u16,
    iova: u64,
    a: Access,
) -> Result<vtd::Translation, WalkError> {
    vtd::translate(m, ROOT, caps, sid, iova, a)
}

fn walk(m: &Mem, iova: u64, a: Access) -> Result<vtd::Translation, WalkError> {
    walk_with(m, VtdCaps::qemu(48), SID, iova, a)
}

/// (reason code, recorded, level) of a fault.
fn fault(r: Result<vtd::Translation, WalkError>) -> (u8, bool, u32) {
    match r {
        Err(WalkError::Fault(f)) => (f.reason.code(), f.recorded, f.level),
        other => panic!("expected a fault, got {other:?}"),
    }
}

fn with(m: &Mem, a: u64, v: u64) -> Mem {
    let mut x = m.clone();
    put(&mut x, a, v);
    x
}

#[test]
fn walk_reads_each_entry_at_the_spec_offset() {
    let m = tables();
    let mut steps = Vec::new();
    let t = vtd::translate_traced(
        &m,
        ROOT,
        VtdCaps::qemu(48),
        SID,
        IOVA,
        Access::Read,
        &mut |s| steps.push(s),
    )
    .unwrap();
    assert_eq!(
        steps,
        [
            WalkStep::Root {
                addr: ROOT + 0xa0,
                raw: [CTX | 1, 0]
            },
            WalkStep::Context {
                addr: CTX + 0x3d0,
                raw: [PML4 | 1, 0x00BE_EF02]
            },
            WalkStep::Sl {
                level: 4,
                addr: PML4 + 0x0CA * 8,
                raw: PDPT | 3
            },
            WalkStep::Sl {
                level: 3,
                addr: PDPT + 0x1B5 * 8,
                raw: PD | 3
            },
            WalkStep::Sl {
                level: 2,
                addr: PD + 0x0F3 * 8,
                raw: PT | 3
            },
            WalkStep::Sl {
                level: 1,
                addr: PT + 0x1A7 * 8,
                raw: LEAF | 3
            },
        ]
    );
    assert_eq!(
        t,
        vtd::Translation {
            phys: LEAF | 0x9c4,
            page_size: 0x1000,
            domain_id: DID,
            perm: RW,
            pass_through: false,
        }
    );
    assert_eq!(walk(&m, IOVA, Access::Write).unwrap().phys, LEAF | 0x9c4);
    // 3 levels from the context entry's SLPTPTR.
    let t = walk_with(&m, VtdCaps::qemu(48), SID3, IOVA3, Access::Write).unwrap();
    assert_eq!((t.phys, t.domain_id), (LEAF | 0x9c4, 0x0102));
    let t = walk_with(&m, VtdCaps::qemu(39), SID3, IOVA3, Access::Read).unwrap();
    assert_eq!(t.phys, LEAF | 0x9c4);
}

#[test]
fn walk_root_entry_checks() {
    let m = tables();
    let e = ROOT + 0xa0;
    // Another bus: no root entry.
    let r = walk_with(&m, VtdCaps::qemu(48), 0x0b3d, IOVA, Access::Read);
    assert_eq!(fault(r), (1, true, 0));
    assert_eq!(
        fault(walk(&with(&m, e, CTX), IOVA, Access::Read)),
        (1, true, 0)
    );
    // High quadword non-zero, reserved bits 11:1, an address bit above the width.
    for (addr, v) in [
        (e + 8, 1u64 << 40),
        (e + 8, 1),
        (e, CTX | 1 | 0x2),
        (e, CTX | 1 | 0x800),
        (e, CTX | 1 | (1 << 48)),
    ] {
        let r = walk(&with(&m, addr, v), IOVA, Access::Read);
        assert_eq!(fault(r), (0xA, true, 0), "{addr:#x} = {v:#x}");
    }
    // 39-bit host width: bit 39 of the pointer is reserved.
    let x = with(&m, e, CTX | 1 | (1 << 39));
    let r = walk_with(&x, VtdCaps::qemu(39), SID3, IOVA3, Access::Read);
    assert_eq!(fault(r).0, 0xA);
}

#[test]
fn walk_context_entry_checks() {
    let m = tables();
    let (lo, hi) = (ctx_addr(SID), ctx_addr(SID) + 8);
    let hi_ok = (u64::from(DID) << 8) | 2;
    // Not present: another devfn.
    let r = walk_with(&m, VtdCaps::qemu(48), 0x0a3c, IOVA, Access::Read);
    assert_eq!(fault(r), (2, true, 0));
    assert_eq!(fault(walk(&with(&m, lo, PML4), IOVA, Access::Read)).0, 2);
    // Reserved: hi 7, 24, 63; lo 4, 11, an address bit above the width.
    for (addr, v) in [
        (hi, hi_ok | 0x80),
        (hi, hi_ok | (1 << 24)),
        (hi, hi_ok | (1 << 63)),
        (lo, PML4 | 1 | 0x10),
        (lo, PML4 | 1 | 0x800),
        (lo, PML4 | 1 | (1 << 48)),
    ] {
        let r = walk(&with(&m, addr, v), IOVA, Access::Read);
        assert_eq!(fault(r), (0xB, true, 0), "{addr:#x} = {v:#x}");
    }
    // Ignored bits 6:3 of hi are fine.
    assert!(walk(&with(&m, hi, hi_ok | 0x78), IOVA, Access::Read).is_ok());
    // AW must be a SAGAW bit: 0, 3, 4 are not on QEMU's 48-bit unit; 2 not on 39-bit.
    for aw in [0u64, 3, 4, 7] {
        let x = with(&m, hi, (u64::from(DID) << 8) | aw);
        assert_eq!(fault(walk(&x, IOVA, Access::Read)), (3, true, 0), "AW {aw}");
    }
    let r = walk_with(&m, VtdCaps::qemu(39), SID, IOVA3, Access::Read);
    assert_eq!(fault(r), (3, true, 0));
    let only4 = VtdCaps {
        haw: 48,
        sagaw: 0b00100,
        pass_through: true,
        device_tlb: false,
    };
    assert_eq!(fault(walk_with(&m, only4, SID3, IOVA3, Access::Read)).0, 3);
    assert!(walk_with(&m, only4, SID, IOVA, Access::Read).is_ok());
    // FPD suppresses the recording of a qualified fault only.
    let fpd = with(&m, lo, PML4 | 1 | vtd::CTX_FPD);
    assert!(
        walk(&fpd, IOVA, Access::Read).is_ok(),
        "FPD is no reserved bit"
    );
    let missing = with(&fpd, PT + 0x1A7 * 8, 0);
    assert_eq!(fault(walk(&missing, IOVA, Access::Read)), (6, false, 1));
    let missing = with(&m, PT + 0x1A7 * 8, 0);
    assert_eq!(fault(walk(&missing, IOVA, Access::Read)), (6, true, 1));
}

#[test]
fn walk_translation_types() {
    let m = tables();
    let lo = ctx_addr(SID);
    let dt = VtdCaps {
        device_tlb: true,
        ..VtdCaps::qemu(48)
    };
    // TT 01 (device-TLB): only with ECAP.DT, then walked as TT 00.
    let x = with(&m, lo, PML4 | (1 << 2) | 1);
    assert_eq!(fault(walk(&x, IOVA, Access::Read)), (3, true, 0));
    assert_eq!(
        walk_with(&x, dt, SID, IOVA, Access::Read).unwrap().phys,
        LEAF | 0x9c4
    );
    // TT 10 (pass-through): the IOVA is the address, with ECAP.PT.
    let t = walk_with(&m, VtdCaps::qemu(48), SID_PT, 0x1234_5678, Access::Write).unwrap();
    assert_eq!(
        t,
        vtd::Translation {
            phys: 0x1234_5678,
            page_size: 0x1000,
            domain_id: 0x0203,
            perm: RW,
            pass_through: true,
        }
    );
    let no_pt = VtdCaps {
        pass_through: false,
        ..VtdCaps::qemu(48)
    };
    assert_eq!(
        fault(walk_with(&m, no_pt, SID_PT, 0x1000, Access::Read)).0,
        3
    );
    // TT 11 is reserved.
    let x = with(&m, lo, PML4 | (3 << 2) | 1);
    assert_eq!(fault(walk_with(&x, dt, SID, IOVA, Access::Read)).0, 3);
    // TT 00 is a walk even without DT or PT.
    let bare = VtdCaps {
        pass_through: false,
        ..VtdCaps::qemu(48)
    };
    assert!(walk_with(&m, bare, SID, IOVA, Access::Read).is_ok());
}

#[test]
fn walk_address_width_limits() {
    let m = tables();
    // 4 levels: IOVAs up to 2^48 - 1 are walked, 2^48 is beyond the AGAW.
    assert_eq!(fault(walk(&m, 1 << 48, Access::Read)), (4, true, 0));
    assert_eq!(fault(walk(&m, (1 << 48) - 1, Access::Read)), (6, true, 4));
    // 3 levels: 2^39.
    let w3 = |iova| walk_with(&m, VtdCaps::qemu(48), SID3, iova, Access::Write);
    assert_eq!(fault(w3(1 << 39)), (4, true, 0));
    assert_eq!(fault(w3((1 << 39) - 1)), (5, true, 3));
    // A 4-level context on a unit whose host width is 39 bits: min(AGAW, HAW) = 39.
    let narrow = VtdCaps {
        haw: 39,
        sagaw: 0b00110,
        pass_through: true,
        device_tlb: false,
    };
    assert_eq!(fault(walk_with(&m, narrow, SID, IOVA, Access::Read)).0, 4);
    assert_eq!(
        fault(walk_with(&m, narrow, SID, 1 << 39, Access::Read)).0,
        4
    );
    assert_eq!(
        fault(walk_with(&m, narrow, SID, IOVA3, Access::Read)),
        (6, true, 4)
    );
}

#[test]
fn walk_second_level_faults_and_leaves() {
    let m = tables();
    let (e4, e3, e2, e1) = (
        PML4 + 0x0CA * 8,
        PDPT + 0x1B5 * 8,
        PD + 0x0F3 * 8,
        PT + 0x1A7 * 8,
    );
    // All-ones entries: 3 at the top level, 7 below.
    assert_eq!(
        fault(walk(&with(&m, e4, u64::MAX), IOVA, Access::Read)),
        (3, true, 4)
    );
    assert_eq!(
        fault(walk(&with(&m, e1, u64::MAX), IOVA, Access::Read)),
        (7, true, 1)
    );
    // Not present: a permission fault at that level.
    let x = with(&m, e1, 0);
    assert_eq!(fault(walk(&x, IOVA, Access::Read)), (6, true, 1));
    assert_eq!(fault(walk(&x, IOVA, Access::Write)), (5, true, 1));
    assert_eq!(
        fault(walk(&with(&m, e2, 0), IOVA, Access::Write)),
        (5, true, 2)
    );
    // Permissions are ANDed down the walk.
    let x = with(&m, e2, PT | 2); // PDE: W only
    assert_eq!(fault(walk(&x, IOVA, Access::Read)), (6, true, 2));
    assert_eq!(walk(&x, IOVA, Access::Write).unwrap().perm, IoPerm::WRITE);
    let x = with(&m, e1, LEAF | 1); // PTE: R only
    assert_eq!(fault(walk(&x, IOVA, Access::Write)), (5, true, 1));
    let t = walk(&x, IOVA, Access::Read).unwrap();
    assert_eq!((t.phys, t.perm), (LEAF | 0x9c4, IoPerm::READ));
    // Reserved bits.
    for (addr, v, level) in [
        (e1, LEAF | 3 | vtd::SL_SNP, 1),
        (e1, LEAF | 3 | (1 << 48), 1),
        (e1, LEAF | 3 | vtd::SL_TM, 1),
        (e4, PDPT | 3 | vtd::SL_PS, 4),
        (e2, 0x8061_0000 | 0x83, 2),   // misaligned 2 MiB leaf
        (e3, 0x8020_0000 | 0x83, 3),   // misaligned 1 GiB leaf
        (e3, PD | 3 | vtd::SL_SNP, 3), // SNP in a non-leaf entry
    ] {
        let r = walk(&with(&m, addr, v), IOVA, Access::Read);
        assert_eq!(fault(r), (0xC, true, level), "{addr:#x} = {v:#x}");
    }
    // Ignored bits, and PS in a PTE, change nothing.
    for v in [
        LEAF | 3 | vtd::SL_PS,
        LEAF | 3 | (1 << 52) | (1 << 61) | (1 << 63),
    ] {
        let t = walk(&with(&m, e1, v), IOVA, Access::Read).unwrap();
        assert_eq!((t.phys, t.page_size), (LEAF | 0x9c4, 0x1000), "{v:#x}");
    }
    // Large leaves: the offset is the IOVA's bits below the leaf size.
    let t = walk(&with(&m, e2, 0x8060_0000 | 0x83), IOVA, Access::Write).unwrap();
    assert_eq!((t.phys, t.page_size, t.perm), (0x807A_79C4, 2 << 20, RW));
    let t = walk(&with(&m, e3, 0x8000_0000 | 0x81), IOVA, Access::Read).unwrap();
    assert_eq!(
        (t.phys, t.page_size, t.perm),
        (0x9E7A_79C4, 1 << 30, IoPerm::READ)
    );
    // With the 39-bit host width, a 1 GiB leaf at 2^38.
    let x = with(&m, e3, (1 << 38) | 0x83);
    let t = walk_with(&x, VtdCaps::qemu(39), SID3, IOVA3, Access::Read).unwrap();
    assert_eq!(t.phys, (1 << 38) | 0x1E7A_79C4);
    // A leaf whose page touches the interrupt window: 0xE at the leaf's level.
    for (addr, v, level) in [
        (e1, 0xFEE0_0000 | 3, 1),
        (e1, 0xFEEF_F000 | 3, 1),
        (e2, 0xFEE0_0000 | 0x83, 2),
        (e3, 0xC000_0000 | 0x83, 3),
    ] {
        let r = walk(&with(&m, addr, v), IOVA, Access::Read);
        assert_eq!(fault(r), (0xE, true, level), "{v:#x}");
    }
    for (addr, v, phys) in [
        (e1, 0xFEDF_F000 | 3, 0xFEDF_F9C4),
        (e1, 0xFEF0_0000 | 3, 0xFEF0_09C4),
        (e2, 0xFEC0_0000 | 0x83, 0xFEDA_79C4),
    ] {
        let t = walk(&with(&m, addr, v), IOVA, Access::Read).unwrap();
        assert_eq!(t.phys, phys);
    }
    // Memory the reader does not back.
    let x = with(&m, e2, 0x7700_0003);
    assert!(matches!(
        walk(&x, IOVA, Access::Read),
        Err(WalkError::Memory(_))
    ));
}

#[test]
fn walk_interrupt_window_is_never_translated() {
    let m = tables();
    for iova in [0xFEE0_0000, 0xFEE8_1234, 0xFEEF_FFFF] {
        assert_eq!(
            walk(&m, iova, Access::Write),
            Err(WalkError::InterruptWindow)
        );
    }
    for iova in [0xFEDF_FFFF, 0xFEF0_0000] {
        assert_eq!(fault(walk(&m, iova, Access::Write)), (5, true, 4));
    }
}

#[test]
fn walk_error_names_and_messages() {
    let m = tables();
    let root = walk_with(&m, VtdCaps::qemu(48), 0x0b3d, IOVA, Access::Read).unwrap_err();
    assert_eq!(root.kind(), "root_not_present");
    let text = root.to_string();
    assert!(text.contains("0x1"), "{text}");
    assert!(!text.contains("level"), "{text}");
    assert!(!text.contains("FPD"), "{text}");
    let pd = walk(&with(&m, PD + 0x0F3 * 8, 0), IOVA, Access::Write).unwrap_err();
    assert_eq!(pd.kind(), "write_not_permitted");
    let text = pd.to_string();
    assert!(text.contains("0x5") && text.contains("level 2"), "{text}");
    let fpd = with(&with(&m, ctx_addr(SID), PML4 | 3), PD + 0x0F3 * 8, 0);
    let quiet = walk(&fpd, IOVA, Access::Write).unwrap_err();
    assert!(quiet.to_string().contains("FPD"), "{quiet}");
    let win = walk(&m, 0xFEE0_0000, Access::Read).unwrap_err();
    assert_eq!(win.kind(), "interrupt_window");
    assert!(!win.to_string().is_empty());
    let mem =
        vtd::translate(&m, 0x4000_0000, VtdCaps::qemu(48), SID, IOVA, Access::Read).unwrap_err();
    assert_eq!(mem.kind(), "memory_unreadable");
    assert!(!mem.to_string().is_empty());
}

// ---------------------------------------------------------------------------------
// iotlb.rs
// ---------------------------------------------------------------------------------

const IOVA_PAGE: u64 = IOVA & !0xfff;
/// PD[0xF4]: a 2 MiB leaf; PDPT[0x1B6]: a read-only 1 GiB leaf.
const IOVA_2M: u64 = (0x0CA << 39) | (0x1B5 << 30) | (0x0F4 << 21);
const IOVA_1G: u64 = (0x0CA << 39) | (0x1B6 << 30);

fn cached_tables() -> Mem {
    let mut m = tables();
    put(&mut m, PT + 0x1A6 * 8, (LEAF - 0x1000) | 3);
    put(&mut m, PT + 0x1A8 * 8, (LEAF + 0x1000) | 3);
    put(&mut m, PD + 0x0F4 * 8, 0x8000_0000 | 0x83);
    put(&mut m, PDPT + 0x1B6 * 8, 0x4000_0000 | 0x81);
    m
}

#[test]
fn iotlb_caches_leaves_per_size() {
    let m = cached_tables();
    let caps = VtdCaps::qemu(48);
    let mut tlb = VtdIotlb::new();
    assert!(tlb.is_empty());
    assert_eq!(tlb.len(), 0);
    let tr = |tlb: &mut VtdIotlb, sid, iova, a| tlb.translate(&m, ROOT, caps, sid, iova, a);
    // 4 KiB: the second access to the page, at another offset, is a hit.
    assert_eq!(
        tr(&mut tlb, SID, IOVA, Access::Read).unwrap().phys,
        LEAF | 0x9c4
    );
    assert_eq!((tlb.hits, tlb.misses, tlb.len()), (0, 1, 1));
    assert!(!tlb.is_empty());
    let t = tr(&mut tlb, SID, IOVA_PAGE + 4, Access::Write).unwrap();
    assert_eq!((t.phys, t.page_size, t.domain_id), (LEAF | 4, 0x1000, DID));
    assert_eq!((tlb.hits, tlb.misses), (1, 1));
    // 2 MiB.
    let t = tr(&mut tlb, SID, IOVA_2M + 0x12_3456, Access::Read).unwrap();
    assert_eq!((t.phys, t.page_size), (0x8012_3456, 2 << 20));
    let t = tr(&mut tlb, SID, IOVA_2M + 0x1_0000, Access::Read).unwrap();
    assert_eq!(t.phys, 0x8001_0000);
    assert_eq!((tlb.hits, tlb.misses, tlb.len()), (2, 2, 2));
    // 1 GiB, read-only: a write hit fails without a walk and is not recorded.
    let t = tr(&mut tlb, SID, IOVA_1G + 0x2345_6789, Access::Read).unwrap();
    assert_eq!((t.phys, t.page_size), (0x6345_6789, 1 << 30));
    assert_eq!(
        tr(&mut tlb, SID, IOVA_1G + 5, Access::Read).unwrap().phys,
        0x4000_0005
    );
    assert_eq!((tlb.hits, tlb.misses, tlb.len()), (3, 3, 3));
    let e = tr(&mut tlb, SID, IOVA_1G, Access::Write).unwrap_err();
    assert_eq!(
        e,
        WalkError::Fault(vtd::Fault {
            reason: FaultReason::WriteNotPermitted,
            recorded: false,
            level: 0
        })
    );
    assert_eq!((tlb.hits, tlb.misses), (4, 3));
    // The cache is per source id.
    let t = tr(&mut tlb, SID_B, IOVA, Access::Read).unwrap();
    assert_eq!((t.phys, t.domain_id), (LEAF | 0x9c4, DID_B));
    assert_eq!((tlb.misses, tlb.len()), (4, 4));
    // Pass-through is never cached; faults are not cached either.
    for _ in 0..2 {
        assert!(
            tr(&mut tlb, SID_PT, 0x5000, Access::Read)
                .unwrap()
                .pass_through
        );
        assert!(tr(&mut tlb, SID, IOVA + 0x1_0000, Access::Read).is_err());
    }
    assert_eq!((tlb.hits, tlb.misses, tlb.len()), (4, 8, 4));
}

#[test]
fn iotlb_invalidations_evict_exactly_what_they_cover() {
    let mut m = cached_tables();
    let caps = VtdCaps::qemu(48);
    let below = IOVA_PAGE - 0x1000;
    let above = IOVA_PAGE + 0x1000;
    let fill = |m: &Mem, tlb: &mut VtdIotlb| {
        for (sid, iova) in [
            (SID, below),
            (SID, IOVA_PAGE),
            (SID, above),
            (SID, IOVA_2M),
            (SID_B, IOVA_PAGE),
        ] {
            tlb.translate(m, ROOT, caps, sid, iova, Access::Read)
                .unwrap();
        }
    };
    let mut tlb = VtdIotlb::new();
    fill(&m, &mut tlb);
    assert_eq!(tlb.len(), 5);
    // Rewrite every leaf: what stays cached still translates to the old pages.
    put(&mut m, PT + 0x1A6 * 8, 0x1_0000_0000 | 3);
    put(&mut m, PT + 0x1A7 * 8, 0x1_0000_1000 | 3);
    put(&mut m, PT + 0x1A8 * 8, 0x1_0000_2000 | 3);
    put(&mut m, PD + 0x0F4 * 8, 0x1_4000_0000 | 0x83);
    let stale = |tlb: &mut VtdIotlb, m: &Mem| -> Vec<bool> {
        let mut v = Vec::new();
        for (sid, iova, old) in [
            (SID, below, LEAF - 0x1000),
            (SID, IOVA_PAGE, LEAF),
            (SID, above, LEAF + 0x1000),
            (SID, IOVA_2M, 0x8000_0000),
            (SID_B, IOVA_PAGE, LEAF),
        ] {
            let t = tlb
                .translate(m, ROOT, caps, sid, iova, Access::Read)
                .unwrap();
            v.push(t.phys == old);
        }
        v
    };
    // Context-cache invalidations do not touch the IOTLB.
    let mut t = tlb.clone();
    for inv in [
        Invalidation::ContextGlobal,
        Invalidation::ContextDomain { did: DID },
        Invalidation::ContextDevice {
            did: DID,
            sid: SID,
            fm: 0,
        },
    ] {
        t.apply(&inv);
    }
    assert_eq!(t.len(), 5);
    assert_eq!(stale(&mut t, &m), [true; 5]);
    // PSI of one page in DID: that page only (not its neighbours, not DID_B's).
    let mut t = tlb.clone();
    t.apply(&Invalidation::IotlbPage {
        did: DID,
        addr: IOVA_PAGE,
        am: 0,
    });
    assert_eq!(t.len(), 4);
    assert_eq!(stale(&mut t, &m), [true, false, true, true, true]);
    // PSI with AM = 1 from the odd page: the aligned pair below it.
    let mut t = tlb.clone();
    t.apply(&Invalidation::IotlbPage {
        did: DID,
        addr: IOVA_PAGE,
        am: 1,
    });
    assert_eq!(stale(&mut t, &m), [false, false, true, true, true]);
    // PSI in the other domain.
    let mut t = tlb.clone();
    t.apply(&Invalidation::IotlbPage {
        did: DID_B,
        addr: IOVA_PAGE,
        am: 0,
    });
    assert_eq!(stale(&mut t, &m), [true, true, true, true, false]);
    // A 4 KiB PSI inside a cached 2 MiB leaf drops the leaf.
    let mut t = tlb.clone();
    t.apply(&Invalidation::IotlbPage {
        did: DID,
        addr: IOVA_2M + 0x5000,
        am: 0,
    });
    assert_eq!(stale(&mut t, &m), [true, true, true, false, true]);
    // DSI: one domain.
    let mut t = tlb.clone();
    t.apply(&Invalidation::IotlbDomain { did: DID_B });
    assert_eq!(t.len(), 4);
    assert_eq!(stale(&mut t, &m), [true, true, true, true, false]);
    let mut t = tlb.clone();
    t.apply(&Invalidation::IotlbDomain { did: DID });
    assert_eq!(t.len(), 1);
    assert_eq!(stale(&mut t, &m), [false, false, false, false, true]);
    // Global.
    let mut t = tlb.clone();
    t.apply(&Invalidation::IotlbGlobal);
    assert!(t.is_empty());
    assert_eq!(stale(&mut t, &m), [false; 5]);
}

// ---------------------------------------------------------------------------------
// tables.rs
// ---------------------------------------------------------------------------------

#[test]
fn vtd_format_encodes_and_decodes() {
    let f48 = VtdFormat::new(48, true).unwrap();
    let f39 = VtdFormat::new(39, false).unwrap();
    assert_eq!((f48.levels(), f48.max_leaf_level()), (4, 2));
    assert_eq!((f39.levels(), f39.max_leaf_level()), (3, 0));
    assert!(matches!(
        VtdFormat::new(57, true),
        Err(MapError::InvalidConfig { .. })
    ));
    // Engine levels are 0-based (0 = 4 KiB).
    assert_eq!(f48.encode_table(0x5abc, 2), 0x5003);
    assert_eq!(f48.encode_leaf(0x4000_0000, IoPerm::READ, 0), 0x4000_0001);
    assert_eq!(f48.encode_leaf(0x4000_0000, IoPerm::WRITE, 1), 0x4000_0082);
    assert_eq!(f48.encode_leaf(0x4000_0000, RW, 2), 0x4000_0083);
    // decode: not present unless R or W.
    assert_eq!(f48.decode(0, 0), Pte::Empty);
    assert_eq!(f48.decode(0x5000 | vtd::SL_PS | vtd::SL_SNP, 1), Pte::Empty);
    let leaf = |phys, perm| Pte::Leaf { phys, perm };
    assert_eq!(f48.decode(0x5001, 0), leaf(0x5000, IoPerm::READ));
    assert_eq!(f48.decode(0x5082, 0), leaf(0x5000, IoPerm::WRITE));
    assert_eq!(f48.decode(0x5002, 1), Pte::Table(0x5000));
    assert_eq!(f48.decode(0x5001, 2), Pte::Table(0x5000));
    assert_eq!(f48.decode(0x4012_3083, 1), leaf(0x4000_0000, RW));
    assert_eq!(f48.decode(0x8765_4081, 2), leaf(0x8000_0000, IoPerm::READ));
    assert_eq!(
        f48.decode(0x5083, 3),
        Pte::Table(0x5000),
        "PS is reserved in a PML4E"
    );
    assert_eq!(f48.decode((1 << 50) | 0x5003, 1), Pte::Table(0x5000));
    assert_eq!(
        f39.decode((1 << 40) | (1 << 38) | 0x5003, 1),
        Pte::Table(1 << 38 | 0x5000)
    );
    // Leaves may not cover the interrupt window.
    assert!(!f48.leaf_allowed(0xFEE0_0000, 0));
    assert!(!f48.leaf_allowed(0xFEEF_F000, 0));
    assert!(f48.leaf_allowed(0xFEDF_F000, 0));
    assert!(f48.leaf_allowed(0xFEF0_0000, 0));
    assert!(!f48.leaf_allowed(0xFEE0_0000, 1));
    assert!(f48.leaf_allowed(0xFEC0_0000, 1));
    assert!(f48.leaf_allowed(0xFF00_0000, 1));
    assert!(!f48.leaf_allowed(0xC000_0000, 2));
    assert!(f48.leaf_allowed(0x1_0000_0000, 2));
    assert!(!f48.leaf_allowed(0, 60), "no leaf past 2^64");
}

fn ram(base: u64, pages: u64) -> (Mem, PageList) {
    let mut m = Mem::default();
    m.add(PhysAddr::new(base), vec![0xa5; (pages * 0x1000) as usize]);
    (m, PageList::new((0..pages).map(|i| base + i * 0x1000)))
}

#[test]
fn vtd_tables_write_root_and_context_entries() {
    for (aw, aw_field) in [(48u32, 2u64), (39, 1)] {
        let (mem, pages) = ram(0x20_0000, 16);
        let cfg = VtdConfig::new(aw, SID, DID);
        let t = VtdTables::new(mem, pages, cfg).unwrap();
        assert_eq!(t.config(), cfg);
        assert_eq!(
            (t.root_table(), t.context_table(), t.sl_root()),
            (0x20_0000, 0x20_1000, 0x20_2000)
        );
        assert_eq!((t.pages().taken(), t.pages().in_use()), (3, 3));
        let m = t.memory();
        assert_eq!(get(m, 0x20_0000 + 0x0a * 16), 0x20_1001);
        assert_eq!(get(m, 0x20_0000 + 0x0a * 16 + 8), 0);
        assert_eq!(get(m, 0x20_1000 + 0x3d * 16), 0x20_2001);
        assert_eq!(
            get(m, 0x20_1000 + 0x3d * 16 + 8),
            (u64::from(DID) << 8) | aw_field
        );
        // The three pages were zeroed (the RAM held 0xa5 bytes).
        for page in [0x20_0000u64, 0x20_1000, 0x20_2000] {
            for off in (0..0x1000).step_by(8) {
                let a = page + off;
                if a != 0x20_0000 + 0xa0 && a != 0x20_1000 + 0x3d0 && a != 0x20_1000 + 0x3d8 {
                    assert_eq!(get(m, a), 0, "{a:#x}");
                }
            }
        }
        // Another device on another bus has no root entry.
        let r = vtd::translate(
            m,
            t.root_table(),
            VtdCaps::qemu(aw),
            0x0108,
            0x1000,
            Access::Read,
        );
        assert_eq!(fault(r), (1, true, 0));
        let (mem, pages) = t.into_parts();
        assert_eq!(get(&mem, 0x20_0000 + 0xa0), 0x20_1001);
        assert_eq!(pages.in_use(), 3);
    }
    assert!(matches!(
        VtdTables::new(Mem::default(), PageList::new([]), VtdConfig::new(40, 8, 1)),
        Err(MapError::InvalidConfig { .. })
    ));
}

/// A page source that hands out one unaligned page.
#[derive(Debug)]
struct Unaligned;
impl PageSource for Unaligned {
    fn alloc_page(&mut self) -> Option<u64> {
        Some(0x20_0800)
    }
    fn free_page(&mut self, _: u64) {}
}

#[test]
fn vtd_tables_map_rules_and_page_source() {
    let (mem, _) = ram(0x20_0000, 2);
    assert_eq!(
        VtdTables::new(mem, Unaligned, VtdConfig::new(48, 8, 1)).unwrap_err(),
        MapError::TableMemory { addr: 0x20_0800 }
    );
    let (mem, pages) = ram(0x20_0000, 32);
    let mut t = VtdTables::new(mem, pages, VtdConfig::new(48, SID, DID)).unwrap();
    let root = t.root_table();
    for perm in [IoPerm::default(), IoPerm::MMIO] {
        assert!(matches!(
            t.map(0x4000, 0x8000, 0x1000, perm),
            Err(MapError::InvalidConfig { .. })
        ));
    }
    t.map(0x4000, 0x9000, 0x1000, IoPerm::READ).unwrap();
    t.map(0x5000, 0xa000, 0x1000, IoPerm::WRITE).unwrap();
    assert_eq!(
        t.lookup(0x4123).unwrap(),
        Some((0x9123, IoPerm::READ, 0x1000))
    );
    assert_eq!(
        t.lookup(0x5000).unwrap(),
        Some((0xa000, IoPerm::WRITE, 0x1000))
    );
    assert_eq!(t.lookup(0x6000).unwrap(), None);
    assert_eq!(t.pages().in_use(), 3 + 3, "PDPT, PD, PT");
    // The device sees the leaves and non-leaves the spec asks for.
    let caps = VtdCaps::qemu(48);
    let tr = vtd::translate(t.memory(), root, caps, SID, 0x4123, Access::Read).unwrap();
    assert_eq!(
        (tr.phys, tr.perm, tr.domain_id),
        (0x9123, IoPerm::READ, DID)
    );
    assert!(vtd::translate(t.memory(), root, caps, SID, 0x4123, Access::Write).is_err());
    // 2 MiB leaves.
    t.map(0x4000_0000, 0x8000_0000, 0x40_0000, RW).unwrap();
    assert_eq!(
        t.lookup(0x4020_0010).unwrap(),
        Some((0x8020_0010, RW, 2 << 20))
    );
    assert_eq!(t.counts().leaves, [2, 2, 0]);
    assert_eq!(t.counts().mapped_bytes, 0x2000 + 0x40_0000);
    assert_eq!(
        t.unmap(0x6000, 0x1000),
        Err(MapError::NotMapped {
            dma: 0x6000,
            len: 0x1000
        })
    );
    t.unmap(0x4000, 0x1000).unwrap();
    assert_eq!(t.lookup(0x4000).unwrap(), None);
    assert_eq!(t.unmap_present(0, 1 << 40).unwrap(), 0x1000 + 0x40_0000);
    assert_eq!(t.counts().mapped_bytes, 0);
    assert_eq!(
        t.pages().in_use(),
        3,
        "tables freed back to the page source"
    );
    assert_eq!(t.pages().taken(), 3 + 3 + 1);
    // memory_mut writes the same memory.
    put(t.memory_mut(), 0x20_0000 + 0xff0, 0x1234_5678);
    assert_eq!(get(t.memory(), 0x20_0000 + 0xff0), 0x1234_5678);
    // Without large pages, 4 KiB leaves only.
    let (mem, pages) = ram(0x20_0000, 32);
    let cfg = VtdConfig {
        large_pages: false,
        ..VtdConfig::new(48, SID, DID)
    };
    let mut t = VtdTables::new(mem, pages, cfg).unwrap();
    t.map(0x4000_0000, 0x8000_0000, 2 << 20, RW).unwrap();
    assert_eq!(t.counts().leaves, [512, 0, 0]);
    // PageList: freed pages first, unaligned addresses skipped.
    let mut p = PageList::new([0x1000, 0x2800, 0x3000]);
    assert_eq!((p.taken(), p.in_use()), (0, 0));
    assert_eq!(p.alloc_page(), Some(0x1000));
    assert_eq!(p.alloc_page(), Some(0x3000));
    assert_eq!((p.taken(), p.in_use()), (2, 2));
    p.free_page(0x1000);
    assert_eq!((p.taken(), p.in_use()), (2, 1));
    assert_eq!(p.alloc_page(), Some(0x1000));
    assert_eq!(p.alloc_page(), None);
}

#[test]
fn dirty_pages_tracks_written_pages() {
    let mut m = Mem::default();
    m.add_zeroed(PhysAddr::new(0x1000), 0x4000);
    let mut d = DirtyPages::new(m);
    d.write(PhysAddr::new(0x2000), &[]).unwrap();
    assert!(d.take_dirty().is_empty(), "an empty write dirties nothing");
    d.write(
        PhysAddr::new(0x2ffc),
        &0x1122_3344_5566_7788u64.to_le_bytes(),
    )
    .unwrap();
    d.write(PhysAddr::new(0x1008), &[1]).unwrap();
    assert_eq!(d.take_dirty(), [0x1000, 0x2000, 0x3000]);
    assert!(d.take_dirty().is_empty());
    d.write(PhysAddr::new(0x4fff), &[9]).unwrap();
    assert_eq!(d.take_dirty(), [0x4000]);
    assert_eq!(get(&d, 0x2ffc), 0x1122_3344_5566_7788);
    assert_eq!(get(d.inner(), 0x2ffc), 0x1122_3344_5566_7788);
    assert!(d.write(PhysAddr::new(0x9000), &[1]).is_err());
    assert!(d.take_dirty().is_empty());
    let m = d.into_inner();
    assert_eq!(get(&m, 0x2ffc), 0x1122_3344_5566_7788);
}

// ---------------------------------------------------------------------------------
// mapper.rs
// ---------------------------------------------------------------------------------

type Mapper = VtdMapper<Mem, PageList>;

fn mapper(cfg: VtdConfig) -> Mapper {
    let (mem, pages) = ram(0x100_0000, 64);
    VtdMapper::new(mem, pages, cfg).unwrap()
}

fn dev_translate(iommu: &Mapper, iova: u64, a: Access) -> Result<vtd::Translation, WalkError> {
    let cfg = iommu.config();
    vtd::translate(
        &*iommu.memory(),
        iommu.root_table(),
        VtdCaps::qemu(cfg.aw_bits),
        cfg.source_id,
        iova,
        a,
    )
}

#[test]
fn mapper_enable_sequence_and_accessors() {
    let cfg = VtdConfig::new(39, SID, DID);
    let iommu = mapper(cfg);
    assert_eq!(iommu.config(), cfg);
    assert!(format!("{iommu:?}").contains("VtdMapper"));
    assert_eq!(iommu.granule(), PageSize::SIZE_4K);
    assert_eq!(iommu.dma_mask().get(), (1 << 39) - 1);
    assert_eq!(iommu.root_table(), 0x100_0000);
    assert_eq!(iommu.tables().root_table(), 0x100_0000);
    assert_eq!(get(&*iommu.memory(), 0x100_0000 + 0xa0), 0x100_1001);
    assert!(iommu.is_idle());
    assert_eq!(iommu.pending_invalidations(), 2);
    assert_eq!(iommu.stats().invalidations, 2);
    assert_eq!(
        iommu.drain_invalidations(),
        [Invalidation::ContextGlobal, Invalidation::IotlbGlobal]
    );
    assert_eq!(iommu.pending_invalidations(), 0);
    assert!(iommu.drain_invalidations().is_empty());
    // memory_mut reaches the table memory (a DirtyPages wrapper sees the table writes).
    let (mem, pages) = ram(0x100_0000, 64);
    let d = VtdMapper::new(DirtyPages::new(mem), pages, cfg).unwrap();
    assert_eq!(
        d.memory_mut().take_dirty(),
        [0x100_0000, 0x100_1000, 0x100_2000]
    );
    d.map_phys(
        PhysRange::new(0x5000, 0x1000),
        DataDirection::ToDevice,
        Attrs::empty(),
    )
    .unwrap();
    assert_eq!(
        d.memory_mut().take_dirty().len(),
        3,
        "PDPT entry, new PD and PT"
    );
}

#[test]
fn mapper_map_phys_and_unmap_phys() {
    let iommu = mapper(VtdConfig::new(48, SID, DID));
    iommu.drain_invalidations();
    let phys = PhysRange::new(0x1234_5678, 0x2000);
    let dma = iommu
        .map_phys(phys, DataDirection::ToDevice, Attrs::empty())
        .unwrap();
    let a = dma.addr().as_u64();
    assert_eq!((a & 0xfff, dma.len()), (0x678, 0x2000));
    assert_ne!(a & !0xfff, 0);
    assert!(!iommu.is_idle());
    assert_eq!(iommu.stats().maps, 1);
    assert_eq!(
        iommu.pending_invalidations(),
        0,
        "CM = 0: mapping needs none"
    );
    // Three pages, read-only (to device).
    assert_eq!(
        dev_translate(&iommu, a, Access::Read).unwrap().phys,
        0x1234_5678
    );
    assert_eq!(
        dev_translate(&iommu, a + 0x1f00, Access::Read)
            .unwrap()
            .phys,
        0x1234_7578
    );
    assert_eq!(fault(dev_translate(&iommu, a, Access::Write)).0, 5);
    assert_eq!(iommu.tables().counts().mapped_bytes, 0x3000);
    // unmap_phys needs exactly the range map_phys returned.
    let dir = DataDirection::ToDevice;
    for bad in [
        DmaRange::new(a + 1, 0x2000),
        DmaRange::new(a, 0x1fff),
        DmaRange::new(a + 0x1000, 0x2000),
    ] {
        assert!(matches!(
            iommu.unmap_phys(bad, dir, Attrs::empty()),
            Err(MapError::NotMapped { .. })
        ));
    }
    assert!(!iommu.is_idle());
    iommu.unmap_phys(dma, dir, Attrs::empty()).unwrap();
    assert_eq!(
        iommu.drain_invalidations(),
        [Invalidation::page(DID, a & !0xfff, 0x3000, 18)]
    );
    assert_eq!(fault(dev_translate(&iommu, a, Access::Read)).0, 6);
    assert!(iommu.is_idle());
    assert_eq!(iommu.stats().unmaps, 1);
    assert!(matches!(
        iommu.unmap_phys(dma, dir, Attrs::empty()),
        Err(MapError::NotMapped { .. })
    ));
    // Direction -> leaf permission.
    for (dir, perm) in [
        (DataDirection::FromDevice, IoPerm::WRITE),
        (DataDirection::Bidirectional, RW),
    ] {
        let dma = iommu
            .map_phys(PhysRange::new(0x9000, 0x1000), dir, Attrs::empty())
            .unwrap();
        let t = dev_translate(&iommu, dma.addr().as_u64(), Access::Write).unwrap();
        assert_eq!((t.phys, t.perm), (0x9000, perm));
        iommu.unmap_phys(dma, dir, Attrs::empty()).unwrap();
    }
}

#[test]
fn mapper_fixed_mappings() {
    let iommu = mapper(VtdConfig::new(48, SID, DID));
    iommu.drain_invalidations();
    iommu
        .map_fixed(0x30_0000, 0x9000_0000, 0x2000, IoPerm::READ)
        .unwrap();
    assert!(!iommu.is_idle());
    assert_eq!(iommu.pending_invalidations(), 0);
    let t = dev_translate(&iommu, 0x30_1234, Access::Read).unwrap();
    assert_eq!((t.phys, t.perm), (0x9000_1234, IoPerm::READ));
    assert!(matches!(
        iommu.map_fixed(0x30_1000, 0x5000, 0x1000, IoPerm::READ),
        Err(MapError::AlreadyMapped { .. })
    ));
    // The interrupt window, entered from below or inside.
    assert_eq!(
        iommu.map_fixed(0xFEDF_F000, 0x5000, 0x2000, IoPerm::READ),
        Err(MapError::InterruptWindow { phys: 0xFEDF_F000 })
    );
    assert_eq!(
        iommu.map_fixed(0xFEE8_0000, 0x5000, 0x1000, IoPerm::READ),
        Err(MapError::InterruptWindow { phys: 0xFEE8_0000 })
    );
    iommu
        .map_fixed(0xFEDF_F000, 0x5000, 0x1000, IoPerm::WRITE)
        .unwrap();
    iommu
        .map_fixed(0xFEF0_0000, 0x6000, 0x1000, IoPerm::WRITE)
        .unwrap();
    assert_eq!(
        dev_translate(&iommu, 0xFEF0_0010, Access::Write)
            .unwrap()
            .phys,
        0x6010
    );
    // unmap_fixed: exactly the mapped range.
    assert_eq!(
        iommu.unmap_fixed(0x30_0000, 0x1000),
        Err(MapError::NotMapped {
            dma: 0x30_0000,
            len: 0x1000
        })
    );
    iommu.unmap_fixed(0x30_0000, 0x2000).unwrap();
    assert_eq!(
        iommu.drain_invalidations(),
        [Invalidation::page(DID, 0x30_0000, 0x2000, 18)]
    );
    assert!(dev_translate(&iommu, 0x30_1234, Access::Read).is_err());
    iommu.unmap_fixed(0xFEDF_F000, 0x1000).unwrap();
    iommu.unmap_fixed(0xFEF0_0000, 0x1000).unwrap();
    assert!(iommu.is_idle());
}

#[test]
fn mapper_spaces_alignment_ownership_and_free() {
    let dir = DataDirection::Bidirectional;
    let no = Attrs::empty();
    let iommu = mapper(VtdConfig::new(48, SID, DID));
    iommu.drain_invalidations();
    assert_eq!(
        iommu.reserve(PhysAddr::new(0), 0).unwrap_err(),
        MapError::Empty
    );
    // A reservation alone makes the mapper busy; freeing it needs no invalidation.
    let s = iommu
        .reserve(PhysAddr::new(0x1234), 0x1000)
        .unwrap()
        .unwrap();
    assert_eq!((s.pad(), s.reserved_len()), (0x234, 0x2000));
    assert!(!iommu.is_idle());
    iommu.free(s).unwrap();
    assert!(iommu.is_idle());
    assert_eq!(iommu.pending_invalidations(), 0);
    // Large reservations are aligned for large leaves.
    let s2 = iommu.reserve(PhysAddr::new(0), 2 << 20).unwrap().unwrap();
    assert_eq!(s2.iova_base().as_u64() % (2 << 20), 0);
    let s1 = iommu.reserve(PhysAddr::new(0), 1 << 30).unwrap().unwrap();
    assert_eq!(s1.iova_base().as_u64() % (1 << 30), 0);
    iommu.free(s1).unwrap();
    // link -> sync -> translate; unlink part; destroy.
    let mut s2 = s2;
    iommu
        .link(&mut s2, PhysRange::new(0x8000_0000, 2 << 20), 0, dir, no)
        .unwrap();
    let base = s2.iova_base().as_u64();
    assert_eq!(iommu.tables().counts().leaves, [0, 1, 0]);
    let t = dev_translate(&iommu, base + 0x1_2345, Access::Write).unwrap();
    assert_eq!((t.phys, t.page_size), (0x8001_2345, 2 << 20));
    let mut s2 = iommu.sync(s2, 0, 2 << 20).unwrap();
    assert_eq!(iommu.stats().syncs, 1);
    assert_eq!(iommu.pending_invalidations(), 0);
    iommu.unlink(&mut s2, 0x3000, 0x1000, dir, no).unwrap();
    assert_eq!(
        iommu.drain_invalidations(),
        [Invalidation::page(DID, base + 0x3000, 0x1000, 18)]
    );
    assert!(dev_translate(&iommu, base + 0x3000, Access::Read).is_err());
    assert!(dev_translate(&iommu, base + 0x4000, Access::Read).is_ok());
    iommu.destroy(s2, dir, no).unwrap();
    assert_eq!(
        iommu.drain_invalidations(),
        [Invalidation::page(DID, base, 2 << 20, 18)]
    );
    assert!(dev_translate(&iommu, base + 0x4000, Access::Read).is_err());
    assert!(iommu.is_idle());
    // Freeing a space that is still linked unmaps it and reports the bytes.
    let mut s = iommu.reserve(PhysAddr::new(0), 0x3000).unwrap().unwrap();
    iommu
        .link(&mut s, PhysRange::new(0x5000, 0x3000), 0, dir, no)
        .unwrap();
    let b = s.iova_base().as_u64();
    assert!(matches!(
        iommu.free(s),
        Err(MapError::StillLinked { bytes: 0x3000 })
    ));
    assert_eq!(
        iommu.drain_invalidations(),
        [Invalidation::page(DID, b, 0x3000, 18)]
    );
    assert!(dev_translate(&iommu, b, Access::Read).is_err());
    assert!(iommu.is_idle());
    // A space belongs to the mapper that reserved it, even when another mapper has
    // the same reservation.
    let other = mapper(VtdConfig::new(48, SID, DID));
    let mut mine = iommu.reserve(PhysAddr::new(0), 0x1000).unwrap().unwrap();
    let theirs = other.reserve(PhysAddr::new(0), 0x1000).unwrap().unwrap();
    assert_eq!(mine.iova_base(), theirs.iova_base());
    assert!(matches!(
        other.link(&mut mine, PhysRange::new(0x5000, 0x1000), 0, dir, no),
        Err(MapError::ForeignSpace { .. })
    ));
    assert!(other.tables().counts().mapped_bytes == 0);
    iommu.free(mine).unwrap();
    other.free(theirs).unwrap();
    // Without large pages a 2 MiB link uses 4 KiB leaves.
    let small = mapper(VtdConfig {
        large_pages: false,
        ..VtdConfig::new(48, SID, DID)
    });
    let mut s = small.reserve(PhysAddr::new(0), 2 << 20).unwrap().unwrap();
    small
        .link(&mut s, PhysRange::new(0x8000_0000, 2 << 20), 0, dir, no)
        .unwrap();
    assert_eq!(small.tables().counts().leaves[1], 0);
    small.destroy(s, dir, no).unwrap();
}

#[test]
fn mapper_caching_mode_invalidates_new_mappings() {
    let dir = DataDirection::ToDevice;
    let iommu = mapper(VtdConfig {
        caching_mode: true,
        ..VtdConfig::new(48, SID, DID)
    });
    iommu.drain_invalidations();
    let dma = iommu
        .map_phys(PhysRange::new(0x7000, 0x1000), dir, Attrs::empty())
        .unwrap();
    let a = dma.addr().as_u64();
    assert_eq!(
        iommu.drain_invalidations(),
        [Invalidation::page(DID, a, 0x1000, 18)]
    );
    iommu
        .map_fixed(0x40_0000, 0x9000, 0x1000, IoPerm::READ)
        .unwrap();
    assert_eq!(
        iommu.drain_invalidations(),
        [Invalidation::page(DID, 0x40_0000, 0x1000, 18)]
    );
    let mut s = iommu.reserve(PhysAddr::new(0), 0x4000).unwrap().unwrap();
    iommu
        .link(
            &mut s,
            PhysRange::new(0xa000, 0x4000),
            0,
            dir,
            Attrs::empty(),
        )
        .unwrap();
    let s = iommu.sync(s, 0x1000, 0x2000).unwrap();
    assert_eq!(
        iommu.drain_invalidations(),
        [Invalidation::page(
            DID,
            s.addr().as_u64() + 0x1000,
            0x2000,
            18
        )]
    );
    iommu.destroy(s, dir, Attrs::empty()).unwrap();
    iommu.unmap_phys(dma, dir, Attrs::empty()).unwrap();
    iommu.unmap_fixed(0x40_0000, 0x1000).unwrap();
    assert_eq!(iommu.stats().invalidations, 2 + 3 + 3);
}
