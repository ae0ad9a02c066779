//! Hand-built PRP and SGL layouts for the conformance tests: the structures QEMU reads
//! (PRP1/PRP2 plus PRP list pages; SGL1 plus segments of 16-byte descriptors), their bytes
//! in guest memory, a printable form for failure messages, and a model of the QEMU 7.2 SGL
//! segment-walk defect (`nvme-prp-sgl.md` §7).
//!
//! These builders do not replace the crate's encoders: they construct *malformed* layouts
//! (which no correct encoder produces) and describe what was sent.

use std::fmt;

/// SGL descriptor types (byte 15 bits 7:4).
pub const DATA_BLOCK: u8 = 0x0;
/// Bit Bucket.
pub const BIT_BUCKET: u8 = 0x1;
/// Segment.
pub const SEGMENT: u8 = 0x2;
/// Last Segment.
pub const LAST_SEGMENT: u8 = 0x3;
/// Keyed Data Block.
pub const KEYED_DATA_BLOCK: u8 = 0x4;
/// Vendor specific.
pub const VENDOR: u8 = 0xf;

/// One SGL descriptor, as fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desc {
    /// Address (bytes 0..8).
    pub addr: u64,
    /// Length (bytes 8..12).
    pub len: u32,
    /// Type nibble.
    pub ty: u8,
    /// Subtype nibble.
    pub subtype: u8,
}

impl Desc {
    /// A Data Block.
    pub fn data(addr: u64, len: u32) -> Desc {
        Desc {
            addr,
            len,
            ty: DATA_BLOCK,
            subtype: 0,
        }
    }
    /// A Segment (`last = false`) or Last Segment descriptor for `n` descriptors at `addr`.
    pub fn link(addr: u64, n: usize, last: bool) -> Desc {
        let ty = if last { LAST_SEGMENT } else { SEGMENT };
        Desc {
            addr,
            len: (16 * n) as u32,
            ty,
            subtype: 0,
        }
    }
    /// The 16 bytes in memory order.
    pub fn bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[15] = (self.ty << 4) | (self.subtype & 0xf);
        b
    }
    /// From 16 bytes.
    pub fn from_bytes(b: &[u8]) -> Desc {
        Desc {
            addr: u64::from_le_bytes(b[..8].try_into().unwrap()),
            len: u32::from_le_bytes(b[8..12].try_into().unwrap()),
            ty: b[15] >> 4,
            subtype: b[15] & 0xf,
        }
    }
    fn is_link(&self) -> bool {
        self.ty == SEGMENT || self.ty == LAST_SEGMENT
    }
}

impl fmt::Display for Desc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.ty {
            DATA_BLOCK => "DB",
            BIT_BUCKET => "BitBucket",
            SEGMENT => "Seg",
            LAST_SEGMENT => "LastSeg",
            KEYED_DATA_BLOCK => "Keyed",
            VENDOR => "Vendor",
            _ => "Reserved",
        };
        write!(f, "{name}")?;
        if name == "Reserved" {
            write!(f, "{:x}h", self.ty)?;
        }
        if self.subtype != 0 {
            write!(f, "/sub{:#x}", self.subtype)?;
        }
        write!(f, "({:#x},{:#x})", self.addr, self.len)
    }
}

/// An SGL: the DPTR descriptor (SGL1) and the segments it reaches, as (address,
/// descriptors) in walk order.
#[derive(Clone, Debug, Default)]
pub struct SglLayout {
    /// SGL1 (command DPTR).
    pub dptr: Option<Desc>,
    /// Segments in guest memory.
    pub segments: Vec<(u64, Vec<Desc>)>,
}

impl SglLayout {
    /// DPTR bytes.
    pub fn dptr_bytes(&self) -> [u8; 16] {
        self.dptr.expect("SGL1").bytes()
    }
    /// Guest-memory writes (segment address, bytes).
    pub fn writes(&self) -> Vec<(u64, Vec<u8>)> {
        self.segments
            .iter()
            .map(|(a, d)| (*a, d.iter().flat_map(Desc::bytes).collect()))
            .collect()
    }

    /// Builds a valid SGL for `data` (address, length) pieces: one Data Block in DPTR when
    /// `groups` is empty, otherwise segments holding `groups[i]` data descriptors each, at
    /// `seg_addrs[i]`, linked by Segment descriptors and a Last Segment descriptor for the
    /// final segment.
    pub fn build(data: &[(u64, u32)], groups: &[usize], seg_addrs: &[u64]) -> SglLayout {
        let descs: Vec<Desc> = data.iter().map(|&(a, l)| Desc::data(a, l)).collect();
        if groups.is_empty() {
            assert_eq!(descs.len(), 1);
            return SglLayout {
                dptr: Some(descs[0]),
                segments: vec![],
            };
        }
        assert_eq!(groups.iter().sum::<usize>(), descs.len());
        let k = groups.len();
        let mut segments = Vec::with_capacity(k);
        let mut rest = &descs[..];
        for (i, &g) in groups.iter().enumerate() {
            let mut seg: Vec<Desc> = rest[..g].to_vec();
            rest = &rest[g..];
            if i + 1 < k {
                let n = groups[i + 1] + usize::from(i + 2 < k);
                seg.push(Desc::link(seg_addrs[i + 1], n, i + 2 == k));
            }
            segments.push((seg_addrs[i], seg));
        }
        let n0 = segments[0].1.len();
        SglLayout {
            dptr: Some(Desc::link(seg_addrs[0], n0, k == 1)),
            segments,
        }
    }
}

