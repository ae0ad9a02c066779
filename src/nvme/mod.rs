//! NVMe data pointers: PRP and SGL encoders for drivers, validating decoders for
//! controllers and emulators, and the 64-byte submission queue entry they go into.
//!
//! References: NVM Express Base Specification 1.4 §4.2 (command format, PSDT), §4.3
//! (PRP entries and lists), §4.4 (SGL), §4.6.1.2.1 (generic status codes); in Base 2.x
//! these are §4.1.1, §4.1.2 and §3.3.3.2.1. Behaviour of real drivers and controllers
//! was checked against Linux `drivers/nvme/host/pci.c`, SPDK
//! `lib/nvme/nvme_pcie_common.c` (its unit-test vectors are this module's tests) and
//! QEMU `hw/nvme/ctrl.c`.
//!
//! | file | what |
//! |---|---|
//! | `page.rs` | [`MemoryPageSize`] (CC.MPS, 4 KiB..128 MiB) |
//! | `cmd/` | [`SubmissionQueueEntry`], [`Psdt`], [`DataPointer`] (`mod.rs`); [`opcode`] (`opcode.rs`); the commands by name, [`NamespaceId`], [`LbaRange`], [`CommandError`] (`named.rs`) |
//! | `completion.rs` | [`CompletionQueueEntry`], [`CompletionStatus`] |
//! | `descriptor.rs` | [`SglDescriptor`] (incl. Keyed SGL Data Block), [`SglCapabilities`], [`SglItem`] |
//! | `prp.rs` | [`encode_prp`] (check, then the writer), [`is_prp_compatible`], [`PrpListPage`] |
//! | `prp_stream.rs` | [`PrpWriter`]: PRP entries as DMA ranges arrive; [`map_prp`]: pages → mapping → PRPs in one pass |
//! | `sgl.rs` | [`encode_sgl`] (check, then the writer), [`SglSegmentPage`], [`SglOptions`] |
//! | `sgl_stream.rs` | [`SglWriter`]: SGL descriptors as items arrive; [`map_sgl`]: pages → mapping → SGL in one pass |
//! | `policy.rs` | [`choose_data_pointer`] (Linux `nvme_pci_use_sgls`) |
//! | `decode/` | the device side: [`decode_command`] (`mod.rs`), [`decode_prp`] (`prp.rs`), [`decode_sgl`] (`sgl.rs`), [`DecodeOptions`] (`options.rs`), [`DecodeError`] (`error.rs`), output sinks (`output.rs`) |
//! | `status.rs` | [`NvmeStatus`] |
//! | `queue.rs` | [`SubmissionRing`], [`CompletionRing`], [`QueuePair`], [`Doorbells`]: queue ring logic |
//!
//! ## Driver side
//! ```
//! use physvec::nvme::{encode_prp, LbaRange, MemoryPageSize, NamespaceId, PrpListPage, SubmissionQueueEntry};
//! use physvec::{DmaAddr, DmaRange, RangeView};
//! let ranges = [DmaRange::new(0x10_0800, 0x800), DmaRange::new(0x20_0000, 0x2000)];
//! let view = RangeView::full(&ranges)?;
//! let mut list = [0u64; 512];                          // one page from the driver's DMA pool
//! let pool = [PrpListPage::new(DmaAddr::new(0x8_0000), &mut list)];
//! let prp = encode_prp(view, MemoryPageSize::SIZE_4K, pool)?;
//! let lbas = LbaRange::from_bytes(0, 0x2800, 512)?;     // 10 KiB from LBA 0
//! let sqe = SubmissionQueueEntry::read(NamespaceId::new(1), lbas)
//!     .with_data_pointer(prp.data_pointer());
//! assert_eq!((prp.prp1.as_u64(), prp.prp2.as_u64()), (0x10_0800, 0x8_0000));
//! assert_eq!(&list[..2], &[0x20_0000u64.to_le(), 0x20_1000u64.to_le()]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Device side
//! Decoders treat DPTR and everything they read as hostile: each step is checked
//! arithmetic, work is bounded by [`DecodeOptions::max_descriptors`], SGL segment
//! chains are checked for cycles, and every rejection carries the status a controller
//! returns ([`NvmeStatus`]).
//!
//! ## Strictness and QEMU
//! The decoders are at least as strict as the specification; where QEMU's controller
//! is looser, [`DecodeOptions::qemu_compat`] accepts what QEMU accepts:
//!
//! | input | strict | `qemu_compat` |
//! |---|---|---|
//! | PRP1 not dword aligned | 13h (the spec allows the check) | used as is |
//! | PRP list pointer not qword aligned | 13h | used as is |
//! | Data Block subtype ≠ 0 (Address) | 11h | subtype ignored |
//! | SGL longer than the transfer, SGLS bit 18 clear | 0Fh | a trailing partly used block is accepted |
//! | non-data, non-segment type in DPTR | 11h | 0Dh (QEMU's loop wants a segment) |
//! | non-Data-Block type closing a segment | 11h (or 0Dh for a segment type in a last segment) | 0Dh, checked before the other descriptors |
//!
//! QEMU's `nvme_map_sgl` (`hw/nvme/ctrl.c`; observed on QEMU 7.2, the code is unchanged
//! since) also has a defect: it keeps a pointer into its local segment buffer and, after
//! reading the next segment into that buffer, checks the descriptor that pointed at the
//! current segment through it, so it rejects a
//! **valid** chain with 0Dh when a segment that ends in a Last Segment descriptor has as
//! many descriptors as the segment before it. The decoders here do not copy it, even
//! with `qemu_compat`; the encoder offers [`SglOptions::qemu_chain_workaround`] to avoid
//! the pattern when driving such a controller.

mod cmd;
mod completion;
mod decode;
mod descriptor;
mod page;
mod policy;
mod prp;
mod prp_stream;
mod queue;
mod runs;
mod sgl;
mod sgl_stream;
mod status;

pub use cmd::{
    opcode, CommandError, DataPointer, LbaRange, NamespaceId, Psdt, SubmissionQueueEntry,
};
pub use completion::{CompletionQueueEntry, CompletionStatus};
pub use decode::{
    decode_command, decode_prp, decode_sgl, DataOnly, DataOnlyMark, DecodeError, DecodeOptions,
    DecodeSummary, SglItemSink,
};
pub use descriptor::{
    SglCapabilities, SglDescriptor, SglDescriptorType, SglItem, SGL_SUBTYPE_ADDRESS,
    SGL_SUBTYPE_INVALIDATE_KEY, SGL_SUBTYPE_OFFSET,
};
pub use page::{InvalidPageSize, MemoryPageSize};
pub use policy::{
    choose_data_pointer, DataPointerChoice, DataPointerPolicy, DEFAULT_SGL_THRESHOLD,
};
pub use prp::{
    is_prp_compatible, prp_entries, prp_list_pages_needed, Prp, PrpError, PrpIncompatibility,
    PrpListPage,
};
pub use prp_stream::{encode_prp, map_prp, PrpWriter};
pub use queue::{CompletionRing, Doorbells, QueueError, QueuePair, SubmissionRing, DOORBELL_BASE};
pub use sgl::{
    sgl_descriptors, sgl_segment_pages_needed, Sgl, SglError, SglOptions, SglSegmentPage,
};
pub use sgl_stream::{encode_sgl, map_sgl, SglWriter};
pub use status::NvmeStatus;
