//! A minimal real user-space NVMe driver on physvec and VFIO (feature `vfio`, Linux).
//!
//! ```text
//! vfio_nvme run 0000:00:03.0   # drive the controller bound to vfio-pci (root)
//! vfio_nvme prepare disk.img   # host: write pattern A into a fresh image before boot
//! vfio_nvme check disk.img     # host: after power-off, the guest's writes are there
//! vfio_nvme                    # self-test of the pattern code (what CI's example loop runs)
//! ```
//!
//! `run` opens the VFIO container, group and device (rust-vmm's `vfio-ioctls`), turns on
//! bus mastering, maps BAR0, and registers one DMA region (anonymous memory, 2 MiB huge
//! page when the system has one) with physvec's [`VfioMapper`]: admin and I/O queues,
//! Identify pages, PRP list and SGL segment pages live there at IOVAs. It enables the
//! controller, runs Identify Controller / Namespace, creates an I/O queue pair, and moves
//! data with PRPs and (when the controller offers them) SGLs built by physvec from
//! buffers at odd offsets, polling completions by phase ([`QueuePair`]):
//!
//! - **registered memory**: buffers inside the region, each I/O a lookup
//!   ([`VfioMapper::translate`]), no system call;
//! - **per-I/O mapping**: buffers in separate memory, mapped for each I/O
//!   ([`VfioMapper::map_io`]: reserve IOVA + one `VFIO_IOMMU_MAP_DMA` per range, then one
//!   `VFIO_IOMMU_UNMAP_DMA`);
//! - a Read aimed at an IOVA the mapper never mapped, and one aimed at an IOVA after its
//!   per-I/O mapping was unmapped: the IOMMU must block both (the guest kernel logs a
//!   DMAR fault for each address, `.ci/vfio-guest` checks it; the driver checks that the
//!   formerly mapped pages stay untouched).
//!
//! Teardown deletes the queues, disables the controller, unregisters the region and asks
//! the kernel that nothing is left mapped ([`VfioMapper::verify_released`]). It prints
//! `VFIO-NVME PASS` when every check held. `.ci/vfio-guest` runs it in a QEMU guest
//! (intel-iommu, NVMe drive) and checks the image from the host.

use std::error::Error;
use std::process::ExitCode;
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use physvec::map::vfio::{VfioIovaConfig, VfioMapper};
use physvec::map::DataDirection;
use physvec::nvme::{
    self, CompletionQueueEntry, CompletionStatus, DataPointer, Doorbells, LbaRange, MemoryPageSize,
    NamespaceId, PrpListPage, QueuePair, SglCapabilities, SglDescriptor, SglOptions,
    SglSegmentPage, SubmissionQueueEntry,
};
use physvec::{DmaAddr, DmaRange, VirtRange};
use vfio_ioctls::{VfioContainer, VfioDevice};

type Res<T> = Result<T, Box<dyn Error>>;
type Mapper = VfioMapper<Arc<VfioContainer>>;

const PAGE: u64 = 4096;
/// Disk layout (byte offsets): A is written by the host before boot; B, C, D by the
/// guest (registered + PRP, per-I/O, registered + SGL); the host checks them after.
const XFER: u64 = 64 << 10;
const AREA_A: u64 = 0;
const AREA_B: u64 = 1 << 20;
const AREA_C: u64 = 2 << 20;
const AREA_D: u64 = 3 << 20;
const AREA_BENCH: u64 = 4 << 20;
const IMAGE_SIZE: u64 = 8 << 20;
const SEED_A: u8 = 0xa5;
const SEED_B: u8 = 0x3c;
const SEED_C: u8 = 0x71;
const SEED_D: u8 = 0x5e;
/// An IOVA below the guest IOMMU's 39-bit width that the mapper never hands out (it
/// allocates from the bottom): the blocked-DMA probe.
const UNMAPPED_IOVA: u64 = 0x40_0000_0000;
const BENCH_IOS: u32 = 128;
const MAP_ONLY_ITERS: u32 = 2000;

// ----------------------------------------------------------------------------------
// The data pattern, a function of (seed, byte offset on the disk).

fn pattern_byte(seed: u8, disk_off: u64) -> u8 {
    let x =
        disk_off.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(seed).wrapping_mul(0x1234_5677);
    (x >> 29) as u8 ^ seed ^ (disk_off >> 9) as u8
}

fn pattern(seed: u8, disk_off: u64, len: u64) -> Vec<u8> {
    (0..len).map(|i| pattern_byte(seed, disk_off + i)).collect()
}

