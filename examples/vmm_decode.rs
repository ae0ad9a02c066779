//! The device side: a virtual-machine monitor emulating an NVMe controller reads a
//! guest's submission queue entry, decodes its PRP or SGL data pointer from guest memory
//! into ranges, copies the data, and posts a completion queue entry — then rejects
//! malformed commands with the status a real controller would return.
//!
//! ```text
//! cargo run --features vm-memory --example vmm_decode
//! ```
//!
//! Guest RAM is a rust-vmm `GuestMemoryMmap`, as in Firecracker or Cloud Hypervisor;
//! [`GuestMem`] makes it the [`MemoryReader`] / [`MemoryWriter`] the decoders read
//! through. Every structure the guest wrote is untrusted: the decoders do bounded,
//! checked work and never panic, and a read outside guest RAM becomes Data Transfer
//! Error. The example asserts its own results: running it is a test (CI runs it).

use physvec::fmt::Bytes as Size;
use physvec::mem::{MemoryReader, MemoryWriter};
use physvec::nvme::{
    decode_command, encode_prp, encode_sgl, opcode, CompletionQueueEntry, CompletionStatus,
    DataPointer, DecodeOptions, LbaRange, MemoryPageSize, NamespaceId, NvmeStatus, PrpListPage,
    SglCapabilities, SglDescriptor, SglItem, SglOptions, SglSegmentPage, SubmissionQueueEntry,
};
use physvec::vm_memory::GuestMem;
use physvec::{DmaAddr, DmaRange};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const LBA: u32 = 512;
const SQ_BASE: u64 = 0x7000_0000; // the guest's I/O submission queue (64-byte entries)
const CQ_BASE: u64 = 0x7000_1000; // its completion queue (16-byte entries)
const SQ_ID: u16 = 1;

/// The emulated namespace: a flat byte array.
struct Disk(Vec<u8>);

