//! The device side: a virtual-machine monitor emulating an NVMe controller reads a
//! guest's submission queue entry, decodes its PRP or SGL data pointer from guest memory
//! into ranges, and copies the data — then rejects a malformed command with the status a
//! real controller would return.
//!
//! ```text
//! cargo run --example vmm_decode
//! ```
//!
//! Guest memory is a [`SparseMemory`] (a few byte arrays at guest-physical addresses);
//! a real VMM implements [`MemoryReader`] over its guest RAM mapping. Every structure the
//! guest wrote is untrusted: the decoders do bounded, checked work and never panic.
//! The example asserts its own results: running it is a test (CI runs it).

use physvec::fmt::Bytes;
use physvec::mem::{MemoryReader, MemoryWriter, SparseMemory};
use physvec::nvme::{
    decode_command, encode_prp, encode_sgl, DecodeOptions, MemoryPageSize, NvmeStatus, PrpListPage,
    SglCapabilities, SglDescriptor, SglItem, SglOptions, SglSegmentPage, SubmissionQueueEntry,
};
use physvec::{DmaAddr, DmaRange};

const OPC_WRITE: u8 = 0x01;
const OPC_READ: u8 = 0x02;
const LBA: u64 = 512;
const SQ_BASE: u64 = 0x7000_0000; // the guest's I/O submission queue

/// The emulated namespace: a flat byte array.
struct Disk(Vec<u8>);