fn check_pattern(what: &str, seed: u8, disk_off: u64, data: &[u8]) -> Res<()> {
    match data
        .iter()
        .enumerate()
        .find(|&(i, &b)| b != pattern_byte(seed, disk_off + i as u64))
    {
        None => Ok(()),
        Some((i, &b)) => Err(format!(
            "{what}: byte {i} (disk offset {:#x}) is {b:#04x}, expected {:#04x}",
            disk_off + i as u64,
            pattern_byte(seed, disk_off + i as u64)
        )
        .into()),
    }
}

// ----------------------------------------------------------------------------------
// Host side: prepare and check the image.

fn prepare(img: &str) -> Res<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::File::create(img)?;
    f.set_len(IMAGE_SIZE)?;
    f.seek(SeekFrom::Start(AREA_A))?;
    f.write_all(&pattern(SEED_A, AREA_A, XFER))?;
    println!("prepared {img}: {IMAGE_SIZE} bytes, pattern A at {AREA_A:#x}+{XFER:#x}");
    Ok(())
}

fn check(img: &str) -> Res<()> {
    let data = std::fs::read(img)?;
    let area = |off: u64| -> Res<&[u8]> {
        data.get(off as usize..(off + XFER) as usize)
            .ok_or_else(|| format!("image too small for {off:#x}").into())
    };
    check_pattern("A (host, unchanged)", SEED_A, AREA_A, area(AREA_A)?)?;
    check_pattern("B (guest, registered + PRP)", SEED_B, AREA_B, area(AREA_B)?)?;
    check_pattern("C (guest, per-I/O mapping)", SEED_C, AREA_C, area(AREA_C)?)?;
    check_pattern("D (guest, registered + SGL)", SEED_D, AREA_D, area(AREA_D)?)?;
    println!("HOST-CHECK PASS: areas A, B, C, D of {img} hold their patterns");
    Ok(())
}

fn self_test() -> Res<()> {
    let a = pattern(SEED_A, AREA_A, 4096);
    check_pattern("self", SEED_A, AREA_A, &a)?;
    assert!(check_pattern("self", SEED_B, AREA_A, &a).is_err());
    assert!(
        a.iter().filter(|&&b| b == 0).count() < 64,
        "pattern is not mostly zero"
    );
    println!("vfio_nvme: pattern self-test ok (use `run BDF` in a VFIO guest; see .ci/vfio-guest)");
    Ok(())
}

// ----------------------------------------------------------------------------------
// Memory: anonymous mappings (DMA memory) and BAR0.

/// An anonymous, page-aligned mapping: DMA memory. Accessed only through raw pointers,
/// because the device reads and writes it behind the compiler's back.
struct Anon {
    ptr: *mut u8,
    len: usize,
    huge: bool,
}

impl Anon {
    fn new(len: usize, try_huge: bool) -> Res<Self> {
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE;
        if try_huge {
            // SAFETY: a fresh anonymous mapping; no existing memory is affected.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    prot,
                    flags | libc::MAP_HUGETLB,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                return Ok(Anon {
                    ptr: p.cast(),
                    len,
                    huge: true,
                });
            }
        }
        // SAFETY: as above.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, -1, 0) };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap {len} bytes: {}", std::io::Error::last_os_error()).into());
        }
        Ok(Anon {
            ptr: p.cast(),
            len,
            huge: false,
        })
    }

    fn whole(&self) -> VirtRange {
        VirtRange::new(self.ptr as u64, self.len as u64)
    }

    fn virt(&self, off: u64, len: u64) -> VirtRange {
        assert!(off + len <= self.len as u64);
        VirtRange::new(self.ptr as u64 + off, len)
    }

    fn write(&self, off: u64, data: &[u8]) {
        assert!(off as usize + data.len() <= self.len);
        // SAFETY: in bounds (checked above); raw copy, no reference to DMA memory.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(off as usize), data.len())
        };
        fence(Ordering::SeqCst);
    }

    fn read(&self, off: u64, len: u64) -> Vec<u8> {
        assert!(off + len <= self.len as u64);
        fence(Ordering::SeqCst);
        let mut v = vec![0u8; len as usize];
        // SAFETY: in bounds (checked above); raw copy out of DMA memory.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.add(off as usize), v.as_mut_ptr(), v.len())
        };
        v
    }

    fn fill(&self, off: u64, len: u64, byte: u8) {
        assert!(off + len <= self.len as u64);
        // SAFETY: in bounds (checked above).
        unsafe { std::ptr::write_bytes(self.ptr.add(off as usize), byte, len as usize) };
        fence(Ordering::SeqCst);
    }

    fn read_u32(&self, off: u64) -> u32 {
        assert!(off % 4 == 0 && off + 4 <= self.len as u64);
        // SAFETY: in bounds and aligned (checked above); volatile: the device writes it.
        unsafe { self.ptr.add(off as usize).cast::<u32>().read_volatile() }
    }
}

