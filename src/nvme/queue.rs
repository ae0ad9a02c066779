//! NVMe queue ring logic, `no_std`: the submission tail, the completion head and phase,
//! and the doorbell offsets with the controller's stride (CAP.DSTRD).
//!
//! This is the bookkeeping every NVMe host driver repeats (NVMe Base 2.0 §3.3.1: the
//! queue is full when `tail + 1 == head`; a completion entry is new when its phase tag
//! equals the phase the host expects, which flips each time the head wraps). It touches
//! no memory and no register: the caller reads the 16-byte completion entry (volatile,
//! from its DMA memory) and writes the doorbell (MMIO) with the values these types give.
//! The VFIO driver example (`examples/vfio_nvme.rs`) and the qtest host of the
//! conformance tests drive their queues with it.
//!
//! ```
//! use physvec::nvme::{Doorbells, QueuePair};
//! let cap: u64 = 0x0000_0000_2001_0fff; // DSTRD = 0: 4-byte doorbell stride
//! let db = Doorbells::from_cap(cap);
//! let mut q = QueuePair::new(1, 4, 4)?;  // queue 1, 4 entries each
//! let slot = q.sq.push()?;              // write the 64-byte SQE at slot * 64 ...
//! assert_eq!((slot, q.sq.tail()), (0, 1));
//! assert_eq!(db.sq_tail(1), 0x1008);     // ... then write tail 1 here
//! // The controller posts a completion: CID 7, SQ head 1, phase 1.
//! let cqe = [0, 0, 1 | (1 << 16), 7 | (1 << 16)];
//! assert_eq!(q.complete(cqe), Some(cqe));
//! assert_eq!((q.cq.head(), db.cq_head(1)), (1, 0x100c)); // write head 1 here
//! assert_eq!(q.complete([0; 4]), None);  // slot 1 still zeroed (phase 0): nothing new
//! # Ok::<(), physvec::nvme::QueueError>(())
//! ```
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

use core::fmt;

/// Offset of the first doorbell in BAR0 (NVMe Base 2.0 §3.1.4: `SQ0TDBL` at 1000h).
pub const DOORBELL_BASE: u64 = 0x1000;

/// A rejected queue operation.
///
/// ```
/// use physvec::nvme::{QueueError, SubmissionRing};
/// assert_eq!(SubmissionRing::new(1).unwrap_err().kind(), "invalid_depth");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// A queue needs at least 2 entries (one always stays empty).
    InvalidDepth {
        /// The depth asked for.
        depth: u16,
    },
    /// The submission queue has no free slot: wait for completions.
    Full {
        /// The queue's depth.
        depth: u16,
    },
    /// A completion reported a submission-queue head outside the queue.
    HeadOutOfRange {
        /// The head reported.
        head: u16,
        /// The queue's depth.
        depth: u16,
    },
}

impl QueueError {
    /// A stable snake_case name of the variant.
    ///
    /// ```
    /// assert_eq!(physvec::nvme::QueueError::Full { depth: 2 }.kind(), "queue_full");
    /// ```
    pub const fn kind(&self) -> &'static str {
        match self {
            QueueError::InvalidDepth { .. } => "invalid_depth",
            QueueError::Full { .. } => "queue_full",
            QueueError::HeadOutOfRange { .. } => "head_out_of_range",
        }
    }
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::InvalidDepth { depth } => {
                write!(f, "queue depth {depth} is invalid: at least 2 entries")
            }
            QueueError::Full { depth } => write!(f, "submission queue of {depth} entries is full"),
            QueueError::HeadOutOfRange { head, depth } => {
                write!(
                    f,
                    "completion reports SQ head {head}, queue has {depth} entries"
                )
            }
        }
    }
}

impl core::error::Error for QueueError {}

