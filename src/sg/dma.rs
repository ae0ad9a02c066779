//! The DMA view of a table: fill `dma_address` / `dma_length` as
//! `iommu_dma_map_sg()` + `__finalise_sg()` (drivers/iommu/dma-iommu.c) or
//! `dma_direct_map_sg()` do, and set `sg_table.nents`.
//!
//! # The IOMMU layout
//! Each entry is granule-aligned in place (its sub-granule offset `o = phys % granule`
//! kept aside) and occupies `align_up(o + length, granule)` bytes of one IOVA
//! allocation, in order. Before an entry that would otherwise cross a segment boundary
//! (`mask + 1`), the previous entry is padded up to the boundary: `pad < aligned`, the
//! kernel's `pad_len < s_length - 1` for every granule multiple, and right at granule 1
//! too. [`iommu_iova_len`] returns the total; the caller allocates it
//! (granule-aligned; aligned to the boundary when larger than it, else not crossing one)
//! and [`iommu_map_sg`] maps each entry through a callback and writes the DMA view.
//!
//! # Merging (`__finalise_sg`)
//! Entry `s` is appended to the current DMA segment only if there is one, `s` starts on
//! a granule (`o == 0`), its IOVA is not on a segment boundary (`iova & mask != 0`), the
//! previous entry ended on a granule without padding, and `max_seg_size - cur_len >=
//! length`. Otherwise `s` starts the next segment, written into the next entry of the
//! table. So `nents <= orig_nents`, no DMA segment is longer than `max_seg_size`, and
//! none crosses a boundary. Entries past `nents` get `DMA_MAPPING_ERROR` / length 0.

use core::fmt;

use crate::addr::{DmaAddr, PageSize, Phys};
use crate::addr::{Virt, VirtAddr};
use crate::constraints::DmaConstraints;
use crate::mem::{MemoryReader, MemoryWriter};
use crate::range::Range;

use super::import::{entry_phys, SgCursor, SgEntry, SgImportError};
use super::layout::{Scatterlist, SgTable, DMA_MAPPING_ERROR};
use super::page::PageModel;

/// The device parameters `iommu_dma_map_sg` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IommuSgParams {
    /// IOMMU granule (`iovad->granule`), e.g. 4 KiB.
    pub granule: PageSize,
    /// `dma_get_seg_boundary()`: `2^k - 1`, at least `granule - 1`.
    pub seg_boundary_mask: u64,
    /// `dma_get_max_seg_size()` in bytes, at least 1.
    pub max_seg_size: u32,
}

impl IommuSgParams {
    /// Parameters from device constraints (`max_segment_size` capped at `u32::MAX`).
    ///
    /// ```
    /// use physvec::{DmaConstraints, PageSize};
    /// let c = DmaConstraints::linux_default();
    /// let p = physvec::sg::IommuSgParams::from_constraints(PageSize::SIZE_4K, &c);
    /// assert_eq!((p.max_seg_size, p.seg_boundary_mask), (65536, 0xffff_ffff));
    /// ```
    pub fn from_constraints(granule: PageSize, c: &DmaConstraints) -> Self {
        Self {
            granule,
            seg_boundary_mask: c.segment_boundary_mask(),
            max_seg_size: u32::try_from(c.max_segment_size()).unwrap_or(u32::MAX),
        }
    }
}

/// Why a table cannot be DMA-mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SgDmaError {
    /// Walking the table failed.
    Import(SgImportError),
    /// The boundary mask is not `2^k - 1` or is below the granule, or the maximum segment
    /// size is 0.
    InvalidParams,
    /// An entry longer than the maximum segment size.
    SegmentTooLong {
        /// Entry index.
        index: u32,
        /// Its length in bytes.
        len: u32,
    },
    /// An entry whose granule-aligned span is larger than a boundary window.
    CrossesBoundary {
        /// Entry index.
        index: u32,
    },
    /// The IOVA base is not granule-aligned, or the allocation would cross a boundary
    /// without starting on one, or pass 2^64.
    BadIovaBase {
        /// The base.
        base: u64,
        /// The IOVA length in bytes.
        len: u64,
    },
    /// The IOVA length does not fit in 64 bits.
    IovaOverflow,
    /// The caller's map callback refused an entry.
    MapFailed {
        /// Entry index.
        index: u32,
    },
    /// Writing the DMA fields failed.
    Unwritable {
        /// Address of the entry.
        addr: u64,
    },
}

