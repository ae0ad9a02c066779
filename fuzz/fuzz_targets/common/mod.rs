//! Shared by the fuzz targets: a memory model built from the input that counts every
//! read, so targets can assert the decoders' documented work bounds.
#![allow(dead_code)]

use std::cell::Cell;

use physvec::mem::{MemoryError, MemoryReader};

/// Addresses at or above this are never backed (so "unreadable" paths are reachable in
/// folded mode too).
pub const FOLD_LIMIT: u64 = 1 << 40;

/// Input bytes as memory, counting reads.
///
/// - `fold == false`: the bytes live at `[base, base + len)`, nothing else is readable
///   (like `SliceMemory`).
/// - `fold == true`: every address below [`FOLD_LIMIT`] is readable and byte `a` is
///   `bytes[a % len]`: every page holds the same contents, so any pointer the fuzzer
///   writes lands on data (chains, self references and loops come for free).
pub struct FuzzMem<'a> {
    pub bytes: &'a [u8],
    pub base: u64,
    pub fold: bool,
    pub reads: Cell<u64>,
    pub bytes_read: Cell<u64>,
    pub max_read: Cell<usize>,
}

impl<'a> FuzzMem<'a> {
    pub fn new(bytes: &'a [u8], base: u64, fold: bool) -> Self {
        Self {
            bytes,
            base,
            fold,
            reads: Cell::new(0),
            bytes_read: Cell::new(0),
            max_read: Cell::new(0),
        }
    }

    pub fn reset(&self) {
        self.reads.set(0);
        self.bytes_read.set(0);
        self.max_read.set(0);
    }
}

impl<S: physvec::AddrSpace> MemoryReader<S> for FuzzMem<'_> {
    fn read(&self, at: physvec::Addr<S>, buf: &mut [u8]) -> Result<(), MemoryError<S>> {
        let addr = at.as_u64();
        self.reads.set(self.reads.get() + 1);
        self.bytes_read
            .set(self.bytes_read.get() + buf.len() as u64);
        self.max_read.set(self.max_read.get().max(buf.len()));
        let err = MemoryError::at(at, buf.len());
        if self.fold {
            let n = self.bytes.len() as u64;
            if n == 0 || addr >= FOLD_LIMIT {
                return Err(err);
            }
            for (i, b) in buf.iter_mut().enumerate() {
                *b = self.bytes[((addr + i as u64) % n) as usize];
            }
            return Ok(());
        }
        let off = addr.checked_sub(self.base).ok_or(err)?;
        let end = off.checked_add(buf.len() as u64).ok_or(err)?;
        if end > self.bytes.len() as u64 {
            return Err(err);
        }
        buf.copy_from_slice(&self.bytes[off as usize..end as usize]);
        Ok(())
    }
}

/// Merges contiguous `(addr, len)` pairs (lengths as u128 so 2^64 ends are fine).
pub fn coalesce(list: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &(a, l) in list {
        match out.last_mut() {
            Some(last) if last.0 as u128 + last.1 as u128 == a as u128 => last.1 += l,
            _ => out.push((a, l)),
        }
    }
    out
}
