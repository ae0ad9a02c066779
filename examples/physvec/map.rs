//! `map` and the mapping part of the tour.
use crate::cli::{self, CliError};
use crate::tour::{self, size};
use physvec::dma_buf::{DmaBuffer, HugePages};
use physvec::map::{
    self, DataDirection, DirectMapper, DmaMapper, IommuConfig, MapError, SoftIommu,
};
use physvec::{DmaMask, PageSize, PhysRange};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum MapperKind {
    Iommu,
    Direct,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    ToDevice,
    FromDevice,
    Bidirectional,
}

impl From<Direction> for DataDirection {
    fn from(d: Direction) -> Self {
        match d {
            Direction::ToDevice => DataDirection::ToDevice,
            Direction::FromDevice => DataDirection::FromDevice,
            Direction::Bidirectional => DataDirection::Bidirectional,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    mapper: MapperKind,
    segments: Vec<[u64; 2]>,
    #[serde(default = "default_granule")]
    granule: u64,
    #[serde(default)]
    dma_offset: u64,
    #[serde(default = "default_mask_bits")]
    dma_mask_bits: u32,
    direction: Direction,
}

fn default_granule() -> u64 {
    4096
}

fn default_mask_bits() -> u32 {
    64
}

/// The response for one mapper: DMA ranges, `dma_iova_sync` calls, and where the first
/// byte of each input segment landed.
fn respond<M: DmaMapper>(m: &M, phys: &[PhysRange], dir: DataDirection) -> Result<Value, CliError> {
    let mapping = map::map(m, phys, dir)?;
    let mut off = 0u64;
    let mut translations = Vec::with_capacity(phys.len());
    for r in phys {
        let dma = mapping
            .dma_addr_at(off)
            .ok_or_else(|| CliError::rejected("internal", "mapping shorter than input"))?;
        translations.push(json!([dma.as_u64(), r.addr().as_u64()]));
        off += r.len();
    }
    let out = json!({
        "dma": cli::segments_json(mapping.dma()),
        "iova_syncs": mapping.iova_syncs(),
        "translations": translations,
    });
    mapping.unmap()?;
    Ok(out)
}

pub fn map(input: &str) -> Result<Value, CliError> {
    let req: Request = cli::parse(input)?;
    let phys = cli::segments::<physvec::Phys>(&req.segments)?;
    let mask = DmaMask::bits(req.dma_mask_bits).map_err(|_| {
        CliError::rejected(
            "invalid_dma_mask",
            format!("dma_mask_bits {} is not in 1..=64", req.dma_mask_bits),
        )
    })?;
    let dir = req.direction.into();
    match req.mapper {
        MapperKind::Iommu => {
            let granule = PageSize::new(req.granule).map_err(|_| {
                CliError::from(MapError::InvalidGranule {
                    granule: req.granule,
                })
            })?;
            let iommu = SoftIommu::new(IommuConfig::new(granule).with_dma_mask(mask))?;
            respond(&iommu, &phys, dir)
        }
        MapperKind::Direct => respond(&DirectMapper::new(req.dma_offset, mask), &phys, dir),
    }
}

fn show<M: DmaMapper>(name: &str, m: &M, phys: &[PhysRange], extra: impl Fn() -> String) {
    match map::map(m, phys, DataDirection::FromDevice) {
        Ok(mapping) => {
            println!(
                "  {name}: {} DMA segment(s), {} dma_iova_sync call(s){}",
                mapping.dma().len(),
                mapping.iova_syncs(),
                extra()
            );
            for d in mapping.dma() {
                println!("    dma {}", tour::range(*d));
            }
            if let Err(e) = mapping.unmap() {
                println!("    unmap failed: {e}");
            }
        }
        Err(e) => println!("  {name}: {} ({e})", e.kind()),
    }
}

pub fn tour() {
    println!("A device sees DMA addresses, not physical ones. Behind an IOMMU the driver reserves");
    println!("one range of I/O virtual addresses (IOVA) for the whole transfer, links each");
    println!("physical range into it and flushes the IOMMU's TLB once (the two-step API);");
    println!("without an IOMMU, DMA address = physical address (direct mapping).");
    // A real buffer of this process: locked, pre-faulted, 4 KiB pages on purpose (a
    // hugepage would be one physical range). The I/O is 64 KiB starting 0x300 into it.
    let (off, len) = (0x300usize, 64 * 1024usize);
    let buf = DmaBuffer::with_huge_pages(17 * 4096, HugePages::Never);
    let real = match &buf {
        Ok(b) => b.phys_window(off, len).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let (phys, real): (Vec<PhysRange>, bool) = match real {
        Ok(p) => {
            let b = buf.as_ref().map(|b| b.vaddr()).unwrap_or(0);
            println!(
                "  the I/O: {} at virtual {:#x} in a locked DmaBuffer of 4 KiB pages,",
                size(len as u64),
                b + off as u64
            );
            println!(
                "  translated through /proc/self/pagemap (real physical pages of this process):"
            );
            (p.to_vec(), true)
        }
        Err(e) => {
            println!("  pagemap cannot translate here: {e}");
            println!(
                "  so the physical pages below are MADE UP (16 pages scattered 192 KiB apart):"
            );
            let made_up = (0..16u64)
                .map(|i| PhysRange::new(0x1_0000_0000 + i * 0x3_0000, 0x1000))
                .collect();
            (made_up, false)
        }
    };
    for r in &phys {
        println!("    phys {}", tour::range(*r));
    }
    let pages_touched = if real { (off + len - 1) / 4096 + 1 } else { 16 };
    if real {
        tour::why(&format!(
            "64 KiB starting 0x300 into a page touches {pages_touched} pages; pages whose frames are \
             physically adjacent merge, so {pages_touched} pages -> {} physical range(s).",
            phys.len()
        ));
    }
    tour::why("4 KiB pages are used here on purpose, to show the scatter: DmaBuffer::new prefers");
    tour::why("2 MiB hugepages, and then a whole I/O of up to 2 MiB is one physical range.");
    let iommu = SoftIommu::new_4k();
    show("software IOMMU (4 KiB granule)", &iommu, &phys, || {
        let s = iommu.stats();
        format!(
            ", {} IOTLB sync(s), {} I/O page-table node(s)",
            s.iotlb_syncs, s.tables
        )
    });
    tour::why(&format!(
        "every range but the first starts on a 4 KiB boundary and every range but the last \
         ends on one, so all {} link into one contiguous IOVA range: 1 DMA segment.",
        phys.len()
    ));
    let first_off = phys.first().map_or(0, |r| r.addr().as_u64() & 0xfff);
    tour::why(&format!(
        "the IOVA keeps the data's offset inside its first page ({first_off:#x}), and the IOVA \
         allocator never hands out address 0, so the range starts at 0x1000 + {first_off:#x}."
    ));
    tour::why("page-table nodes: the IOMMU's radix table needs one node per level on the way");
    tour::why("to these leaves (the same as a CPU page table); IOTLB sync = one TLB flush.");
    let s = iommu.stats();
    println!(
        "    after unmap: {} mapped, {} IOTLB invalidation(s), IOVA space whole again: {}",
        size(s.mapped_bytes),
        s.iotlb_invalidations,
        iommu.is_idle()
    );
    show(
        "direct (dma = phys)",
        &DirectMapper::new(0, physvec::DmaMask::BITS_64),
        &phys,
        String::new,
    );
    tour::why(
        "without an IOMMU nothing can join scattered pages: one DMA segment per physical range.",
    );
    println!();
}