/// Doorbell register offsets in BAR0 for a controller's doorbell stride.
///
/// `SQyTDBL = 1000h + (2y) * (4 << CAP.DSTRD)`, `CQyHDBL = 1000h + (2y + 1) * (4 <<
/// CAP.DSTRD)` (NVMe Base 2.0 §3.1.4.21–22).
///
/// ```
/// use physvec::nvme::Doorbells;
/// let db = Doorbells::from_cap(2 << 32); // DSTRD = 2: 16-byte stride
/// assert_eq!((db.sq_tail(0), db.cq_head(0), db.sq_tail(1)), (0x1000, 0x1010, 0x1020));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Doorbells {
    /// Bytes between two doorbells: `4 << DSTRD`, DSTRD in 0..=15.
    stride: u64,
}

impl Doorbells {
    /// The doorbells of a controller whose CAP register reads `cap` (DSTRD, bits 35:32).
    ///
    /// ```
    /// assert_eq!(physvec::nvme::Doorbells::from_cap(0).stride(), 4);
    /// ```
    pub const fn from_cap(cap: u64) -> Self {
        // DSTRD is 4 bits: 4 << 15 at most, no overflow.
        Doorbells {
            stride: 4u64 << ((cap >> 32) & 0xf),
        }
    }

    /// Bytes between two consecutive doorbells.
    ///
    /// ```
    /// assert_eq!(physvec::nvme::Doorbells::from_cap(1 << 32).stride(), 8);
    /// ```
    pub const fn stride(&self) -> u64 {
        self.stride
    }

    /// BAR0 offset of submission queue `qid`'s tail doorbell.
    ///
    /// ```
    /// assert_eq!(physvec::nvme::Doorbells::from_cap(0).sq_tail(3), 0x1018);
    /// ```
    pub const fn sq_tail(&self, qid: u16) -> u64 {
        self.offset(qid, 0)
    }

    /// BAR0 offset of completion queue `qid`'s head doorbell.
    ///
    /// ```
    /// assert_eq!(physvec::nvme::Doorbells::from_cap(0).cq_head(3), 0x101c);
    /// ```
    pub const fn cq_head(&self, qid: u16) -> u64 {
        self.offset(qid, 1)
    }

    /// Doorbell `2 * qid + which` (at most 2 * 65535 + 1 < 2^17) times a stride of at
    /// most 2^17: below 2^35, so the arithmetic cannot overflow.
    #[allow(clippy::arithmetic_side_effects)] // bounded as above
    const fn offset(&self, qid: u16, which: u64) -> u64 {
        DOORBELL_BASE + (qid as u64 * 2 + which) * self.stride
    }
}

/// The host's side of a submission queue: where the next entry goes, and how many are
/// in flight.
///
/// # Invariants
/// `depth >= 2`, `tail < depth`, `head < depth`; at most `depth - 1` entries are
/// outstanding.
///
/// ```
/// use physvec::nvme::SubmissionRing;
/// let mut sq = SubmissionRing::new(2)?;
/// assert_eq!(sq.push()?, 0);
/// assert!(sq.push().is_err());     // 2 entries: only one can be outstanding
/// sq.set_head(1)?;                 // the controller consumed it
/// assert_eq!(sq.push()?, 1);
/// assert_eq!(sq.tail(), 0);        // wrapped
/// # Ok::<(), physvec::nvme::QueueError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubmissionRing {
    depth: u16,
    tail: u16,
    head: u16,
}

const fn next(i: u16, depth: u16) -> u16 {
    // `i < depth <= u16::MAX`, so `i + 1` fits.
    match i.checked_add(1) {
        Some(n) if n < depth => n,
        _ => 0,
    }
}

impl SubmissionRing {
    /// An empty ring of `depth` entries.
    ///
    /// # Errors
    /// [`QueueError::InvalidDepth`] for fewer than 2 entries.
    ///
    /// ```
    /// assert!(physvec::nvme::SubmissionRing::new(64).is_ok());
    /// ```
    pub const fn new(depth: u16) -> Result<Self, QueueError> {
        if depth < 2 {
            return Err(QueueError::InvalidDepth { depth });
        }
        Ok(SubmissionRing {
            depth,
            tail: 0,
            head: 0,
        })
    }

    /// Entries in the queue.
    ///
    /// ```
    /// assert_eq!(physvec::nvme::SubmissionRing::new(8).unwrap().depth(), 8);
    /// ```
    pub const fn depth(&self) -> u16 {
        self.depth
    }