impl fmt::Display for SglLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.dptr {
            Some(d) => write!(f, "DPTR={d}")?,
            None => write!(f, "DPTR=?")?,
        }
        for (a, descs) in &self.segments {
            write!(f, " seg@{a:#x}=[")?;
            for (i, d) in descs.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{d}")?;
            }
            f.write_str("]")?;
        }
        Ok(())
    }
}

/// A PRP layout: PRP1, PRP2 and the PRP list pages (address of the first slot written,
/// entries) in chain order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrpLayout {
    /// PRP1.
    pub prp1: u64,
    /// PRP2 (0 when reserved, a data pointer, or a list pointer).
    pub prp2: u64,
    /// List pages: (address of the first entry, entries).
    pub lists: Vec<(u64, Vec<u64>)>,
}

impl PrpLayout {
    /// Guest-memory writes.
    pub fn writes(&self) -> Vec<(u64, Vec<u8>)> {
        self.lists
            .iter()
            .map(|(a, e)| (*a, e.iter().flat_map(|x| x.to_le_bytes()).collect()))
            .collect()
    }

    /// Builds the PRPs for a transfer whose PRP entries (page addresses; the first may carry
    /// an offset) are `entries`: PRP2 = 0, the second entry, or a list at `list_addrs[0]`
    /// (which may carry a dword offset: the list then runs to the end of that page), chained
    /// through the last slot of each full list page to `list_addrs[1..]` (page aligned).
    pub fn build(entries: &[u64], page: u64, list_addrs: &[u64]) -> PrpLayout {
        let mut l = PrpLayout {
            prp1: entries[0],
            ..PrpLayout::default()
        };
        match entries.len() {
            1 => {}
            2 => l.prp2 = entries[1],
            _ => {
                l.prp2 = list_addrs[0];
                let mut rest = &entries[1..];
                let mut i = 0;
                while !rest.is_empty() {
                    let at = list_addrs[i];
                    let cap = ((page - at % page) / 8) as usize;
                    if rest.len() <= cap {
                        l.lists.push((at, rest.to_vec()));
                        break;
                    }
                    let mut page_entries = rest[..cap - 1].to_vec();
                    page_entries.push(list_addrs[i + 1]);
                    l.lists.push((at, page_entries));
                    rest = &rest[cap - 1..];
                    i += 1;
                }
            }
        }
        l
    }

    /// Number of list pages a transfer with `n_entries` PRP entries needs when the first
    /// list starts at page offset `first_off`.
    pub fn lists_needed(n_entries: usize, page: u64, first_off: u64) -> usize {
        if n_entries <= 2 {
            return 0;
        }
        let mut rest = n_entries - 1;
        let mut cap = ((page - first_off) / 8) as usize;
        let mut pages = 1;
        while rest > cap {
            rest -= cap - 1;
            cap = (page / 8) as usize;
            pages += 1;
        }
        pages
    }
}

impl fmt::Display for PrpLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PRP1={:#x} PRP2={:#x}", self.prp1, self.prp2)?;
        for (a, e) in &self.lists {
            write!(f, " list@{a:#x}=[")?;
            for (i, x) in e.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{x:#x}")?;
            }
            f.write_str("]")?;
        }
        Ok(())
    }
}

/// The PRP entries of a transfer over `segs` (address, length): the first entry is the
/// start address, each later entry the start of the next memory page touched.
///
/// The segments must satisfy the PRP rules (only the first may start inside a page, all but
/// the last end on a page boundary); the function does not check.
pub fn prp_entries(segs: &[(u64, u64)], page: u64) -> Vec<u64> {
    let mut v = Vec::new();
    for &(a, l) in segs {
        let mut p = a;
        while p < a + l {
            v.push(p);
            p = (p & !(page - 1)) + page;
        }
    }
    v
}

/// Where QEMU 7.2's `nvme_map_sgl` check "the segment just read ends in a link, so the
/// descriptor that pointed at it must not be a Last Segment" reads the wrong descriptor
/// (§7: `sgld` points into the reused `segment[]` buffer): returns `Some(wrong_verdict)` for
/// the first segment where the buggy check and the correct check disagree, where
/// `wrong_verdict` is `true` when QEMU rejects with 0Dh a link the specification allows and
/// `false` when QEMU lets through a Last Segment that points at a chaining segment. `None`
/// when the defect does not change the walk. Only segments of at most 256 descriptors are
/// modelled (QEMU reads longer ones in chunks).
pub fn qemu72_sgl_defect(l: &SglLayout) -> Option<bool> {
    let mut buf: Vec<Desc> = Vec::new();
    // The descriptor that pointed at the current segment: (its type, Some(index in buf)).
    let mut prev: Option<(u8, usize)> = None;
    let mut link_ty = l.dptr?.ty;
    for (_, seg) in &l.segments {
        if seg.is_empty() || seg.len() > 256 {
            return None;
        }
        for (i, d) in seg.iter().enumerate() {
            if i < buf.len() {
                buf[i] = *d;
            } else {
                buf.push(*d);
            }
        }
        let last = seg[seg.len() - 1];
        if !last.is_link() {
            return None;
        }
        let correct = link_ty == LAST_SEGMENT;
        let buggy = match prev {
            None => correct, // SGL1 lives in the command, not in the buffer
            Some((_, idx)) => buf[idx].ty == LAST_SEGMENT,
        };
        if buggy != correct {
            return Some(buggy);
        }
        if correct {
            return None; // both reject here
        }
        // Segment-or-LastSeg mid-segment and data errors are found by both the same way.
        if seg[..seg.len() - 1].iter().any(|d| d.ty != DATA_BLOCK) {
            return None;
        }
        prev = Some((last.ty, seg.len() - 1));
        link_ty = last.ty;
    }
    None
}