impl SgDmaError {
    /// Stable snake_case name of the variant.
    pub fn kind(&self) -> &'static str {
        match self {
            SgDmaError::Import(e) => e.kind(),
            SgDmaError::InvalidParams => "invalid_params",
            SgDmaError::SegmentTooLong { .. } => "segment_too_long",
            SgDmaError::CrossesBoundary { .. } => "crosses_boundary",
            SgDmaError::BadIovaBase { .. } => "bad_iova_base",
            SgDmaError::IovaOverflow => "address_overflow",
            SgDmaError::MapFailed { .. } => "map_failed",
            SgDmaError::Unwritable { .. } => "memory_unwritable",
        }
    }
}

impl From<SgImportError> for SgDmaError {
    fn from(e: SgImportError) -> Self {
        SgDmaError::Import(e)
    }
}

impl fmt::Display for SgDmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SgDmaError::Import(e) => e.fmt(f),
            SgDmaError::InvalidParams => f.write_str(
                "segment boundary mask must be 2^k - 1 and cover a granule; max segment size > 0",
            ),
            SgDmaError::SegmentTooLong { index, len } => {
                write!(
                    f,
                    "entry {index} of {len:#x} bytes exceeds the max segment size"
                )
            }
            SgDmaError::CrossesBoundary { index } => {
                write!(f, "entry {index} is larger than a segment boundary window")
            }
            SgDmaError::BadIovaBase { base, len } => write!(
                f,
                "IOVA base {base:#x} cannot hold {len:#x} bytes with the alignment required"
            ),
            SgDmaError::IovaOverflow => f.write_str("IOVA length exceeds 2^64"),
            SgDmaError::MapFailed { index } => write!(f, "mapping entry {index} failed"),
            SgDmaError::Unwritable { addr } => {
                write!(f, "cannot write the DMA fields of the entry at {addr:#x}")
            }
        }
    }
}

impl core::error::Error for SgDmaError {}

/// The per-entry IOVA placement of `iommu_dma_map_sg`.
struct Placement {
    /// Sub-granule offset of the entry's first byte.
    off: u64,
    /// Granule-aligned IOVA bytes of the entry (without padding).
    aligned: u64,
    /// IOVA offset of the aligned entry from the allocation start.
    iova_off: u64,
    /// Whether the previous entry was padded to a boundary before this one.
    padded: bool,
}

struct Layout {
    params: IommuSgParams,
    iova_len: u64,
}

impl Layout {
    fn new(params: IommuSgParams) -> Result<Self, SgDmaError> {
        let m = params.seg_boundary_mask;
        if m.wrapping_add(1) & m != 0 || m < params.granule.mask() || params.max_seg_size == 0 {
            return Err(SgDmaError::InvalidParams);
        }
        Ok(Self {
            params,
            iova_len: 0,
        })
    }

    fn place(&mut self, e: &SgEntry, phys: Range<Phys>) -> Result<Placement, SgDmaError> {
        let index = e.index;
        let len = e.entry.length;
        if len > self.params.max_seg_size {
            return Err(SgDmaError::SegmentTooLong { index, len });
        }
        let mask = self.params.seg_boundary_mask;
        let gm = self.params.granule.mask();
        let off = phys.addr().as_u64() & gm;
        // `off < g` and `len` is a u32: the sum fits.
        let aligned = off
            .saturating_add(u64::from(len))
            .checked_add(gm)
            .ok_or(SgDmaError::IovaOverflow)?
            & !gm;
        // `aligned >= g` (entries are never empty); a 0 would wrap and be refused.
        if aligned.wrapping_sub(1) > mask {
            return Err(SgDmaError::CrossesBoundary { index });
        }
        // Bytes left in the current boundary window (0: at a window start); pad to the
        // next window when the entry would cross into it (module docs: the rule).
        let pad = mask.wrapping_sub(self.iova_len).wrapping_add(1) & mask;
        let padded = pad != 0 && pad < aligned;
        if padded {
            self.iova_len = self
                .iova_len
                .checked_add(pad)
                .ok_or(SgDmaError::IovaOverflow)?;
        }
        let iova_off = self.iova_len;
        self.iova_len = self
            .iova_len
            .checked_add(aligned)
            .ok_or(SgDmaError::IovaOverflow)?;
        Ok(Placement {
            off,
            aligned,
            iova_off,
            padded,
        })
    }
}

