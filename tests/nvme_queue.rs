//! Property test of the NVMe queue rings (`nvme::queue`) against a simulated controller:
//! random interleavings of submissions and completions, random depths and doorbell
//! strides. The host side uses only the crate's rings; the controller side is an
//! independent model that consumes entries and posts completions with phase tags, the
//! way a controller writes them into zeroed memory.

use std::collections::VecDeque;

use physvec::nvme::{Doorbells, QueueError, QueuePair};
use proptest::prelude::*;

/// The controller's view: its SQ head, its CQ tail and phase, the CQ memory.
struct Controller {
    sq_depth: u16,
    sq_head: u16,
    cq_mem: Vec<[u32; 4]>,
    cq_tail: u16,
    cq_phase: bool,
    /// Commands fetched and not yet completed, by CID.
    fetched: VecDeque<u16>,
}

impl Controller {
    /// Fetches every entry up to `sq_tail` (the doorbell value).
    fn fetch(&mut self, sq_tail: u16, sq_mem: &[u16]) {
        while self.sq_head != sq_tail {
            self.fetched.push_back(sq_mem[usize::from(self.sq_head)]);
            self.sq_head = (self.sq_head + 1) % self.sq_depth;
        }
    }
    /// Posts one completion if the CQ has room given the host's head doorbell.
    fn complete_one(&mut self, cq_head: u16) -> bool {
        let depth = self.cq_mem.len() as u16;
        if (self.cq_tail + 1) % depth == cq_head {
            return false; // CQ full
        }
        let Some(cid) = self.fetched.pop_front() else {
            return false;
        };
        let dw3 = u32::from(cid) | (u32::from(self.cq_phase) << 16);
        self.cq_mem[usize::from(self.cq_tail)] = [0, 0, u32::from(self.sq_head), dw3];
        self.cq_tail = (self.cq_tail + 1) % depth;
        if self.cq_tail == 0 {
            self.cq_phase = !self.cq_phase;
        }
        true
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn rings_agree_with_a_simulated_controller(
        sq_depth in 2u16..12,
        cq_depth in 2u16..12,
        ops in proptest::collection::vec(0u8..4, 1..300),
    ) {
        let mut q = QueuePair::new(1, sq_depth, cq_depth).unwrap();
        let mut sq_mem = vec![0u16; usize::from(sq_depth)];
        let mut ctrl = Controller {
            sq_depth,
            sq_head: 0,
            cq_mem: vec![[0; 4]; usize::from(cq_depth)],
            cq_tail: 0,
            cq_phase: true,
            fetched: VecDeque::new(),
        };
        let mut next_cid = 0u16;
        let mut in_flight: VecDeque<u16> = VecDeque::new();
        for op in ops {
            match op {
                // Submit (when the ring says there is room) and ring the doorbell.
                0 | 1 => match q.sq.push() {
                    Ok(slot) => {
                        sq_mem[usize::from(slot)] = next_cid;
                        in_flight.push_back(next_cid);
                        next_cid = next_cid.wrapping_add(1);
                        ctrl.fetch(q.sq.tail(), &sq_mem);
                    }
                    Err(e) => {
                        prop_assert_eq!(e, QueueError::Full { depth: sq_depth });
                        prop_assert_eq!(q.sq.outstanding(), sq_depth - 1);
                    }
                },
                // The controller completes one command.
                2 => {
                    ctrl.complete_one(q.cq.head());
                }
                // The host polls its CQ slot.
                _ => {
                    let raw = ctrl.cq_mem[usize::from(q.cq.head())];
                    if let Some(e) = q.complete(raw) {
                        let cid = (e[3] & 0xffff) as u16;
                        prop_assert_eq!(Some(cid), in_flight.pop_front(), "completions in order");
                    }
                }
            }
            prop_assert!(q.sq.outstanding() < sq_depth);
            prop_assert!(usize::from(q.sq.outstanding()) <= in_flight.len());
        }
        // Drain: everything submitted completes, exactly once, in order.
        while !in_flight.is_empty() {
            ctrl.complete_one(q.cq.head());
            let raw = ctrl.cq_mem[usize::from(q.cq.head())];
            let e = q.complete(raw).expect("a completion is pending");
            prop_assert_eq!(Some((e[3] & 0xffff) as u16), in_flight.pop_front());
        }
        prop_assert_eq!(q.sq.outstanding(), 0);
        prop_assert!(q.complete(ctrl.cq_mem[usize::from(q.cq.head())]).is_none());
    }

    #[test]
    fn doorbells_never_collide(dstrd in 0u64..16, a in any::<u16>(), b in any::<u16>()) {
        let db = Doorbells::from_cap(dstrd << 32);
        prop_assert_ne!(db.sq_tail(a), db.cq_head(b));
        if a != b {
            prop_assert_ne!(db.sq_tail(a), db.sq_tail(b));
        }
        prop_assert_eq!(db.cq_head(a) - db.sq_tail(a), 4 << dstrd);
    }
}

/// Stable names of the queue errors.
#[test]
fn queue_error_kinds() {
    assert_eq!(
        QueueError::InvalidDepth { depth: 1 }.kind(),
        "invalid_depth"
    );
    assert_eq!(QueueError::Full { depth: 2 }.kind(), "queue_full");
    assert_eq!(
        QueueError::HeadOutOfRange { head: 9, depth: 4 }.kind(),
        "head_out_of_range"
    );
}

/// Rings report their depth, and the submission ring's head only moves to a slot
/// inside it.
#[test]
fn rings_report_their_depth() {
    use physvec::nvme::{CompletionRing, SubmissionRing};
    let mut sq = SubmissionRing::new(8).unwrap();
    assert_eq!(sq.depth(), 8);
    assert_eq!(CompletionRing::new(4).unwrap().depth(), 4);
    assert_eq!(sq.push(), Ok(0));
    assert_eq!(sq.push(), Ok(1));
    assert_eq!(sq.outstanding(), 2);
    assert!(sq.set_head(8).is_err());
    assert_eq!((sq.head(), sq.outstanding()), (0, 2));
    sq.set_head(2).unwrap();
    assert_eq!((sq.head(), sq.outstanding()), (2, 0));
}