/// What the VMM's command loop does with one submission queue slot: decode, move the
/// data, and return the status to post in the completion queue entry.
fn process(
    guest: &mut GuestMem<'_, GuestMemoryMmap>,
    disk: &mut Disk,
    sqe: &SubmissionQueueEntry,
    opts: &DecodeOptions,
) -> CompletionStatus {
    let failed = |s: NvmeStatus| CompletionStatus::new(s).with_dnr(true);
    println!("  SQE {sqe}");
    let Some(lbas) = sqe.lba_range() else {
        return failed(NvmeStatus::INVALID_FIELD);
    };
    let len = lbas.byte_len(LBA);
    println!(
        "    {} of {} ({lbas})",
        opcode::io::name(sqe.opcode()).unwrap_or("?"),
        Size(len)
    );
    // 1. Decode DPTR (PRP or SGL by PSDT) into ranges of guest memory. The output is a
    //    Vec here; an allocation-free VMM passes an ArrayVec or DataOnly<DmaArray<N>>.
    let mut items: Vec<SglItem> = Vec::new();
    let summary = match decode_command(sqe, len, MemoryPageSize::SIZE_4K, &*guest, &mut items, opts)
    {
        Ok(s) => s,
        Err(e) => {
            let at = e.at().map_or("DPTR".to_string(), |a| format!("{a:#x}"));
            println!("    rejected: {e} (kind {}, at {at})", e.kind());
            return failed(e.nvme_status());
        }
    };
    println!(
        "    decoded {} item(s) after reading {} descriptor(s) in {} list page(s)/segment(s):",
        items.len(),
        summary.descriptors_read,
        summary.segments
    );
    // 2. Move the data between guest memory and the disk, range by range.
    let mut pos = (lbas.slba() * u64::from(LBA)) as usize;
    for it in &items {
        let n = it.len() as usize;
        let Some(disk_bytes) = disk.0.get_mut(pos..pos + n) else {
            return failed(NvmeStatus::INVALID_FIELD); // LBA out of range (simplified)
        };
        let moved = match (*it, sqe.opcode()) {
            (SglItem::Data(r), opcode::io::WRITE) => guest.read(r.addr(), disk_bytes),
            (SglItem::Data(r), opcode::io::READ) => guest.write(r.addr(), disk_bytes),
            (SglItem::BitBucket(_), opcode::io::READ) => Ok(()), // the guest drops these bytes
            _ => return failed(NvmeStatus::INVALID_FIELD),
        };
        match it {
            SglItem::Data(r) => println!("      data   {r}"),
            SglItem::BitBucket(l) => println!("      bucket {} (discarded)", Size(*l)),
        }
        if moved.is_err() {
            return CompletionStatus::new(NvmeStatus::DATA_TRANSFER_ERROR);
        }
        pos += n;
    }
    CompletionStatus::SUCCESS
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mps = MemoryPageSize::SIZE_4K;
    // Guest RAM: 8 MiB at 0, and one page each for the queues.
    let ram = GuestMemoryMmap::<()>::from_ranges(&[
        (GuestAddress(0), 8 << 20),
        (GuestAddress(SQ_BASE), 0x1000),
        (GuestAddress(CQ_BASE), 0x1000),
    ])?;
    let mut disk = Disk(vec![0; 1 << 20]);
    let ns = NamespaceId::new(1);

    // ---- What the guest's driver did (normally inside the guest) ----
    // A 10 KiB write buffer scattered over three guest pages, the first half-used.
    let pages = [0x10_0800u64, 0x23_0000, 0x41_0000];
    let lens = [0x800u64, 0x1000, 0x1000];
    let mut pattern = Vec::new();
    for (i, (&a, &l)) in pages.iter().zip(&lens).enumerate() {
        let bytes: Vec<u8> = (0..l).map(|b| (b as u8) ^ (i as u8 * 0x40)).collect();
        ram.write_slice(&bytes, GuestAddress(a))?;
        pattern.extend_from_slice(&bytes);
    }
    let ranges: Vec<DmaRange> = pages
        .iter()
        .zip(&lens)
        .map(|(&a, &l)| DmaRange::new(a, l))
        .collect();
    let mut list = [0u64; 512];
    let prp = encode_prp(
        &ranges,
        mps,
        [PrpListPage::new(DmaAddr::new(0x50_0000), &mut list)],
    )?;
    ram.write_slice(bytemuck::cast_slice(&list), GuestAddress(0x50_0000))?;
    let lbas = LbaRange::from_bytes(8 * 512, pattern.len() as u64, LBA)?; // at LBA 8
    let write = SubmissionQueueEntry::write(ns, lbas)
        .with_cid(1)
        .with_data_pointer(prp.data_pointer());

    // A read of the same blocks back through an SGL: the first 512 bytes to a bit
    // bucket, the rest into two fresh guest buffers.
    let read_items = [
        SglItem::BitBucket(0x200),
        SglItem::Data(DmaRange::new(0x60_0000, 0xe00)),
        SglItem::Data(DmaRange::new(0x61_0000, 0x1800)),
    ];
    let mut seg = [SglDescriptor::default(); 4];
    let sgl = encode_sgl(
        read_items,
        SglOptions::default(),
        [SglSegmentPage::new(DmaAddr::new(0x52_0000), &mut seg)],
    )?;
    ram.write_slice(bytemuck::cast_slice(&seg), GuestAddress(0x52_0000))?;
    let read = SubmissionQueueEntry::read(ns, lbas)
        .with_cid(2)
        .with_data_pointer(sgl.data_pointer());

    // A buggy (or hostile) guest: PRP2 points into the middle of a page while more
    // than one page of data remains, so it must be a page-aligned list pointer.
    let bad = write.with_cid(3).with_data_pointer(DataPointer::Prp {
        prp1: physvec::DmaAddr::new(0x10_0800),
        prp2: physvec::DmaAddr::new(0x50_0014),
    });

    // An SGL whose segment points at itself: loop detection, bounded work.
    let self_loop = [
        SglDescriptor::data_block(DmaAddr::new(0x60_0000), 0x200),
        SglDescriptor::segment(DmaAddr::new(0x53_0000), 32),
    ];
    ram.write_slice(bytemuck::cast_slice(&self_loop), GuestAddress(0x53_0000))?;
    let looping = read
        .with_cid(4)
        .with_data_pointer(DataPointer::Sgl(SglDescriptor::segment(
            DmaAddr::new(0x53_0000),
            32,
        )));

    // And a PRP list outside guest RAM (at 16 MiB): a Data Transfer Error.
    let outside = write.with_cid(5).with_data_pointer(DataPointer::Prp {
        prp1: physvec::DmaAddr::new(0x10_0800),
        prp2: physvec::DmaAddr::new(0x100_0000),
    });

    let commands = [write, read, bad, looping, outside];
    for (slot, sqe) in commands.iter().enumerate() {
        ram.write_slice(
            bytemuck::bytes_of(sqe),
            GuestAddress(SQ_BASE + slot as u64 * 64),
        )?;
    }

    // ---- The VMM ----
    // The controller advertises SGL support with bit buckets (SGLS bits 0 and 16).
    let opts = DecodeOptions::default().with_sgls(SglCapabilities::from_raw(0x1 | 1 << 16));
    let mut guest = GuestMem::new(&ram);
    println!(
        "VMM: processing {} commands from the guest's submission queue at {SQ_BASE:#x}",
        commands.len()
    );
    let mut statuses = Vec::new();
    for slot in 0..commands.len() as u16 {
        // Fetch the 64-byte command from guest memory, process it, post the completion
        // (phase 1 on the queue's first pass) at the completion queue tail.
        let mut raw = [0u8; 64];
        guest.read(DmaAddr::new(SQ_BASE + u64::from(slot) * 64), &mut raw)?;
        let sqe = SubmissionQueueEntry::from_bytes(raw);
        let status = process(&mut guest, &mut disk, &sqe, &opts);
        let cqe = CompletionQueueEntry::new(sqe.cid(), SQ_ID, slot + 1, status, true);
        guest.write(DmaAddr::new(CQ_BASE + u64::from(slot) * 16), cqe.as_bytes())?;
        println!("    CQE {cqe}");
        statuses.push(status);
    }

    // The write landed on the disk byte for byte.
    assert_eq!(statuses[0], NvmeStatus::SUCCESS);
    assert_eq!(&disk.0[8 * 512..8 * 512 + pattern.len()], &pattern[..]);
    // The read put bytes 0x200.. of the same blocks into the guest's two buffers.
    assert_eq!(statuses[1], NvmeStatus::SUCCESS);
    let mut back = vec![0u8; 0x2600];
    ram.read_slice(&mut back[..0xe00], GuestAddress(0x60_0000))?;
    ram.read_slice(&mut back[0xe00..], GuestAddress(0x61_0000))?;
    assert_eq!(&back[..], &pattern[0x200..]);
    // The malformed commands completed with the spec's statuses, nothing copied.
    assert_eq!(statuses[2], NvmeStatus::PRP_OFFSET_INVALID);
    assert_eq!(statuses[3], NvmeStatus::INVALID_SGL_SEGMENT_DESCRIPTOR);
    assert_eq!(statuses[4], NvmeStatus::DATA_TRANSFER_ERROR);
    // The guest's driver sees the completions in its queue, new ones with phase 1.
    let mut raw = [0u8; 16];
    ram.read_slice(&mut raw, GuestAddress(CQ_BASE + 2 * 16))?;
    let cqe = CompletionQueueEntry::from_bytes(raw);
    assert!(cqe.phase() && cqe.cid() == 3 && cqe.status().dnr());
    assert_eq!(cqe.status(), NvmeStatus::PRP_OFFSET_INVALID);
    println!("\nvmm_decode: all checks passed");
    Ok(())
}