/// What the VMM's command loop does with one submission queue slot. Returns the status
/// to post in the completion queue entry.
fn process(
    guest: &mut SparseMemory,
    disk: &mut Disk,
    slot: u64,
    opts: &DecodeOptions,
) -> NvmeStatus {
    // 1. Fetch the 64-byte command from the queue in guest memory.
    let mut raw = [0u8; 64];
    if guest
        .read(physvec::DmaAddr::new(SQ_BASE + slot * 64), &mut raw)
        .is_err()
    {
        return NvmeStatus::DATA_TRANSFER_ERROR;
    }
    let sqe = SubmissionQueueEntry::from_bytes(raw);
    let slba = u64::from(sqe.cdw10()) | u64::from(sqe.cdw11()) << 32;
    let nlb = u64::from(sqe.cdw12() & 0xffff) + 1;
    let len = nlb * LBA;
    println!(
        "  SQ slot {slot}: opcode {:#04x} cid {} psdt {:?} slba {slba} nlb {nlb} ({})",
        sqe.opcode(),
        sqe.cid(),
        sqe.psdt(),
        Bytes(len)
    );
    // 2. Decode DPTR (PRP or SGL by PSDT) into ranges of guest memory. The output is a
    //    Vec here; an allocation-free VMM passes an ArrayVec or DataOnly<DmaArray<N>>.
    let mut items: Vec<SglItem> = Vec::new();
    let summary = match decode_command(&sqe, len, MemoryPageSize::SIZE_4K, guest, &mut items, opts)
    {
        Ok(s) => s,
        Err(e) => {
            println!(
                "    rejected: {e}\n    -> completion status {:#05x} ({}), kind {}, at {}",
                e.nvme_status().raw(),
                e.nvme_status().name(),
                e.kind(),
                e.at().map_or("DPTR".to_string(), |a| format!("{a:#x}"))
            );
            return e.nvme_status();
        }
    };
    println!(
        "    decoded {} item(s) after reading {} descriptor(s) in {} list page(s)/segment(s):",
        items.len(),
        summary.descriptors_read,
        summary.segments
    );
    for it in &items {
        match it {
            SglItem::Data(r) => println!("      data   {r}"),
            SglItem::BitBucket(l) => println!("      bucket {} (discarded)", Bytes(*l)),
        }
    }
    // 3. Move the data between guest memory and the disk, range by range.
    let mut pos = (slba * LBA) as usize;
    for it in &items {
        let n = it.len() as usize;
        match (*it, sqe.opcode()) {
            (SglItem::Data(r), OPC_WRITE) => {
                if guest.read(r.addr(), &mut disk.0[pos..pos + n]).is_err() {
                    return NvmeStatus::DATA_TRANSFER_ERROR;
                }
            }
            (SglItem::Data(r), OPC_READ) => {
                if guest.write(r.addr(), &disk.0[pos..pos + n]).is_err() {
                    return NvmeStatus::DATA_TRANSFER_ERROR;
                }
            }
            (SglItem::BitBucket(_), OPC_READ) => {} // the guest does not want these bytes
            _ => return NvmeStatus::INVALID_FIELD,
        }
        pos += n;
    }
    NvmeStatus::SUCCESS
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mps = MemoryPageSize::SIZE_4K;
    let mut guest = SparseMemory::new();
    let mut disk = Disk(vec![0; 1 << 20]);
    guest.add_zeroed(physvec::DmaAddr::new(SQ_BASE), 4096);

    // ---- What the guest's driver did (normally inside the guest) ----
    // A 10 KiB write buffer scattered over three guest pages, the first half-used.
    let pages = [0x10_0800u64, 0x23_0000, 0x41_0000];
    let lens = [0x800u64, 0x1000, 0x1000];
    let mut pattern = Vec::new();
    for (i, (&a, &l)) in pages.iter().zip(&lens).enumerate() {
        let bytes: Vec<u8> = (0..l).map(|b| (b as u8) ^ (i as u8 * 0x40)).collect();
        pattern.extend_from_slice(&bytes);
        guest.add(physvec::DmaAddr::new(a), bytes);
    }
    let ranges: Vec<DmaRange> = pages
        .iter()
        .zip(&lens)
        .map(|(&a, &l)| DmaRange::new(a, l))
        .collect();
    let mut list = [0u64; 512];
    let prp = encode_prp(
        ranges.iter().copied(),
        mps,
        [PrpListPage::new(DmaAddr::new(0x50_0000), &mut list)],
    )?;
    guest.add(
        physvec::DmaAddr::new(0x50_0000),
        bytemuck::cast_slice(&list).to_vec(),
    );
    let mut write = SubmissionQueueEntry::new(OPC_WRITE);
    write.set_cid(1);
    write.set_nsid(1);
    write.set_cdw10(8); // SLBA 8
    write.set_cdw12((pattern.len() as u64 / LBA - 1) as u32);
    write.set_data_pointer(prp.data_pointer());
    guest.write(physvec::DmaAddr::new(SQ_BASE), bytemuck::bytes_of(&write))?;

    // A read of the same blocks back through an SGL: the first 512 bytes to a bit
    // bucket, the rest into two fresh guest buffers.
    guest.add_zeroed(physvec::DmaAddr::new(0x60_0000), 0x1000);
    guest.add_zeroed(physvec::DmaAddr::new(0x61_0000), 0x2000);
    let read_items = [
        SglItem::BitBucket(0x200),
        SglItem::Data(DmaRange::new(0x60_0000, 0xe00)),
        SglItem::Data(DmaRange::new(0x61_0000, 0x1800)),
    ];
    let mut seg = [SglDescriptor::default(); 4];
    let sgl = encode_sgl(
        read_items.iter().copied(),
        SglOptions::default(),
        [SglSegmentPage::new(DmaAddr::new(0x52_0000), &mut seg)],
    )?;
    guest.add(
        physvec::DmaAddr::new(0x52_0000),
        bytemuck::cast_slice(&seg).to_vec(),
    );
    let mut read = SubmissionQueueEntry::new(OPC_READ);
    read.set_cid(2);
    read.set_nsid(1);
    read.set_cdw10(8);
    read.set_cdw12((pattern.len() as u64 / LBA - 1) as u32);
    read.set_data_pointer(sgl.data_pointer());
    guest.write(
        physvec::DmaAddr::new(SQ_BASE + 64),
        bytemuck::bytes_of(&read),
    )?;

    // A buggy (or hostile) guest: PRP2 points into the middle of a page while more
    // than one page of data remains, so it must be a page-aligned list pointer.
    let mut bad = write;
    bad.set_cid(3);
    bad.set_data_pointer(physvec::nvme::DataPointer::Prp {
        prp1: 0x10_0800,
        prp2: 0x50_0010 + 4,
    });
    guest.write(
        physvec::DmaAddr::new(SQ_BASE + 128),
        bytemuck::bytes_of(&bad),
    )?;

    // And an SGL whose segment points at itself: loop detection, bounded work.
    let self_loop = [
        SglDescriptor::data_block(DmaAddr::new(0x60_0000), 0x200),
        SglDescriptor::segment(DmaAddr::new(0x53_0000), 32),
    ];
    guest.add(
        physvec::DmaAddr::new(0x53_0000),
        bytemuck::cast_slice(&self_loop).to_vec(),
    );
    let mut looping = read;
    looping.set_cid(4);
    looping.set_data_pointer(physvec::nvme::DataPointer::Sgl(SglDescriptor::segment(
        DmaAddr::new(0x53_0000),
        32,
    )));
    guest.write(
        physvec::DmaAddr::new(SQ_BASE + 192),
        bytemuck::bytes_of(&looping),
    )?;

    // ---- The VMM ----
    // The controller advertises SGL support with bit buckets (SGLS bits 0 and 16).
    let opts = DecodeOptions::default().with_sgls(SglCapabilities::from_raw(0x1 | 1 << 16));
    println!("VMM: processing 4 commands from the guest's submission queue at {SQ_BASE:#x}");
    let statuses: Vec<NvmeStatus> = (0..4)
        .map(|slot| process(&mut guest, &mut disk, slot, &opts))
        .collect();

    // The write landed on the disk byte for byte.
    assert_eq!(statuses[0], NvmeStatus::SUCCESS);
    assert_eq!(&disk.0[8 * 512..8 * 512 + pattern.len()], &pattern[..]);
    // The read put bytes 0x200.. of the same blocks into the guest's two buffers.
    assert_eq!(statuses[1], NvmeStatus::SUCCESS);
    let mut back = vec![0u8; 0x2600];
    guest.read(physvec::DmaAddr::new(0x60_0000), &mut back[..0xe00])?;
    guest.read(physvec::DmaAddr::new(0x61_0000), &mut back[0xe00..])?;
    assert_eq!(&back[..], &pattern[0x200..]);
    // The malformed commands completed with the spec's statuses, nothing copied.
    assert_eq!(statuses[2], NvmeStatus::PRP_OFFSET_INVALID);
    assert_eq!(statuses[3], NvmeStatus::INVALID_SGL_SEGMENT_DESCRIPTOR);
    println!(
        "completion DW3 status for slot 2: {:#010x} (SCT 0, SC 13h, DNR)",
        statuses[2].cqe_dw3_status(true)
    );
    println!("\nvmm_decode: all checks passed");
    Ok(())
}