/// Walks the CPU view (`orig_nents` entries) and places every entry.
fn for_each_placement<M, P>(
    mem: &M,
    table: &SgTable,
    model: &P,
    params: IommuSgParams,
    max_entries: u32,
    mut f: impl FnMut(&SgEntry, Range<Phys>, &Placement) -> Result<(), SgDmaError>,
) -> Result<u64, SgDmaError>
where
    M: MemoryReader<Virt> + ?Sized,
    P: PageModel + ?Sized,
{
    let mut layout = Layout::new(params)?;
    let mut cur = SgCursor::new(table.sgl, Some(table.orig_nents), max_entries);
    while let Some(e) = cur.step(mem)? {
        let phys = entry_phys(model, e.index, &e.entry)?;
        let p = layout.place(&e, phys)?;
        f(&e, phys, &p)?;
    }
    Ok(layout.iova_len)
}

/// The IOVA bytes `iommu_dma_map_sg` needs for the table's `orig_nents` entries:
/// granule-aligned entry spans plus boundary padding.
///
/// # Errors
/// Walk and entry errors, [`SgDmaError::InvalidParams`],
/// [`SgDmaError::SegmentTooLong`], [`SgDmaError::CrossesBoundary`].
pub fn iommu_iova_len<M, P>(
    mem: &M,
    table: &SgTable,
    model: &P,
    params: IommuSgParams,
    max_entries: u32,
) -> Result<u64, SgDmaError>
where
    M: MemoryReader<Virt> + ?Sized,
    P: PageModel + ?Sized,
{
    for_each_placement(mem, table, model, params, max_entries, |_, _, _| Ok(()))
}

fn write_dma<M: MemoryWriter<Virt> + ?Sized>(
    mem: &mut M,
    addr: u64,
    dma_address: Option<u64>,
    dma_length: u32,
) -> Result<(), SgDmaError> {
    let err = SgDmaError::Unwritable { addr };
    if let Some(a) = dma_address {
        let at = addr
            .checked_add(Scatterlist::DMA_ADDRESS_OFFSET)
            .ok_or(err)?;
        mem.write(VirtAddr::new(at), &a.to_le_bytes())
            .map_err(|_| err)?;
    }
    let at = addr
        .checked_add(Scatterlist::DMA_LENGTH_OFFSET)
        .ok_or(err)?;
    mem.write(VirtAddr::new(at), &dma_length.to_le_bytes())
        .map_err(|_| err)
}

/// What [`iommu_map_sg`] asks its IOMMU callback to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SgOp {
    /// Map the span at the IOVA (`iommu_map`); return `false` on failure.
    Map,
    /// Undo an earlier successful `Map` of exactly this span and IOVA (`iommu_unmap`),
    /// while unwinding a failure; the return value is ignored.
    Unmap,
}

