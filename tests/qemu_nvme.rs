//! Conformance of physvec's NVMe PRP/SGL encoders and decoders against QEMU's emulated NVMe
//! controller, driven over the qtest protocol with no guest OS (see DESIGN.md, "Conformance
//! (QEMU)"). Skipped with a printed reason when `qemu-system-x86_64` is missing, unless
//! `PHYSVEC_REQUIRE_QEMU=1`. Set `PHYSVEC_QEMU_SEED` to replay a run.

mod qemu;

use qemu::nvme_host::{prp_dptr, NvmeHost, OPC_READ};
use qemu::qtest::qemu_or_skip;

/// Disk image size: 8 MiB (16384 LBAs of 512 B).
const IMAGE_LEN: usize = 8 << 20;

/// Position-dependent image contents: every little-endian u32 holds its own byte offset
/// XOR `salt`, so misplaced, shifted or reordered data is detected.
fn pattern_image(salt: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(IMAGE_LEN);
    for off in (0..IMAGE_LEN as u32).step_by(4) {
        v.extend_from_slice(&(off ^ salt).to_le_bytes());
    }
    v
}

/// Identify, then reads with hand-computed PRPs: a page-offset PRP1 + PRP2 data pointer,
/// and a three-entry PRP list.
#[test]
fn smoke_identify_and_read() {
    let Some(qemu) = qemu_or_skip("smoke_identify_and_read") else {
        return;
    };
    let image = pattern_image(0x5a00_0000);
    let mut h = NvmeHost::start(&qemu, &image);
    assert_eq!(h.lba_size, 512);
    assert_eq!(h.nsze, (IMAGE_LEN / 512) as u64);
    assert_ne!(h.sgls & 3, 0, "controller reports no SGL support");
    assert!(h.mdts_bytes >= 64 << 10);
    assert_eq!(h.page_size_range(), (4096, 64 << 10));

    // 4 KiB from LBA 8 to 0x1000800 (2 KiB in PRP1's page) and 0x1005000 (PRP2).
    h.qt.memset(0x100_0000, 0x1_0000, 0xa5);
    let c = h.rw(OPC_READ, 8, 8, 0, prp_dptr(0x100_0800, 0x100_5000));
    assert!(c.ok(), "{c}");
    assert_eq!(h.qt.read_vec(0x100_0800, 0x800), image[0x1000..0x1800]);
    assert_eq!(h.qt.read_vec(0x100_5000, 0x800), image[0x1800..0x2000]);
    assert_eq!(h.qt.read_vec(0x100_07f0, 0x10), [0xa5; 16]);
    assert_eq!(h.qt.read_vec(0x100_5800, 0x10), [0xa5; 16]);

    // 16 KiB from LBA 0 through a PRP list at 0x200000: [0x1002000, 0x1009000, 0x1004000].
    let list: Vec<u8> = [0x100_2000u64, 0x100_9000, 0x100_4000]
        .iter()
        .flat_map(|e| e.to_le_bytes())
        .collect();
    h.qt.write(0x20_0000, &list);
    let c = h.rw(OPC_READ, 0, 32, 0, prp_dptr(0x100_7000, 0x20_0000));
    assert!(c.ok(), "{c}");
    for (i, page) in [0x100_7000u64, 0x100_2000, 0x100_9000, 0x100_4000]
        .iter()
        .enumerate()
    {
        assert_eq!(
            h.qt.read_vec(*page, 0x1000),
            image[i * 0x1000..(i + 1) * 0x1000],
            "page {i}"
        );
    }

    // A PRP2 data pointer with an offset is PRP Offset Invalid (13h) with DNR.
    let c = h.rw(OPC_READ, 0, 16, 0, prp_dptr(0x100_0800, 0x100_5200));
    assert_eq!((c.status, c.dnr), (0x13, true), "{c}");

    // Page size 64 KiB via CC.MPS: 8 KiB at offset 0xf000 of a 64 KiB page, then PRP2.
    h.enable(64 << 10);
    let c = h.rw(OPC_READ, 16, 16, 0, prp_dptr(0x102_f000, 0x105_0000));
    assert!(c.ok(), "{c}");
    assert_eq!(h.qt.read_vec(0x102_f000, 0x1000), image[0x2000..0x3000]);
    assert_eq!(h.qt.read_vec(0x105_0000, 0x1000), image[0x3000..0x4000]);
    eprintln!(
        "qemu smoke: {} {} (VS {:#x}, MDTS {} KiB, SGLS {:#x}): {} commands, {} round-trips",
        h.model,
        h.firmware,
        h.vs,
        h.mdts_bytes >> 10,
        h.sgls,
        h.commands,
        h.qt.round_trips
    );
}