impl Drop for Anon {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once; the mapper no longer maps it (the
        // driver unregisters / unmaps before dropping).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// BAR0 mapped through the VFIO device fd.
struct Bar {
    ptr: *mut u8,
    len: usize,
}

impl Bar {
    fn map(dev: &VfioDevice) -> Res<Self> {
        use std::os::fd::AsRawFd;
        let idx = vfio_bindings::bindings::vfio::VFIO_PCI_BAR0_REGION_INDEX;
        let len = dev.get_region_size(idx) as usize;
        let off = dev.get_region_offset(idx) as libc::off_t;
        if len < 0x2000 {
            return Err(format!("BAR0 of {len:#x} bytes is too small").into());
        }
        // SAFETY: maps the device's BAR0 region from its VFIO fd; no existing memory is
        // affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                dev.as_raw_fd(),
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap BAR0: {}", std::io::Error::last_os_error()).into());
        }
        Ok(Bar { ptr: p.cast(), len })
    }
    fn r32(&self, off: u64) -> u32 {
        assert!(off % 4 == 0 && off as usize + 4 <= self.len);
        // SAFETY: inside the mapped BAR, aligned; MMIO needs volatile.
        unsafe { self.ptr.add(off as usize).cast::<u32>().read_volatile() }
    }
    fn w32(&self, off: u64, v: u32) {
        assert!(off % 4 == 0 && off as usize + 4 <= self.len);
        // SAFETY: inside the mapped BAR, aligned; MMIO needs volatile.
        unsafe { self.ptr.add(off as usize).cast::<u32>().write_volatile(v) }
    }
    fn r64(&self, off: u64) -> u64 {
        u64::from(self.r32(off)) | u64::from(self.r32(off + 4)) << 32
    }
    fn w64(&self, off: u64, v: u64) {
        self.w32(off, v as u32);
        self.w32(off + 4, (v >> 32) as u32);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

// ----------------------------------------------------------------------------------
// The controller.

/// Offsets in the registered region.
const ASQ: u64 = 0x0000;
const ACQ: u64 = 0x1000;
const IOSQ: u64 = 0x2000;
const IOCQ: u64 = 0x3000;
const IDENT: u64 = 0x4000;
const PRP_LIST: u64 = 0x5000;
const SGL_SEG: u64 = 0x6000;
const DATA: u64 = 0x10000;
const REGION: usize = 2 << 20;
const QDEPTH: u16 = 32;

struct Queue {
    pair: QueuePair,
    sq: u64,
    cq: u64,
}

struct Ctrl<'a> {
    bar: Bar,
    db: Doorbells,
    mem: &'a Anon,
    mapper: &'a Mapper,
    admin: Queue,
    io: Queue,
    cid: u16,
    timeout: Duration,
    lba_shift: u32,
    sgls: SglCapabilities,
}

/// The completion's status as the crate types it (SCT/SC/DNR/More).
fn status_of(cqe: [u32; 4]) -> CompletionStatus {
    let mut b = [0u8; 16];
    for (chunk, dw) in b.chunks_exact_mut(4).zip(cqe) {
        chunk.copy_from_slice(&dw.to_le_bytes());
    }
    CompletionQueueEntry::from_bytes(b).status()
}

impl<'a> Ctrl<'a> {
    fn iova(&self, off: u64, len: u64) -> Res<DmaRange> {
        Ok(self.mapper.translate(self.mem.virt(off, len))?)
    }

    fn submit(&mut self, admin: bool, mut sqe: SubmissionQueueEntry) -> Res<[u32; 4]> {
        self.cid = self.cid.wrapping_add(1);
        sqe.set_cid(self.cid);
        let db = self.db;
        let q = if admin { &mut self.admin } else { &mut self.io };
        let slot = q.pair.sq.push()?;
        self.mem.write(q.sq + u64::from(slot) * 64, sqe.as_bytes());
        self.bar
            .w32(db.sq_tail(q.pair.qid), u32::from(q.pair.sq.tail()));
        let deadline = Instant::now() + self.timeout;
        loop {
            let at = q.cq + u64::from(q.pair.cq.head()) * 16;
            // The phase tag (dword 3) first; the rest only after it says "new".
            let dw3 = self.mem.read_u32(at + 12);
            let fresh = (dw3 >> 16) & 1 == u32::from(q.pair.cq.phase());
            let raw = if fresh {
                fence(Ordering::Acquire);
                [0, 4, 8].map(|i| self.mem.read_u32(at + i))
            } else {
                [0; 3]
            };
            if let Some(cqe) = q.pair.complete([raw[0], raw[1], raw[2], dw3]) {
                self.bar
                    .w32(db.cq_head(q.pair.qid), u32::from(q.pair.cq.head()));
                if cqe[3] & 0xffff != u32::from(self.cid) {
                    return Err(format!(
                        "completion for CID {} while waiting for {}",
                        cqe[3] & 0xffff,
                        self.cid
                    )
                    .into());
                }
                return Ok(cqe);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "opcode {:#x}: no completion within {:?}",
                    sqe.opcode(),
                    self.timeout
                )
                .into());
            }
            std::hint::spin_loop();
        }
    }