    /// The tail: the value to write to the tail doorbell after [`SubmissionRing::push`].
    ///
    /// ```
    /// let mut sq = physvec::nvme::SubmissionRing::new(8).unwrap();
    /// sq.push().unwrap();
    /// assert_eq!(sq.tail(), 1);
    /// ```
    pub const fn tail(&self) -> u16 {
        self.tail
    }

    /// The last head the controller reported.
    ///
    /// ```
    /// assert_eq!(physvec::nvme::SubmissionRing::new(8).unwrap().head(), 0);
    /// ```
    pub const fn head(&self) -> u16 {
        self.head
    }

    /// Entries submitted and not yet consumed by the controller.
    ///
    /// ```
    /// let mut sq = physvec::nvme::SubmissionRing::new(8).unwrap();
    /// sq.push().unwrap();
    /// assert_eq!(sq.outstanding(), 1);
    /// ```
    pub const fn outstanding(&self) -> u16 {
        if self.tail >= self.head {
            self.tail.wrapping_sub(self.head) // tail >= head: no wrap
        } else {
            // tail < head < depth: depth - head + tail < depth, no wrap.
            self.depth.wrapping_sub(self.head).wrapping_add(self.tail)
        }
    }

    /// Whether no slot is free (`tail + 1 == head`).
    ///
    /// ```
    /// let mut sq = physvec::nvme::SubmissionRing::new(2).unwrap();
    /// sq.push().unwrap();
    /// assert!(sq.is_full());
    /// ```
    pub const fn is_full(&self) -> bool {
        next(self.tail, self.depth) == self.head
    }

    /// Takes the slot at the tail and advances the tail. Write the 64-byte entry at
    /// `slot * 64` of the queue memory, then ring the doorbell with [`Self::tail`].
    ///
    /// # Errors
    /// [`QueueError::Full`]; nothing changes.
    ///
    /// ```
    /// let mut sq = physvec::nvme::SubmissionRing::new(4).unwrap();
    /// assert_eq!((sq.push(), sq.push()), (Ok(0), Ok(1)));
    /// ```
    pub fn push(&mut self) -> Result<u16, QueueError> {
        if self.is_full() {
            return Err(QueueError::Full { depth: self.depth });
        }
        let slot = self.tail;
        self.tail = next(slot, self.depth);
        Ok(slot)
    }

    /// Records the SQ head a completion entry reported (its SQHD field).
    ///
    /// # Errors
    /// [`QueueError::HeadOutOfRange`] when `head >= depth`; nothing changes.
    ///
    /// ```
    /// let mut sq = physvec::nvme::SubmissionRing::new(4).unwrap();
    /// assert!(sq.set_head(4).is_err());
    /// ```
    pub fn set_head(&mut self, head: u16) -> Result<(), QueueError> {
        if head >= self.depth {
            return Err(QueueError::HeadOutOfRange {
                head,
                depth: self.depth,
            });
        }
        self.head = head;
        Ok(())
    }
}

/// The host's side of a completion queue: which slot to look at, and which phase tag
/// marks a new entry there.
///
/// # Invariants
/// `depth >= 2`, `head < depth`. The expected phase starts at 1 (the queue memory is
/// zeroed) and flips each time the head wraps.
///
/// ```
/// use physvec::nvme::CompletionRing;
/// let mut cq = CompletionRing::new(2)?;
/// let new = [0, 0, 0, 1 << 16];          // phase 1
/// assert!(cq.poll(new).is_some());
/// assert!(cq.poll(new).is_some());       // slot 1, then the head wraps
/// assert_eq!((cq.head(), cq.phase()), (0, false));
/// assert!(cq.poll(new).is_none());       // old phase: nothing new in slot 0
/// # Ok::<(), physvec::nvme::QueueError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompletionRing {
    depth: u16,
    head: u16,
    phase: bool,
}

