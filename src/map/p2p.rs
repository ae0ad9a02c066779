//! PCI peer-to-peer DMA: which kind of mapping a physical range needs
//! (`enum pci_p2pdma_map_type`, `include/linux/pci-p2pdma.h`).
//!
//! The generic [`map_into`](super::map_into) asks a [`P2pClassifier`] for every range,
//! takes the kind of range 0 for the whole I/O (ranges of another kind are refused with
//! [`MapError::MixedP2p`](super::MapError::MixedP2p)), and then:
//! - [`P2pMapType::None`]: ordinary memory, mapped through the mapper;
//! - [`P2pMapType::ThruHostBridge`]: mapped through the mapper with
//!   [`Attrs::MMIO`](super::Attrs::MMIO);
//! - [`P2pMapType::BusAddr`]: `dma = phys + bus_offset`, the mapper is bypassed and
//!   nothing needs unmapping (the peers talk through a PCIe switch);
//! - [`P2pMapType::NotSupported`]: refused with
//!   [`MapError::P2pNotSupported`](super::MapError::P2pNotSupported).

#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

use crate::range::PhysRange;

/// How a range reaches the device (`PCI_P2PDMA_MAP_*`).
///
/// ```
/// use physvec::map::P2pMapType;
/// assert!(P2pMapType::BusAddr { bus_offset: 1 }.same_kind(P2pMapType::BusAddr { bus_offset: 2 }));
/// assert!(!P2pMapType::None.same_kind(P2pMapType::ThruHostBridge));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum P2pMapType {
    /// Not peer memory (`PCI_P2PDMA_MAP_NONE`).
    #[default]
    None,
    /// Peer memory behind a switch: program the PCI bus address `phys + bus_offset`
    /// (`PCI_P2PDMA_MAP_BUS_ADDR`). `bus_offset` wraps (two's complement) so providers
    /// whose BAR lies below its CPU address can use it.
    BusAddr {
        /// `bus address - CPU physical address` of the provider's BAR, modulo 2^64.
        bus_offset: u64,
    },
    /// Peer memory through an allow-listed host bridge: map as usual with `MMIO`
    /// (`PCI_P2PDMA_MAP_THRU_HOST_BRIDGE`).
    ThruHostBridge,
    /// The device cannot reach this peer memory (`PCI_P2PDMA_MAP_NOT_SUPPORTED`).
    NotSupported,
}

impl P2pMapType {
    /// Whether `self` and `other` are the same kind (bus offsets may differ).
    pub const fn same_kind(self, other: P2pMapType) -> bool {
        matches!(
            (self, other),
            (P2pMapType::None, P2pMapType::None)
                | (P2pMapType::BusAddr { .. }, P2pMapType::BusAddr { .. })
                | (P2pMapType::ThruHostBridge, P2pMapType::ThruHostBridge)
                | (P2pMapType::NotSupported, P2pMapType::NotSupported)
        )
    }

    /// Stable snake_case name (`none`, `bus_addr`, `thru_host_bridge`, `not_supported`).
    pub const fn as_str(self) -> &'static str {
        match self {
            P2pMapType::None => "none",
            P2pMapType::BusAddr { .. } => "bus_addr",
            P2pMapType::ThruHostBridge => "thru_host_bridge",
            P2pMapType::NotSupported => "not_supported",
        }
    }
}

/// Decides the [`P2pMapType`] of each physical range for one device (the kernel's
/// `pci_p2pdma_state()` / `pci_p2pdma_map_type(provider, dev)`).
pub trait P2pClassifier {
    /// The map type of `phys` for the device doing the I/O.
    fn map_type(&self, phys: PhysRange) -> P2pMapType;
}

/// The classifier for systems without peer memory: every range is
/// [`P2pMapType::None`].
///
/// ```
/// use physvec::map::{NoP2p, P2pClassifier, P2pMapType};
/// assert_eq!(NoP2p.map_type(physvec::PhysRange::new(0, 1)), P2pMapType::None);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct NoP2p;

impl P2pClassifier for NoP2p {
    #[inline]
    fn map_type(&self, _phys: PhysRange) -> P2pMapType {
        P2pMapType::None
    }
}

/// One provider's memory (a BAR) and how the device reaches it
/// (`struct p2pdma_provider` plus the result of `pci_p2pdma_map_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct P2pRegion {
    /// CPU physical range of the provider's memory.
    pub bar: PhysRange,
    /// How the device doing the I/O reaches it.
    pub map: P2pMapType,
}

/// A table of providers: a range inside a region gets that region's type, a range
/// outside every region is RAM ([`P2pMapType::None`]), and a range straddling a region
/// boundary is [`P2pMapType::NotSupported`]. Never allocates.
///
/// ```
/// use physvec::map::{P2pClassifier, P2pMapType, P2pProviders, P2pRegion};
/// use physvec::PhysRange;
/// let regions = [P2pRegion {
///     bar: PhysRange::new(0xf000_0000, 0x10_0000),
///     map: P2pMapType::BusAddr { bus_offset: 0x1000_0000 },
/// }];
/// let p = P2pProviders::new(&regions);
/// assert_eq!(p.map_type(PhysRange::new(0xf000_1000, 0x1000)), P2pMapType::BusAddr { bus_offset: 0x1000_0000 });
/// assert_eq!(p.map_type(PhysRange::new(0x1000, 0x1000)), P2pMapType::None);
/// assert_eq!(p.map_type(PhysRange::new(0xeff0_0000, 0x20_0000)), P2pMapType::NotSupported);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct P2pProviders<'a> {
    regions: &'a [P2pRegion],
    /// The lowest first byte and highest last byte of all regions: a range outside
    /// `[lo, hi]` is RAM without looking at any region (the common case).
    lo: u64,
    hi: u64,
}

impl<'a> P2pProviders<'a> {
    /// A classifier over `regions`.
    pub const fn new(regions: &'a [P2pRegion]) -> Self {
        let (mut lo, mut hi) = (u64::MAX, 0u64);
        // A `const fn` cannot use iterators: walk the slice by splitting off its head.
        let mut rest = regions;
        while let [first, tail @ ..] = rest {
            let bar = first.bar;
            if bar.addr().as_u64() < lo {
                lo = bar.addr().as_u64();
            }
            if bar.last().as_u64() > hi {
                hi = bar.last().as_u64();
            }
            rest = tail;
        }
        Self { regions, lo, hi }
    }
}

impl P2pClassifier for P2pProviders<'_> {
    #[inline]
    fn map_type(&self, phys: PhysRange) -> P2pMapType {
        // No region at all, or the range lies wholly below or above every region.
        if phys.last().as_u64() < self.lo || phys.addr().as_u64() > self.hi {
            return P2pMapType::None;
        }
        for r in self.regions {
            // Most ranges are RAM: one overlap test rejects a region.
            if r.bar.overlaps(phys) {
                return if r.bar.contains_range(phys) {
                    r.map
                } else {
                    P2pMapType::NotSupported
                };
            }
        }
        P2pMapType::None
    }
}

impl<C: P2pClassifier + ?Sized> P2pClassifier for &C {
    fn map_type(&self, phys: PhysRange) -> P2pMapType {
        (**self).map_type(phys)
    }
}