    fn submit_ok(&mut self, admin: bool, sqe: SubmissionQueueEntry, what: &str) -> Res<[u32; 4]> {
        let c = self.submit(admin, sqe)?;
        let s = status_of(c);
        if s.is_success() {
            Ok(c)
        } else {
            Err(format!("{what}: {s}").into())
        }
    }

    /// A one-page Read of disk byte `disk_off` to `iova` as is: no mapper involved (the
    /// IOMMU probes). Returns the completion whatever its status.
    fn read_page_at(&mut self, disk_off: u64, iova: u64) -> Res<[u32; 4]> {
        let lbas = LbaRange::from_bytes(disk_off, PAGE, 1 << self.lba_shift)?;
        let sqe = SubmissionQueueEntry::read(NamespaceId::new(1), lbas).with_data_pointer(
            DataPointer::Prp {
                prp1: DmaAddr::new(iova),
                prp2: DmaAddr::ZERO,
            },
        );
        self.submit(false, sqe)
    }

    /// Identify Controller (`nsid` None) or Namespace into the IDENT page.
    fn identify(&mut self, nsid: Option<u32>) -> Res<Vec<u8>> {
        let page = self.iova(IDENT, PAGE)?;
        self.mem.fill(IDENT, PAGE, 0);
        let sqe = match nsid {
            None => SubmissionQueueEntry::identify_controller(),
            Some(n) => SubmissionQueueEntry::identify_namespace(NamespaceId::new(n)),
        }
        .with_data_pointer(DataPointer::Prp {
            prp1: page.addr(),
            prp2: DmaAddr::ZERO,
        });
        self.submit_ok(true, sqe, "Identify")?;
        Ok(self.mem.read(IDENT, PAGE))
    }

    /// A Read or Write of `dma` (already device-visible) at disk byte `disk_off`, with
    /// PRPs or an SGL built by physvec in the registered list pages.
    fn rw(&mut self, write: bool, disk_off: u64, dma: &[DmaRange], sgl: bool) -> Res<()> {
        let len: u64 = dma.iter().map(|r| r.len()).sum();
        let lbas = LbaRange::from_bytes(disk_off, len, 1 << self.lba_shift)?;
        let ns = NamespaceId::new(1);
        let mut sqe = if write {
            SubmissionQueueEntry::write(ns, lbas)
        } else {
            SubmissionQueueEntry::read(ns, lbas)
        };
        if sgl {
            let bus = self.iova(SGL_SEG, PAGE)?.addr();
            let mut seg = [SglDescriptor::default(); 256];
            let s = nvme::encode_sgl(
                dma,
                SglOptions::new(self.sgls).with_qemu_chain_workaround(true),
                [SglSegmentPage::new(bus, &mut seg)],
            )?;
            self.mem.write(SGL_SEG, bytemuck::cast_slice(&seg));
            sqe.set_data_pointer(s.data_pointer());
        } else {
            let bus = self.iova(PRP_LIST, PAGE)?.addr();
            let mut list = [0u64; 512];
            let p = nvme::encode_prp(
                dma,
                MemoryPageSize::SIZE_4K,
                [PrpListPage::new(bus, &mut list)],
            )?;
            self.mem.write(PRP_LIST, bytemuck::cast_slice(&list));
            sqe.set_data_pointer(p.data_pointer());
        }
        let what = format!(
            "{} {len:#x} bytes at disk {disk_off:#x}",
            if write { "Write" } else { "Read" }
        );
        self.submit_ok(false, sqe, &what)?;
        Ok(())
    }
}

