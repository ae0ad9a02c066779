//! Conformance of physvec's NVMe PRP/SGL encoders and decoders against QEMU's emulated NVMe
//! controller, driven over the qtest protocol with no guest OS (see DESIGN.md, "Conformance
//! (QEMU)"): valid layouts in `qemu/nvme_valid.rs`, malformed and edge layouts (case
//! tables) in `qemu/nvme_malformed.rs`. Runs with its own test harness (`qemu/harness.rs`):
//! without `qemu-system-x86_64` the tests are reported *ignored* with the reason, and
//! fail with `PHYSVEC_REQUIRE_QEMU=1`. Set `PHYSVEC_QEMU_SEED` to replay a run.

#[path = "qemu/nvme_common.rs"]
mod common;
#[path = "qemu/nvme_malformed.rs"]
mod malformed;
mod qemu;
#[path = "qemu/nvme_valid.rs"]
mod valid;

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use physvec::nvme::DataPointer;

use common::{pattern_image, Stats, IMAGE_LEN, PAGE_SIZES};
use qemu::harness::{Body, Trial};
use qemu::nvme_host::{NvmeHost, OPC_READ};
use qemu::Rng;

fn main() -> ExitCode {
    qemu::harness::run(&[
        Trial {
            name: "smoke_identify_and_read",
            body: Body::Qemu(smoke_identify_and_read),
        },
        Trial {
            name: "conformance",
            body: Body::Qemu(conformance),
        },
        Trial {
            name: "qtest_base64_round_trip",
            body: Body::Plain(qtest_base64_round_trip),
        },
    ])
}

/// The qtest client's base64 (the `b64read`/`b64write` payloads) round-trips.
fn qtest_base64_round_trip() {
    use qemu::qtest::{b64decode, b64encode};
    for n in 0..10usize {
        let data: Vec<u8> = (0..n as u8).map(|i| i.wrapping_mul(97) ^ 0xa5).collect();
        assert_eq!(b64decode(&b64encode(&data)).as_deref(), Some(&data[..]));
    }
    assert_eq!(b64encode(b"\xde\xad\xbe\xef"), "3q2+7w==");
}

fn prp(prp1: u64, prp2: u64) -> DataPointer {
    DataPointer::Prp {
        prp1: physvec::DmaAddr::new(prp1),
        prp2: physvec::DmaAddr::new(prp2),
    }
}

/// Identify, then reads with hand-computed PRPs: a page-offset PRP1 + PRP2 data pointer,
/// and a three-entry PRP list.
fn smoke_identify_and_read(qemu: &Path) {
    let image = pattern_image(0x5a00_0000);
    let mut h = NvmeHost::start(qemu, &image);
    assert_eq!(h.lba_size, 512);
    assert_eq!(h.nsze, (IMAGE_LEN / 512) as u64);
    assert_ne!(h.sgls & 3, 0, "controller reports no SGL support");
    assert!(h.mdts_bytes >= 64 << 10);
    assert_eq!(h.page_size_range(), (4096, 64 << 10));

    // 4 KiB from LBA 8 to 0x1000800 (2 KiB in PRP1's page) and 0x1005000 (PRP2).
    h.qt.memset(0x100_0000, 0x1_0000, 0xa5);
    let c = h.rw(OPC_READ, 8, 8, prp(0x100_0800, 0x100_5000));
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
    let c = h.rw(OPC_READ, 0, 32, prp(0x100_7000, 0x20_0000));
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
    let c = h.rw(OPC_READ, 0, 16, prp(0x100_0800, 0x100_5200));
    assert_eq!((c.status, c.dnr), (0x13, true), "{c}");

    // Page size 64 KiB via CC.MPS: 8 KiB at offset 0xf000 of a 64 KiB page, then PRP2.
    h.enable(64 << 10);
    let c = h.rw(OPC_READ, 16, 16, prp(0x102_f000, 0x105_0000));
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

/// ≥300 seeded layouts per run land exactly where the encoders put them, and nothing
/// outside the destinations changes; malformed layouts get the same status from the
/// crate's decoders as from QEMU.
fn conformance(qemu: &Path) {
    let seed = qemu::seed();
    eprintln!("qemu conformance: seed {seed:#x} (replay with PHYSVEC_QEMU_SEED={seed:#x})");
    let t0 = Instant::now();
    let mut rng = Rng::new(seed);
    let mut model = pattern_image(rng.next_u64() as u32);
    let mut h = NvmeHost::start(qemu, &model);
    let mut st = Stats::default();
    valid::data_lands(&mut h, &mut rng, &mut model, 32, &mut st);
    for &page in &PAGE_SIZES {
        h.enable(page);
        for _ in 0..2 {
            let cases = malformed::prp_cases(&mut rng, page, h.mdts_bytes);
            malformed::compare_statuses(&mut h, &mut rng, &model, &cases, &mut st);
            let cases = malformed::sgl_cases(&mut rng, h.mdts_bytes);
            malformed::compare_statuses(&mut h, &mut rng, &model, &cases, &mut st);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "qemu conformance: seed {seed:#x}: {} layouts landed (PRP {} over MPS 4..64 KiB, SGL {} {:?}; \
         {} writes; {} MiB) and decoded back {}x; {} malformed/edge cases in {} classes, \
         {} statuses compared (strict + qemu_compat); {} commands; QEMU §7 defect hit {}x \
         (expected); {} failures; {secs:.2} s",
        st.prp + st.sgl,
        st.prp,
        st.sgl,
        st.shapes,
        st.writes,
        st.bytes >> 20,
        st.round_trips,
        st.cases,
        st.classes.len(),
        st.compared,
        h.commands,
        st.defect,
        st.failures.len()
    );
    assert!(
        st.failures.is_empty(),
        "{} failures (seed {seed:#x}); first: {}",
        st.failures.len(),
        st.failures[0]
    );
}