/// Maps a table through an IOMMU as `iommu_dma_map_sg` does: calls
/// `iommu(SgOp::Map, iova, phys)` once per entry with its granule-aligned physical span
/// and IOVA, then writes the merged DMA view (see the module docs) and sets
/// `table.nents`. Returns `nents`.
///
/// `iova_base` is the start of an allocation of [`iommu_iova_len`] bytes.
///
/// **On a failed map** it unwinds like the kernel (`iommu_unmap` of what was mapped,
/// then `__invalidate_sg`): every span mapped so far gets `iommu(SgOp::Unmap, ..)` in
/// entry order, every entry is marked `DMA_MAPPING_ERROR` / length 0 and `nents` is
/// set to 0. Nothing stays mapped.
///
/// **Padding is not mapped.** Where the kernel lengthens the previous entry up to the
/// segment boundary and maps that padding too (so that one `iommu_unmap` of the whole
/// allocation covers it), this function leaves the padding IOVA unmapped: mapping it
/// would expose to the device the physical pages that follow the previous entry, which
/// belong to someone else. The allocation therefore has holes: tear it down entry by
/// entry (the spans given to `Map`), or with a teardown that skips unmapped IOVA, such
/// as [`DmaMapper::destroy`](crate::map::DmaMapper::destroy) of the
/// [`SoftIommu`](crate::map::SoftIommu) (a unit test holds both to it).
///
/// # Errors
/// As [`iommu_iova_len`], plus [`SgDmaError::BadIovaBase`],
/// [`SgDmaError::MapFailed`] (unwound as above) and [`SgDmaError::Unwritable`].
///
/// # Examples
/// ```
/// use physvec::sg::{export, import_dma, iommu_iova_len, iommu_map_sg, IommuSgParams, Scatterlist, SgChunk, Vmemmap};
/// use physvec::{DmaAddr, DmaArray, DmaRange, PageSize, PhysRange, RangeView};
/// let vm = Vmemmap::new(0);
/// let r = [PhysRange::new(0x10000, 0x1000), PhysRange::new(0x50000, 0x2000), PhysRange::new(0x90000, 0x800)];
/// let mut a = [Scatterlist::default(); 4];
/// let mut chunks = [SgChunk { addr: physvec::VirtAddr::new(0x1000), entries: &mut a }];
/// let mut t = export(&RangeView::full(&r)?, &vm, u32::MAX, &mut chunks)?.table;
/// let p = IommuSgParams { granule: PageSize::SIZE_4K, seg_boundary_mask: u64::MAX, max_seg_size: 0x10000 };
/// assert_eq!(iommu_iova_len(&chunks[..], &t, &vm, p, 64)?, 0x4000);
/// let n = iommu_map_sg(&mut chunks[..], &mut t, &vm, p, DmaAddr::new(0xf000_0000), 64, |_, _, _| true)?;
/// assert_eq!((n, t.nents, t.orig_nents), (1, 1, 3));
/// let mut out = DmaArray::<4>::new();
/// import_dma(&chunks[..], &t, 64, &mut out)?;
/// assert_eq!(out.as_slice(), [DmaRange::new(0xf000_0000, 0x3800)]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn iommu_map_sg<M, P, F>(
    mem: &mut M,
    table: &mut SgTable,
    model: &P,
    params: IommuSgParams,
    iova_base: DmaAddr,
    max_entries: u32,
    mut iommu: F,
) -> Result<u32, SgDmaError>
where
    M: MemoryReader<Virt> + MemoryWriter<Virt> + ?Sized,
    P: PageModel + ?Sized,
    F: FnMut(SgOp, DmaAddr, Range<Phys>) -> bool,
{
    let total = iommu_iova_len(&*mem, table, model, params, max_entries)?;
    let base = iova_base.as_u64();
    let mask = params.seg_boundary_mask;
    let bad = SgDmaError::BadIovaBase { base, len: total };
    let last = if total == 0 {
        base
    } else {
        // `total > 0` here.
        base.checked_add(total.saturating_sub(1)).ok_or(bad)?
    };
    let fits_window = base & !mask == last & !mask;
    if base & params.granule.mask() != 0 || (!fits_window && base & mask != 0) {
        return Err(bad);
    }
    // Pass 1: map every entry.
    let span_of = |phys: Range<Phys>, p: &Placement| {
        // `iova_off < total` and `base + total - 1` was checked above; `off` is the
        // address's offset in its granule, so neither wraps.
        let iova = DmaAddr::new(base.wrapping_add(p.iova_off));
        let start = phys.addr().as_u64().wrapping_sub(p.off);
        Range::try_new(start, p.aligned)
            .map(|span| (iova, span))
            .map_err(|_| SgDmaError::IovaOverflow)
    };
    let mut mapped: u32 = 0;
    let pass1 = for_each_placement(&*mem, table, model, params, max_entries, |e, phys, p| {
        let (iova, span) = span_of(phys, p)?;
        if iommu(SgOp::Map, iova, span) {
            // One per entry, at most `max_entries` (a u32).
            mapped = mapped.saturating_add(1);
            Ok(())
        } else {
            Err(SgDmaError::MapFailed { index: e.index })
        }
    });
    if let Err(err) = pass1 {
        unwind_map_sg(
            mem,
            table,
            model,
            params,
            max_entries,
            (base, mapped),
            |iova, span| {
                iommu(SgOp::Unmap, iova, span);
            },
        );
        return Err(err);
    }
    // Pass 2: __finalise_sg.
    let max_len = params.max_seg_size;
    let mut layout = Layout::new(params)?;
    let mut s_cur = SgCursor::new(table.sgl, Some(table.orig_nents), max_entries);
    let mut out_cur = SgCursor::new(table.sgl, Some(table.orig_nents), max_entries);
    let mut out_addr = table.sgl;
    let mut cur_len: u32 = 0;
    let mut count: u32 = 0;
    while let Some(e) = s_cur.step(&*mem)? {
        let phys = entry_phys(model, e.index, &e.entry)?;
        let p = layout.place(&e, phys)?;
        if p.padded {
            cur_len = 0;
        }
        // Inside the IOVA range checked above.
        let dma_addr = base.wrapping_add(p.iova_off);
        let s_length = e.entry.length;
        write_dma(mem, e.addr.as_u64(), Some(DMA_MAPPING_ERROR), 0)?;
        let merge = cur_len != 0
            && p.off == 0
            && dma_addr & mask != 0
            && max_len
                .checked_sub(cur_len)
                .is_some_and(|room| room >= s_length);
        if merge {
            // `s_length <= max_len - cur_len` (checked by `merge`).
            cur_len = cur_len.saturating_add(s_length);
            write_dma(mem, out_addr, None, cur_len)?;
        } else {
            // The lagging cursor only revisits entries `s_cur` has read.
            let o = out_cur.step(&*mem)?.ok_or(SgDmaError::IovaOverflow)?;
            out_addr = o.addr.as_u64();
            cur_len = s_length;
            // One per segment, at most `max_entries`.
            count = count.saturating_add(1);
            write_dma(mem, out_addr, Some(dma_addr.wrapping_add(p.off)), cur_len)?;
        }
        if u64::from(s_length).saturating_add(p.off) < p.aligned {
            cur_len = 0;
        }
    }
    table.nents = count;
    Ok(count)
}

