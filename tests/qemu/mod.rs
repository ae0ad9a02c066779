//! Test support for driving QEMU's emulated NVMe controller over the qtest protocol: a
//! protocol client ([`qtest`]), a minimal NVMe host driver on top ([`nvme_host`]) and a
//! small seeded PRNG. Not library API.
// Each test binary that includes this module uses a different subset of the helpers.
#![allow(dead_code)]

pub mod harness;
pub mod layout;
pub mod nvme_host;
pub mod qtest;
pub mod vtd_host;

use std::cell::RefCell;

use physvec::mem::{MemoryError, MemoryReader};

/// SplitMix64: small, seedable, good enough to generate layouts.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator with this seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi);
        let span = hi - lo;
        if span == u64::MAX {
            return self.next_u64();
        }
        lo + self.next_u64() % (span + 1)
    }
    /// True with probability `num/den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next_u64() % den < num
    }
    /// A uniformly chosen element.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as u64 - 1) as usize]
    }
    /// Log-uniform in `lo..=hi` (lo ≥ 1): small and large values equally likely per octave.
    pub fn log_range(&mut self, lo: u64, hi: u64) -> u64 {
        let lo_b = 63 - lo.leading_zeros();
        let hi_b = 63 - hi.leading_zeros();
        let b = self.range(u64::from(lo_b), u64::from(hi_b));
        let v = self.range(1 << b, (1u64 << b).saturating_mul(2) - 1);
        v.clamp(lo, hi)
    }
    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// The seed for this run: `$PHYSVEC_QEMU_SEED` (decimal or 0x-hex) or one from the clock.
pub fn seed() -> u64 {
    if let Ok(s) = std::env::var("PHYSVEC_QEMU_SEED") {
        let s = s.trim();
        let v = match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16),
            None => s.parse(),
        };
        return v.unwrap_or_else(|e| panic!("PHYSVEC_QEMU_SEED={s}: {e}"));
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Rng::new(t ^ u64::from(std::process::id())).next_u64()
}

/// Guest RAM as the crate's decoders see it: reads go to QEMU (`b64read`), so a decoder
/// reads exactly the bytes the controller read. Each 4 KiB chunk is fetched once per
/// `GuestMemory` (guest memory does not change while a decoder runs) to keep protocol
/// round-trips per PRP list page / SGL segment at one. Addresses outside `[0, ram)` are
/// unbacked.
pub struct GuestMemory<'a> {
    qt: RefCell<&'a mut qtest::Qtest>,
    ram: u64,
    cache: RefCell<std::collections::HashMap<u64, Vec<u8>>>,
}

const CHUNK: u64 = 4096;

impl<'a> GuestMemory<'a> {
    /// Guest RAM `[0, ram)` of this QEMU (`ram` a multiple of 4 KiB).
    pub fn new(qt: &'a mut qtest::Qtest, ram: u64) -> Self {
        GuestMemory {
            qt: RefCell::new(qt),
            ram,
            cache: RefCell::default(),
        }
    }
}

impl MemoryReader for GuestMemory<'_> {
    fn read(&self, at: physvec::DmaAddr, buf: &mut [u8]) -> Result<(), MemoryError> {
        let len = buf.len() as u64;
        let addr = at.as_u64();
        if addr.checked_add(len).map_or(true, |e| e > self.ram) {
            return Err(MemoryError { addr: at, len });
        }
        let mut cache = self.cache.borrow_mut();
        let mut done = 0usize;
        while done < buf.len() {
            let a = addr + done as u64;
            let base = a & !(CHUNK - 1);
            let chunk = cache
                .entry(base)
                .or_insert_with(|| self.qt.borrow_mut().read_vec(base, CHUNK as usize));
            let from = (a - base) as usize;
            let n = (CHUNK as usize - from).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&chunk[from..from + n]);
            done += n;
        }
        Ok(())
    }
}