impl CompletionRing {
    /// A ring of `depth` entries over zeroed memory (expects phase 1 first).
    ///
    /// # Errors
    /// [`QueueError::InvalidDepth`] for fewer than 2 entries.
    ///
    /// ```
    /// assert!(physvec::nvme::CompletionRing::new(0).is_err());
    /// ```
    pub const fn new(depth: u16) -> Result<Self, QueueError> {
        if depth < 2 {
            return Err(QueueError::InvalidDepth { depth });
        }
        Ok(CompletionRing {
            depth,
            head: 0,
            phase: true,
        })
    }

    /// The slot to read the next entry from; also the value for the head doorbell.
    ///
    /// ```
    /// assert_eq!(physvec::nvme::CompletionRing::new(4).unwrap().head(), 0);
    /// ```
    pub const fn head(&self) -> u16 {
        self.head
    }

    /// The phase tag a new entry at [`Self::head`] carries.
    ///
    /// ```
    /// assert!(physvec::nvme::CompletionRing::new(4).unwrap().phase());
    /// ```
    pub const fn phase(&self) -> bool {
        self.phase
    }

    /// Entries in the queue.
    ///
    /// ```
    /// assert_eq!(physvec::nvme::CompletionRing::new(4).unwrap().depth(), 4);
    /// ```
    pub const fn depth(&self) -> u16 {
        self.depth
    }

    /// Looks at `entry`, the four dwords read from slot [`Self::head`]: if its phase tag
    /// (dword 3, bit 16) is the expected one, the entry is new: the head advances (the
    /// phase flips on wrap) and the entry comes back. Otherwise nothing changes.
    ///
    /// ```
    /// let mut cq = physvec::nvme::CompletionRing::new(4).unwrap();
    /// assert_eq!(cq.poll([0; 4]), None);
    /// assert_eq!(cq.poll([1, 2, 3, 1 << 16]), Some([1, 2, 3, 1 << 16]));
    /// ```
    pub fn poll(&mut self, entry: [u32; 4]) -> Option<[u32; 4]> {
        if Cqe::from_dwords(entry).phase != self.phase {
            return None;
        }
        self.head = next(self.head, self.depth);
        if self.head == 0 {
            self.phase = !self.phase;
        }
        Some(entry)
    }
}

/// The few completion-entry fields the ring needs (NVMe Base 2.0 §4.2.1). Private: the
/// crate's completion-entry type decodes the rest.
struct Cqe {
    sq_head: u16,
    phase: bool,
}

impl Cqe {
    const fn from_dwords(d: [u32; 4]) -> Self {
        Cqe {
            sq_head: (d[2] & 0xffff) as u16,
            phase: (d[3] >> 16) & 1 == 1,
        }
    }
}

/// A submission queue and its completion queue, with the SQ head taken from each
/// completion (what a driver with one SQ per CQ keeps per queue).
///
/// ```
/// use physvec::nvme::QueuePair;
/// let mut q = QueuePair::new(0, 2, 2)?;       // the admin queues
/// q.sq.push()?;
/// assert!(q.sq.is_full());
/// assert!(q.complete([0, 0, 1, 1 << 16]).is_some()); // SQHD 1 frees the slot
/// assert!(!q.sq.is_full());
/// # Ok::<(), physvec::nvme::QueueError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuePair {
    /// Queue identifier (0 for the admin queues).
    pub qid: u16,
    /// The submission side.
    pub sq: SubmissionRing,
    /// The completion side.
    pub cq: CompletionRing,
}

impl QueuePair {
    /// Queue `qid` with `sq_depth` / `cq_depth` entries.
    ///
    /// # Errors
    /// [`QueueError::InvalidDepth`].
    ///
    /// ```
    /// assert!(physvec::nvme::QueuePair::new(1, 16, 16).is_ok());
    /// ```
    pub const fn new(qid: u16, sq_depth: u16, cq_depth: u16) -> Result<Self, QueueError> {
        let sq = match SubmissionRing::new(sq_depth) {
            Ok(s) => s,
            Err(e) => return Err(e),
        };
        let cq = match CompletionRing::new(cq_depth) {
            Ok(c) => c,
            Err(e) => return Err(e),
        };
        Ok(QueuePair { qid, sq, cq })
    }