/// Undoes the first `mapped` maps of [`iommu_map_sg`] (IOVA base `base`) and marks every
/// entry `DMA_MAPPING_ERROR` / 0 (`__invalidate_sg`). Best effort: the table was walked
/// once already, so the walks cannot fail differently; errors are ignored.
fn unwind_map_sg<M, P>(
    mem: &mut M,
    table: &mut SgTable,
    model: &P,
    params: IommuSgParams,
    max_entries: u32,
    (base, mapped): (u64, u32),
    mut unmap: impl FnMut(DmaAddr, Range<Phys>),
) where
    M: MemoryReader<Virt> + MemoryWriter<Virt> + ?Sized,
    P: PageModel + ?Sized,
{
    // In entry order, without storage (the kernel's one `iommu_unmap` of the mapped
    // prefix has no order either): each mapped span exactly once, padding never.
    let _ = for_each_placement(&*mem, table, model, params, max_entries, |e, phys, p| {
        if e.index < mapped {
            // As in the map pass: neither wraps.
            if let Ok(span) = Range::try_new(phys.addr().as_u64().wrapping_sub(p.off), p.aligned) {
                unmap(DmaAddr::new(base.wrapping_add(p.iova_off)), span);
            }
        }
        Ok(())
    });
    let mut cur = SgCursor::new(table.sgl, Some(table.orig_nents), max_entries);
    while let Ok(Some(e)) = cur.step(&*mem) {
        if write_dma(mem, e.addr.as_u64(), Some(DMA_MAPPING_ERROR), 0).is_err() {
            break;
        }
    }
    table.nents = 0;
}

/// Maps a table without an IOMMU, as `dma_direct_map_sg` does: every entry gets
/// `dma_address = phys + dma_offset`, `dma_length = length`, and `nents = orig_nents`.
/// Returns `nents`.
///
/// # Errors
/// Walk and entry errors, [`SgDmaError::IovaOverflow`] when an address passes 2^64,
/// [`SgDmaError::Unwritable`].
pub fn direct_map_sg<M, P>(
    mem: &mut M,
    table: &mut SgTable,
    model: &P,
    dma_offset: u64,
    max_entries: u32,
) -> Result<u32, SgDmaError>
where
    M: MemoryReader<Virt> + MemoryWriter<Virt> + ?Sized,
    P: PageModel + ?Sized,
{
    let mut cur = SgCursor::new(table.sgl, Some(table.orig_nents), max_entries);
    while let Some(e) = cur.step(&*mem)? {
        let phys = entry_phys(model, e.index, &e.entry)?;
        let dma = phys
            .addr()
            .as_u64()
            .checked_add(dma_offset)
            .filter(|d| d.checked_add(phys.len()).is_some() || d.wrapping_add(phys.len()) == 0)
            .ok_or(SgDmaError::IovaOverflow)?;
        write_dma(mem, e.addr.as_u64(), Some(dma), e.entry.length)?;
    }
    table.nents = table.orig_nents;
    Ok(table.nents)
}

