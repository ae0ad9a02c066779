//! NVMe queue-ring interpreter: drives `QueuePair` with hostile completion entries (any
//! phase, any CID, any SQ head) and arbitrary submissions, and checks the rings against a
//! model: the tail and head stay inside the queue, at most `depth - 1` entries are
//! outstanding, a new entry is accepted exactly when its phase tag is the expected one,
//! and the phase flips exactly when the head wraps.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use physvec::nvme::{Doorbells, QueueError, QueuePair};

#[derive(Arbitrary, Debug)]
struct Input {
    sq_depth: u16,
    cq_depth: u16,
    cap: u64,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Submit,
    /// A completion entry as a (possibly broken) controller writes it.
    Complete([u32; 4]),
    SetHead(u16),
}

fuzz_target!(|input: Input| {
    let db = Doorbells::from_cap(input.cap);
    assert_eq!(db.cq_head(7) - db.sq_tail(7), db.stride());
    let Ok(mut q) = QueuePair::new(1, input.sq_depth, input.cq_depth) else {
        assert!(input.sq_depth < 2 || input.cq_depth < 2);
        return;
    };
    let (sqd, cqd) = (input.sq_depth, input.cq_depth);
    let mut model_outstanding = 0u32;
    for op in input.ops.iter().take(4096) {
        match op {
            Op::Submit => match q.sq.push() {
                Ok(slot) => {
                    assert!(slot < sqd);
                    model_outstanding += 1;
                }
                Err(e) => {
                    assert_eq!(e, QueueError::Full { depth: sqd });
                    assert_eq!(q.sq.outstanding(), sqd - 1);
                }
            },
            Op::Complete(raw) => {
                let (head, phase) = (q.cq.head(), q.cq.phase());
                let new = (raw[3] >> 16) & 1 == u32::from(phase);
                let got = q.complete(*raw);
                assert_eq!(got.is_some(), new);
                if new {
                    assert_eq!(got, Some(*raw));
                    let next = if head + 1 == cqd { 0 } else { head + 1 };
                    assert_eq!(q.cq.head(), next);
                    assert_eq!(q.cq.phase(), if next == 0 { !phase } else { phase });
                    let sqhd = (raw[2] & 0xffff) as u16;
                    if sqhd < sqd {
                        assert_eq!(q.sq.head(), sqhd);
                    }
                } else {
                    assert_eq!((q.cq.head(), q.cq.phase()), (head, phase));
                }
            }
            Op::SetHead(h) => {
                let before = q.sq;
                match q.sq.set_head(*h) {
                    Ok(()) => assert!(*h < sqd),
                    Err(_) => assert_eq!(q.sq, before),
                }
            }
        }
        assert!(q.sq.tail() < sqd && q.sq.head() < sqd && q.cq.head() < cqd);
        assert!(q.sq.outstanding() < sqd);
    }
    let _ = model_outstanding;
});