    /// [`CompletionRing::poll`], and on a new entry records its SQ head in the
    /// submission ring. An SQ head outside the queue (a broken controller) is ignored:
    /// the slots stay taken, so the host never overwrites an entry still in use.
    ///
    /// ```
    /// let mut q = physvec::nvme::QueuePair::new(1, 4, 4).unwrap();
    /// q.sq.push().unwrap();
    /// q.complete([0, 0, 1, 1 << 16]).unwrap();
    /// assert_eq!(q.sq.head(), 1);
    /// ```
    pub fn complete(&mut self, entry: [u32; 4]) -> Option<[u32; 4]> {
        let e = self.cq.poll(entry)?;
        let _ = self.sq.set_head(Cqe::from_dwords(e).sq_head);
        Some(e)
    }
}

crate::error::error_info!(QueueError);

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;

    #[test]
    fn doorbells_follow_the_stride() {
        for dstrd in 0..16u64 {
            let db = Doorbells::from_cap(dstrd << 32 | 0xffff);
            let stride = 4u64 << dstrd;
            assert_eq!(db.stride(), stride);
            assert_eq!(db.sq_tail(0), 0x1000);
            assert_eq!(db.cq_head(0), 0x1000 + stride);
            assert_eq!(db.sq_tail(u16::MAX), 0x1000 + 2 * 65535 * stride);
            assert_eq!(db.cq_head(u16::MAX), 0x1000 + (2 * 65535 + 1) * stride);
        }
        // Bits above DSTRD (NSSRS, CSS ...) do not leak into the stride.
        assert_eq!(Doorbells::from_cap(!(0xf << 32)).stride(), 4);
    }

    #[test]
    fn submission_ring_wraps_and_fills() {
        let mut sq = SubmissionRing::new(4).unwrap();
        assert_eq!([sq.push(), sq.push(), sq.push()], [Ok(0), Ok(1), Ok(2)]);
        assert_eq!(sq.push(), Err(QueueError::Full { depth: 4 }));
        assert_eq!(sq.outstanding(), 3);
        sq.set_head(2).unwrap();
        assert_eq!(sq.outstanding(), 1);
        assert_eq!([sq.push(), sq.push()], [Ok(3), Ok(0)]);
        assert_eq!(sq.tail(), 1);
        assert_eq!(sq.outstanding(), 3);
        assert!(sq.is_full());
        assert_eq!(
            sq.set_head(9),
            Err(QueueError::HeadOutOfRange { head: 9, depth: 4 })
        );
        assert_eq!(sq.head(), 2);
        let max = SubmissionRing::new(u16::MAX).unwrap();
        assert_eq!(max.outstanding(), 0);
        assert!(SubmissionRing::new(1).is_err());
    }

    #[test]
    fn completion_ring_phase_flips_on_wrap() {
        let mut cq = CompletionRing::new(3).unwrap();
        let with_phase = |p: bool, cid: u32| [0, 0, 0, cid | (u32::from(p) << 16)];
        for round in 0..4 {
            let p = round % 2 == 0;
            for slot in 0..3 {
                assert_eq!(cq.head(), slot);
                assert_eq!(cq.poll(with_phase(!p, 9)), None, "stale entry");
                assert!(cq.poll(with_phase(p, u32::from(slot))).is_some());
            }
            assert_eq!(cq.phase(), !p);
        }
    }

    #[test]
    fn pair_tracks_sq_head_and_ignores_a_bad_one() {
        let mut q = QueuePair::new(1, 4, 8).unwrap();
        for _ in 0..3 {
            q.sq.push().unwrap();
        }
        assert!(q.sq.is_full());
        // A completion with an impossible SQ head is consumed but frees nothing.
        assert!(q.complete([0, 0, 77, 1 << 16]).is_some());
        assert!(q.sq.is_full());
        assert!(q.complete([0, 0, 3, 1 << 16]).is_some());
        assert_eq!(q.sq.outstanding(), 0);
        assert_eq!(q.cq.head(), 2);
        assert_eq!(
            QueueError::Full { depth: 4 }.to_string(),
            "submission queue of 4 entries is full"
        );
        assert!(QueuePair::new(0, 4, 1).is_err());
    }
}