crate::error::error_info!(SgDmaError);

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]
mod tests {
    use super::super::export::{export, SgChunk};
    use super::super::import::import_dma;
    use super::super::page::Vmemmap;
    use super::*;
    use crate::{DmaArray, DmaRange, PhysRange, RangeView};

    const VM: Vmemmap = Vmemmap::new(0);

    fn run(
        r: &[PhysRange],
        p: IommuSgParams,
        base: u64,
    ) -> (u64, u32, [Scatterlist; 8], DmaArray<8>) {
        let mut a = [Scatterlist::default(); 8];
        let mut chunks = [SgChunk {
            addr: VirtAddr::new(0x1000),
            entries: &mut a,
        }];
        let mut t = export(&RangeView::full(r).unwrap(), &VM, u32::MAX, &mut chunks)
            .unwrap()
            .table;
        let len = iommu_iova_len(&chunks[..], &t, &VM, p, 64).unwrap();
        let n = iommu_map_sg(
            &mut chunks[..],
            &mut t,
            &VM,
            p,
            DmaAddr::new(base),
            64,
            |_, _, _| true,
        )
        .unwrap();
        let mut out = DmaArray::<8>::new();
        import_dma(&chunks[..], &t, 64, &mut out).unwrap();
        (len, n, a, out)
    }

    #[test]
    fn unaligned_entry_starts_a_new_segment() {
        let p = IommuSgParams {
            granule: PageSize::SIZE_4K,
            seg_boundary_mask: u64::MAX,
            max_seg_size: u32::MAX,
        };
        let r = [
            PhysRange::new(0x10000, 0x1000),
            PhysRange::new(0x20200, 0x200),
        ];
        let (len, n, a, out) = run(&r, p, 0x100000);
        assert_eq!((len, n), (0x2000, 2));
        assert_eq!(
            out.as_slice(),
            [
                DmaRange::new(0x100000, 0x1000),
                DmaRange::new(0x101200, 0x200)
            ]
        );
        assert_eq!(a[1].dma_address, 0x101200);
    }

    #[test]
    fn max_seg_size_and_boundary_stop_merging() {
        let p = IommuSgParams {
            granule: PageSize::SIZE_4K,
            seg_boundary_mask: 0x3fff,
            max_seg_size: 0x2000,
        };
        let r: [PhysRange; 4] =
            core::array::from_fn(|i| PhysRange::new(0x10000 * (i as u64 + 1), 0x1000));
        let (len, n, a, out) = run(&r, p, 0x100000);
        assert_eq!((len, n), (0x4000, 2));
        assert_eq!(
            out.as_slice(),
            [
                DmaRange::new(0x100000, 0x2000),
                DmaRange::new(0x102000, 0x2000)
            ]
        );
        assert_eq!((a[2].dma_address, a[2].dma_length), (DMA_MAPPING_ERROR, 0));
        // Padding: a 0x2000 entry at IOVA 0x3000 would cross 0x4000, so entry 0 is padded.
        let r = [
            PhysRange::new(0x10000, 0x3000),
            PhysRange::new(0x20000, 0x2000),
        ];
        let p = IommuSgParams {
            max_seg_size: 0x4000,
            ..p
        };
        let (len, n, _, out) = run(&r, p, 0x100000);
        assert_eq!((len, n), (0x6000, 2));
        assert_eq!(
            out.as_slice(),
            [
                DmaRange::new(0x100000, 0x3000),
                DmaRange::new(0x104000, 0x2000)
            ]
        );
    }

