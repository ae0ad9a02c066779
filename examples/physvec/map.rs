//! `map` and the mapping part of the tour.
use crate::cli::{self, CliError};
use physvec::fmt::Bytes;
use physvec::map::{
    self, DataDirection, DirectMapper, DmaMapper, IommuConfig, MapError, SoftIommu,
};
use physvec::{dma_bit_mask, PageSize, PhysRange};
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

fn rejected(e: MapError) -> CliError {
    let err = CliError::rejected(e.kind(), e.to_string());
    match e.index() {
        Some(i) => err.with("at", i),
        None => err,
    }
}

/// The response for one mapper: DMA ranges, `dma_iova_sync` calls, and where the first
/// byte of each input segment landed.
fn respond<M: DmaMapper>(m: &M, phys: &[PhysRange], dir: DataDirection) -> Result<Value, CliError> {
    let mapping = map::map(m, phys, dir).map_err(rejected)?;
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
    mapping.unmap().map_err(rejected)?;
    Ok(out)
}

pub fn map(input: &str) -> Result<Value, CliError> {
    let req: Request = cli::parse(input)?;
    let phys = cli::segments::<physvec::Phys>(&req.segments)?;
    if !(1..=64).contains(&req.dma_mask_bits) {
        return Err(CliError::rejected(
            "invalid_dma_mask",
            format!("dma_mask_bits {} is not in 1..=64", req.dma_mask_bits),
        ));
    }
    let mask = dma_bit_mask(req.dma_mask_bits);
    let dir = req.direction.into();
    match req.mapper {
        MapperKind::Iommu => {
            let granule = PageSize::new(req.granule).map_err(|_| {
                rejected(MapError::InvalidGranule {
                    granule: req.granule,
                })
            })?;
            let iommu =
                SoftIommu::new(IommuConfig::new(granule).with_dma_mask(mask)).map_err(rejected)?;
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
            for d in mapping.dma().iter().take(4) {
                println!("    dma {:#014x}  {}", d.addr().as_u64(), Bytes(d.len()));
            }
            if mapping.dma().len() > 4 {
                println!("    ... {} more", mapping.dma().len() - 4);
            }
            if let Err(e) = mapping.unmap() {
                println!("    unmap failed: {e}");
            }
        }
        Err(e) => println!("  {name}: {} ({e})", e.kind()),
    }
}

pub fn tour() {
    println!("== Mapping: two-step DMA through a software IOMMU vs. direct mapping ==");
    // A real buffer of this process: 64 KiB starting 0x300 bytes into a page.
    let mut buf = vec![0u8; 17 * 4096];
    for b in buf.iter_mut().step_by(1024) {
        *b = 0xa5; // make every page resident
    }
    let window = &buf[0x300..0x300 + 64 * 1024];
    let phys: Vec<PhysRange> = match map::pagemap::translate_buf(window) {
        Ok(p) => p.to_vec(),
        Err(e) => {
            println!(
                "  pagemap: {} ({e}); using a made-up scattered buffer instead",
                e.kind()
            );
            (0..16u64)
                .map(|i| PhysRange::new(0x1_0000_0000 + i * 0x3_0000, 0x1000))
                .collect()
        }
    };
    println!(
        "  buffer at virtual {:#x}, {} -> {} physical segment(s) (pagemap)",
        window.as_ptr() as u64,
        Bytes(phys.iter().map(|r| r.len()).sum()),
        phys.len()
    );
    for r in phys.iter().take(4) {
        println!("    phys {:#014x}  {}", r.addr().as_u64(), Bytes(r.len()));
    }
    if phys.len() > 4 {
        println!("    ... {} more", phys.len() - 4);
    }
    let iommu = SoftIommu::new_4k();
    show("software IOMMU (4 KiB granule)", &iommu, &phys, || {
        let s = iommu.stats();
        format!(
            ", {} IOTLB sync(s), {} I/O page-table node(s)",
            s.iotlb_syncs, s.tables
        )
    });
    let s = iommu.stats();
    println!(
        "    after unmap: {} mapped, {} IOTLB invalidation(s), IOVA space whole again: {}",
        Bytes(s.mapped_bytes),
        s.iotlb_invalidations,
        iommu.is_idle()
    );
    show(
        "direct (dma = phys)",
        &DirectMapper::new(0, u64::MAX),
        &phys,
        String::new,
    );
    println!("  The IOMMU links every page into one contiguous IOVA range (one descriptor, one");
    println!("  sync); the direct mapper hands the device one DMA range per physical segment.\n");
}