fn wait_ready(bar: &Bar, want: bool, timeout: Duration) -> Res<()> {
    let deadline = Instant::now() + timeout;
    while (bar.r32(0x1c) & 1 == 1) != want {
        if bar.r32(0x1c) & 2 != 0 {
            return Err("controller fatal status (CSTS.CFS)".into());
        }
        if Instant::now() > deadline {
            return Err(format!("CSTS.RDY did not become {want} within {timeout:?}").into());
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    Ok(())
}

fn run(bdf: &str) -> Res<()> {
    // ---- VFIO: container, group, device (rust-vmm's vfio-ioctls) ----
    let (container, dev) = physvec::map::vfio::open_pci(bdf)?;
    // Memory space + bus master in the PCI command register.
    let cfg = vfio_bindings::bindings::vfio::VFIO_PCI_CONFIG_REGION_INDEX;
    let mut cmd = [0u8; 2];
    dev.region_read(cfg, &mut cmd, 4);
    let cmd = u16::from_le_bytes(cmd) | 0x6;
    dev.region_write(cfg, &cmd.to_le_bytes(), 4);
    let bar = Bar::map(&dev)?;
    let mapper: Mapper = VfioMapper::new(container.clone(), VfioIovaConfig::new(39))?;

    // ---- DMA memory: one registered region ----
    let mem = Anon::new(REGION, true)?;
    // SAFETY: `mem` outlives the registration (unregistered below before it drops) and
    // is only accessed through raw pointers.
    let region = unsafe { mapper.register(mem.whole(), DataDirection::Bidirectional)? };
    println!(
        "region: {} KiB ({}) at {:?} -> {:?}",
        REGION >> 10,
        if mem.huge {
            "2 MiB huge page"
        } else {
            "4 KiB pages"
        },
        mem.whole().addr(),
        region.addr()
    );

    // ---- Controller enable with the admin queues in the region ----
    let cap = bar.r64(0);
    let timeout = Duration::from_millis(500 * ((cap >> 24) & 0xff).max(1));
    if (cap >> 48) & 0xf != 0 {
        return Err("CAP.MPSMIN > 4 KiB is not supported by this example".into());
    }
    let mqes = (cap & 0xffff) as u16;
    let depth = QDEPTH.min(mqes.saturating_add(1));
    if bar.r32(0x14) & 1 == 1 {
        bar.w32(0x14, 0);
        wait_ready(&bar, false, timeout)?;
    }
    let (asq, acq) = (
        mapper.translate(mem.virt(ASQ, PAGE))?,
        mapper.translate(mem.virt(ACQ, PAGE))?,
    );
    bar.w32(0x24, (u32::from(depth) - 1) << 16 | (u32::from(depth) - 1));
    bar.w64(0x28, asq.addr().as_u64());
    bar.w64(0x30, acq.addr().as_u64());
    bar.w32(0x14, (4 << 20) | (6 << 16) | 1); // IOCQES 16 B, IOSQES 64 B, MPS 4 KiB, EN
    wait_ready(&bar, true, timeout)?;
    let vs = bar.r32(0x08);
    println!(
        "controller: VS {}.{}, CAP {cap:#x} (DSTRD {}, MQES {mqes})",
        vs >> 16,
        vs >> 8 & 0xff,
        cap >> 32 & 0xf
    );

    let mut c = Ctrl {
        bar,
        db: Doorbells::from_cap(cap),
        mem: &mem,
        mapper: &mapper,
        admin: Queue {
            pair: QueuePair::new(0, depth, depth)?,
            sq: ASQ,
            cq: ACQ,
        },
        io: Queue {
            pair: QueuePair::new(1, depth, depth)?,
            sq: IOSQ,
            cq: IOCQ,
        },
        cid: 0,
        timeout,
        lba_shift: 9,
        sgls: SglCapabilities::from_raw(0),
    };

    // ---- Identify Controller and Namespace ----
    let id = c.identify(None)?;
    let text = |r: std::ops::Range<usize>| String::from_utf8_lossy(&id[r]).trim().to_string();
    let sgls = u32::from_le_bytes(id[536..540].try_into()?);
    let mdts = id[77];
    let nn = u32::from_le_bytes(id[516..520].try_into()?);
    c.sgls = SglCapabilities::from_raw(sgls);
    println!(
        "identify: model '{}', serial '{}', NN {nn}, MDTS {mdts}, SGLS {sgls:#x}",
        text(24..64),
        text(4..24)
    );
    let ns = c.identify(Some(1))?;
    let nsze = u64::from_le_bytes(ns[0..8].try_into()?);
    let flbas = usize::from(ns[26] & 0xf);
    let lbaf = u32::from_le_bytes(ns[128 + 4 * flbas..132 + 4 * flbas].try_into()?);
    c.lba_shift = (lbaf >> 16) & 0xff;
    println!(
        "namespace 1: {nsze} blocks of {} bytes",
        1u64 << c.lba_shift
    );
    if !(9..=12).contains(&c.lba_shift) || nsze << c.lba_shift < IMAGE_SIZE {
        return Err("namespace too small or unexpected LBA size".into());
    }
    if mdts != 0 && (PAGE << mdts) < XFER {
        return Err(format!("MDTS {mdts} below the {XFER}-byte transfers of this example").into());
    }

    // ---- I/O queue pair (polled: interrupts off) ----
    let (iocq, iosq) = (c.iova(IOCQ, PAGE)?, c.iova(IOSQ, PAGE)?);
    let entries = u32::from(depth);
    let sqe = SubmissionQueueEntry::create_io_cq(1, entries, iocq.addr(), None)?; // polled
    c.submit_ok(true, sqe, "Create I/O CQ")?;
    let sqe = SubmissionQueueEntry::create_io_sq(1, entries, iosq.addr(), 1)?;
    c.submit_ok(true, sqe, "Create I/O SQ")?;
    println!("I/O queue pair 1 created, depth {depth}");

    // ---- 1. Registered memory, PRP: read the host's pattern A into a buffer at +0x234 ----
    let rbuf = DATA + 0x234;
    let dma = [c.iova(rbuf, XFER)?];
    c.rw(false, AREA_A, &dma, false)?;
    check_pattern(
        "read A (registered, PRP)",
        SEED_A,
        AREA_A,
        &mem.read(rbuf, XFER),
    )?;
    println!(
        "CHECK registered prp read: pattern A ok ({} PRP pages from {:?})",
        XFER / PAGE + 1,
        dma[0].addr()
    );

    // ---- 2. Registered memory, PRP: write pattern B from a buffer at +0x1f8, read back ----
    let wbuf = DATA + 0x2_0000 + 0x1f8;
    mem.write(wbuf, &pattern(SEED_B, AREA_B, XFER));
    let dma = [c.iova(wbuf, XFER)?];
    c.rw(true, AREA_B, &dma, false)?;
    mem.fill(rbuf, XFER, 0);
    c.rw(false, AREA_B, &[c.iova(rbuf, XFER)?], false)?;
    check_pattern(
        "read back B (registered, PRP)",
        SEED_B,
        AREA_B,
        &mem.read(rbuf, XFER),
    )?;
    println!("CHECK registered prp write: pattern B written and read back");

    // ---- 3. Registered memory, SGL: three scattered pieces at odd offsets ----
    // Odd byte offsets when the controller takes byte-aligned SGL data (SGLS bits 1:0 =
    // 01b), dword-aligned ones when it wants that.
    let odd = if c.sgls.dword_aligned() { 0 } else { 1 };
    let pieces = [
        (DATA + 0x4_0000 + 0x104 + odd, 0x3000),
        (DATA + 0x5_8000 + 0x40 + 3 * odd, 0x5000),
        (DATA + 0x6_8000 + 0x80, 0x8000),
    ];
    let mut sgl_dma = Vec::new();
    let virts: Vec<VirtRange> = pieces.iter().map(|&(o, l)| mem.virt(o, l)).collect();
    mapper.translate_all(&virts, &mut sgl_dma)?;
    let d = pattern(SEED_D, AREA_D, XFER);
    let mut at = 0usize;
    for &(o, l) in &pieces {
        mem.write(o, &d[at..at + l as usize]);
        at += l as usize;
    }
    let sgl_ok = c.sgls.supported();
    if sgl_ok {
        assert!(!nvme::is_prp_compatible(
            sgl_dma.iter().copied(),
            MemoryPageSize::SIZE_4K
        ));
        c.rw(true, AREA_D, &sgl_dma, true)?;
        for &(o, l) in &pieces {
            mem.fill(o, l, 0);
        }
        c.rw(false, AREA_D, &sgl_dma, true)?;
        let mut back = Vec::new();
        for &(o, l) in &pieces {
            back.extend(mem.read(o, l));
        }
        check_pattern("read back D (registered, SGL)", SEED_D, AREA_D, &back)?;
        // And the host's pattern through the same scattered SGL.
        c.rw(false, AREA_A, &sgl_dma, true)?;
        let mut back = Vec::new();
        for &(o, l) in &pieces {
            back.extend(mem.read(o, l));
        }
        check_pattern("read A (registered, SGL)", SEED_A, AREA_A, &back)?;
        println!(
            "CHECK registered sgl: {} data blocks at offsets {:#x}/{:#x}/{:#x} in their pages, pattern D written/read, A read",
            sgl_dma.len(),
            pieces[0].0 & 0xfff,
            pieces[1].0 & 0xfff,
            pieces[2].0 & 0xfff
        );
    } else {
        // No SGLs: the same bytes through PRP from a contiguous buffer.
        mem.write(wbuf, &d);
        c.rw(true, AREA_D, &[c.iova(wbuf, XFER)?], false)?;
        println!(
            "CHECK registered sgl: controller offers no SGLs (SGLS {sgls:#x}); D written with PRP"
        );
    }

    // ---- 4. Per-I/O mapping: buffers outside the region, mapped for each I/O ----
    let io_mem = [Anon::new(0x10000, false)?, Anon::new(0x10000, false)?];
    // Piece 1 ends on a page boundary, piece 2 starts on one: one IOVA-contiguous range.
    let io_virts = [
        io_mem[0].virt(0x200, 0x3e00),
        io_mem[1].virt(0, XFER - 0x3e00),
    ];
    let cdata = pattern(SEED_C, AREA_C, XFER);
    io_mem[0].write(0x200, &cdata[..0x3e00]);
    io_mem[1].write(0, &cdata[0x3e00..]);
    let before = mapper.stats();
    {
        // SAFETY: `io_mem` outlives the mapping (unmapped at the end of this block) and
        // is only accessed through raw pointers.
        let m = unsafe { mapper.map_io(&io_virts, DataDirection::ToDevice)? };
        c.rw(true, AREA_C, m.dma(), false)?;
        m.unmap()?;
    }
    io_mem[0].fill(0, 0x10000, 0);
    io_mem[1].fill(0, 0x10000, 0);
    {
        // SAFETY: as above.
        let m = unsafe { mapper.map_io(&io_virts, DataDirection::FromDevice)? };
        println!(
            "per-I/O mapping: {:?} in {} DMA range(s)",
            m.reservation(),
            m.dma().len()
        );
        c.rw(false, AREA_C, m.dma(), false)?;
        m.unmap()?;
    }
    let mut back = io_mem[0].read(0x200, 0x3e00);
    back.extend(io_mem[1].read(0, XFER - 0x3e00));
    check_pattern("read back C (per-I/O)", SEED_C, AREA_C, &back)?;
    {
        // SAFETY: as above.
        let m = unsafe { mapper.map_io(&io_virts, DataDirection::FromDevice)? };
        c.rw(false, AREA_A, m.dma(), false)?;
        m.unmap()?;
    }
    let mut back = io_mem[0].read(0x200, 0x3e00);
    back.extend(io_mem[1].read(0, XFER - 0x3e00));
    check_pattern("read A (per-I/O)", SEED_A, AREA_A, &back)?;
    let after = mapper.stats();
    println!(
        "CHECK per-io: pattern C written and read back, A read; {} MAP_DMA + {} UNMAP_DMA for 3 I/Os",
        after.map_ioctls - before.map_ioctls,
        after.unmap_ioctls - before.unmap_ioctls
    );
    if sgl_ok {
        // Per-I/O + SGL: three scattered pieces that no PRP list can describe.
        let pieces = [
            (&io_mem[0], 0x9000 + 0x10 + odd, 0x2000u64),
            (&io_mem[1], 0xa000 + 0x7f0, 0x4000),
            (&io_mem[1], 0x20, XFER - 0x6000),
        ];
        let virts: Vec<VirtRange> = pieces.iter().map(|(m, o, l)| m.virt(*o, *l)).collect();
        for (m, o, l) in &pieces {
            m.fill(*o, *l, 0);
        }
        // SAFETY: as above.
        let m = unsafe { mapper.map_io(&virts, DataDirection::FromDevice)? };
        let ranges = m.dma().len();
        c.rw(false, AREA_A, m.dma(), true)?;
        m.unmap()?;
        let mut back = Vec::new();
        for (m, o, l) in &pieces {
            back.extend(m.read(*o, *l));
        }
        check_pattern("read A (per-I/O, SGL)", SEED_A, AREA_A, &back)?;
        println!("CHECK per-io sgl: pattern A read into {ranges} scattered DMA ranges");
    }

    // ---- 5. Numbers: 4 KiB reads, registered lookup vs per-I/O map ----
    bench(&mut c, &io_mem[0])?;

    // ---- 6. A Read aimed at an IOVA the mapper never mapped ----
    if mapper
        .translate(mem.whole())
        .map(|d| d.end().map_or(true, |e| e.as_u64() > UNMAPPED_IOVA))
        .unwrap_or(true)
    {
        return Err("the probe IOVA overlaps the registered region".into());
    }
    let cqe = c.read_page_at(AREA_A, UNMAPPED_IOVA)?;
    println!(
        "UNMAPPED-IOVA {UNMAPPED_IOVA:#x} read: completion status {} (the IOMMU must log a DMAR fault for this address)",
        status_of(cqe)
    );

    // ---- 7. Use after unmap: an IOVA that was mapped per I/O, then unmapped ----
    let page = io_mem[1].virt(0x8000, PAGE);
    // SAFETY: `io_mem` outlives the mapping, raw access only.
    let m = unsafe { mapper.map_io(&[page], DataDirection::FromDevice)? };
    let stale = m.dma()[0].addr().as_u64();
    io_mem[1].fill(0x8000, PAGE, 0xee);
    c.read_page_at(AREA_A, stale)?;
    check_pattern(
        "read A while mapped",
        SEED_A,
        AREA_A,
        &io_mem[1].read(0x8000, PAGE),
    )?;
    m.unmap()?;
    io_mem[1].fill(0x8000, PAGE, 0xee);
    let cqe = c.read_page_at(AREA_A, stale)?;
    if io_mem[1].read(0x8000, PAGE).iter().any(|&b| b != 0xee) {
        return Err(format!("a Read to unmapped IOVA {stale:#x} reached the old pages").into());
    }
    println!(
        "STALE-IOVA {stale:#x} read after unmap: completion status {}, the old pages are untouched (DMAR fault expected)",
        status_of(cqe)
    );

    // ---- Teardown: queues, controller, region; nothing may stay mapped ----
    let mut sqe = SubmissionQueueEntry::new(0x00);
    sqe.set_cdw10(1);
    c.submit_ok(true, sqe, "Delete I/O SQ")?;
    let mut sqe = SubmissionQueueEntry::new(0x04);
    sqe.set_cdw10(1);
    c.submit_ok(true, sqe, "Delete I/O CQ")?;
    c.bar.w32(0x14, 0);
    wait_ready(&c.bar, false, timeout)?;
    drop(c);
    mapper.unregister(mem.whole())?;
    mapper.verify_released()?;
    if !mapper.is_idle() {
        return Err("mapper not idle after teardown".into());
    }
    let s = mapper.stats();
    println!(
        "CHECK teardown: controller disabled, nothing mapped (kernel confirms); totals {} MAP_DMA, {} UNMAP_DMA, {} lookups",
        s.map_ioctls, s.unmap_ioctls, s.lookups
    );
    drop(dev);
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// 4 KiB reads, [`BENCH_IOS`] per mode, interleaved (TCG timing drifts), median per I/O;
/// then the mapping step alone: a registered lookup against VFIO map + unmap (ratios
/// only; TCG time is not hardware time).
fn bench(c: &mut Ctrl<'_>, io_mem: &Anon) -> Res<()> {
    let mapper = c.mapper;
    let buf_reg = DATA + 0x8_0000;
    let io_virt = io_mem.virt(0, PAGE);
    let (mut reg, mut per) = (Vec::new(), Vec::new());
    let (mut reg_ioctls, mut per_ioctls) = (0, 0);
    let ioctls = || {
        let s = mapper.stats();
        s.map_ioctls + s.unmap_ioctls
    };
    for i in 0..BENCH_IOS + 8 {
        let disk = AREA_BENCH + u64::from(i % BENCH_IOS) * PAGE;
        let (n0, t) = (ioctls(), Instant::now());
        let dma = [mapper.translate(c.mem.virt(buf_reg, PAGE))?];
        c.rw(false, disk, &dma, false)?;
        let (d, n1) = (t.elapsed(), ioctls());
        if i >= 8 {
            reg.push(d);
            reg_ioctls += n1 - n0;
        }
        let t = Instant::now();
        // SAFETY: `io_mem` outlives the mapping (unmapped in this iteration), raw access only.
        let m = unsafe { mapper.map_io(&[io_virt], DataDirection::FromDevice)? };
        c.rw(false, disk, m.dma(), false)?;
        m.unmap()?;
        let (d, n2) = (t.elapsed(), ioctls());
        if i >= 8 {
            per.push(d);
            per_ioctls += n2 - n1;
        }
    }
    let (reg_io, per_io) = (median(reg), median(per));
    // The mapping step alone.
    let t = Instant::now();
    for _ in 0..MAP_ONLY_ITERS {
        std::hint::black_box(mapper.translate(c.mem.virt(buf_reg, PAGE))?);
    }
    let reg_map = t.elapsed() / MAP_ONLY_ITERS;
    let t = Instant::now();
    for _ in 0..MAP_ONLY_ITERS / 4 {
        // SAFETY: as above; the device is idle.
        let m = unsafe { mapper.map_io(&[io_virt], DataDirection::FromDevice)? };
        std::hint::black_box(m.dma());
        m.unmap()?;
    }
    let per_map = t.elapsed() / (MAP_ONLY_ITERS / 4);
    println!(
        "BENCH 4KiB-read median of {BENCH_IOS}: registered {:.1} ioctls/io, {} ns/io; per-io-map {:.1} ioctls/io, {} ns/io; ratio {:.2}",
        reg_ioctls as f64 / f64::from(BENCH_IOS),
        reg_io.as_nanos(),
        per_ioctls as f64 / f64::from(BENCH_IOS),
        per_io.as_nanos(),
        per_io.as_secs_f64() / reg_io.as_secs_f64().max(1e-9)
    );
    println!(
        "BENCH mapping-only registered-lookup: {} ns; per-io map+unmap: {} ns; ratio {:.0}",
        reg_map.as_nanos(),
        per_map.as_nanos(),
        per_map.as_secs_f64() / reg_map.as_secs_f64().max(1e-9)
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = match args.as_slice() {
        [] => self_test(),
        ["prepare", img] => prepare(img),
        ["check", img] => check(img),
        ["run", bdf] => run(bdf).map(|()| println!("VFIO-NVME PASS")),
        _ => Err("usage: vfio_nvme [prepare IMG | check IMG | run BDF]".into()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("VFIO-NVME FAIL: {e}");
            ExitCode::FAILURE
        }
    }
}