    #[test]
    fn bad_base_is_rejected() {
        let p = IommuSgParams {
            granule: PageSize::SIZE_4K,
            seg_boundary_mask: 0xffff,
            max_seg_size: u32::MAX,
        };
        let mut a = [Scatterlist::default(); 2];
        let mut chunks = [SgChunk {
            addr: VirtAddr::new(0x1000),
            entries: &mut a,
        }];
        let r = [PhysRange::new(0x10000, 0x2000)];
        let mut t = export(&RangeView::full(&r).unwrap(), &VM, u32::MAX, &mut chunks)
            .unwrap()
            .table;
        let e = iommu_map_sg(
            &mut chunks[..],
            &mut t,
            &VM,
            p,
            DmaAddr::new(0x1f000),
            8,
            |_, _, _| true,
        )
        .unwrap_err();
        assert_eq!(e.kind(), "bad_iova_base");
        let e = iommu_map_sg(
            &mut chunks[..],
            &mut t,
            &VM,
            p,
            DmaAddr::new(0x10000),
            8,
            |_, _, _| false,
        )
        .unwrap_err();
        assert_eq!(e, SgDmaError::MapFailed { index: 0 });
    }

    /// A map failing part-way: every span mapped before it is unmapped (the padding hole
    /// is never touched), every entry is marked, nents is 0; a whole-allocation unmap
    /// through the software IOMMU also handles the hole.
    #[test]
    fn failed_map_unwinds_like_the_kernel() {
        use crate::map::{Attrs, DataDirection, DmaMapper, SoftIommu};
        use std::vec::Vec;
        let p = IommuSgParams {
            granule: PageSize::SIZE_4K,
            seg_boundary_mask: 0x3fff,
            max_seg_size: 0x4000,
        };
        // Entry 0 (0x3000) is padded to 0x4000 before entry 1; entry 2 fails.
        let r = [
            PhysRange::new(0x10000, 0x3000),
            PhysRange::new(0x20000, 0x2000),
            PhysRange::new(0x30000, 0x1000),
        ];
        let mut a = [Scatterlist::default(); 4];
        let mut chunks = [SgChunk {
            addr: VirtAddr::new(0x1000),
            entries: &mut a,
        }];
        let mut t = export(&RangeView::full(&r).unwrap(), &VM, u32::MAX, &mut chunks)
            .unwrap()
            .table;
        let mut log: Vec<(SgOp, u64, u64)> = Vec::new();
        let e = iommu_map_sg(
            &mut chunks[..],
            &mut t,
            &VM,
            p,
            DmaAddr::new(0x10_0000),
            8,
            |op, iova, span| {
                log.push((op, iova.as_u64(), span.len()));
                !(op == SgOp::Map && span.addr().as_u64() == 0x30000)
            },
        )
        .unwrap_err();
        assert_eq!(e, SgDmaError::MapFailed { index: 2 });
        assert_eq!(
            log,
            [
                (SgOp::Map, 0x10_0000, 0x3000),
                (SgOp::Map, 0x10_4000, 0x2000),
                (SgOp::Map, 0x10_6000, 0x1000),
                (SgOp::Unmap, 0x10_0000, 0x3000),
                (SgOp::Unmap, 0x10_4000, 0x2000),
            ]
        );
        assert_eq!(t.nents, 0);
        for s in &a[..3] {
            assert_eq!((s.dma_address, s.dma_length), (DMA_MAPPING_ERROR, 0));
        }

        // The same layout mapped in the software IOMMU, hole at 0x3000..0x4000: tearing
        // the whole allocation down (`destroy`) unmaps both entries and skips the hole.
        let iommu = SoftIommu::new_4k();
        let d = DataDirection::ToDevice;
        let mut space = iommu
            .reserve(crate::PhysAddr::new(0), 0x6000)
            .unwrap()
            .unwrap();
        iommu
            .link(
                &mut space,
                PhysRange::new(0x10000, 0x3000),
                0,
                d,
                Attrs::empty(),
            )
            .unwrap();
        iommu
            .link(
                &mut space,
                PhysRange::new(0x20000, 0x2000),
                0x4000,
                d,
                Attrs::empty(),
            )
            .unwrap();
        assert_eq!(iommu.stats().mapped_bytes, 0x5000);
        iommu.destroy(space, d, Attrs::empty()).unwrap();
        assert_eq!(iommu.stats().mapped_bytes, 0);
    }
}
