//! Coalescing of adjacent items into runs, remembering which input indices each run
//! came from (for error reports that name the offending input segment).

#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

use super::descriptor::SglItem;

/// A maximal run of contiguous data (or adjacent bit buckets) and the input indices of
/// its first and last pieces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Run {
    pub item: SglItem,
    pub first: usize,
    pub last: usize,
}

/// Iterator of runs; yields `Err(index)` for an empty input item (a zero-length bit
/// bucket, or a zero-length range cast from raw bytes) and then stops.
#[derive(Clone)]
pub(crate) struct Runs<I> {
    inner: I,
    index: usize,
    pending: Option<Run>,
    deferred: Option<usize>,
    failed: bool,
}

impl<I: Iterator<Item = SglItem>> Runs<I> {
    pub fn new(inner: I) -> Self {
        Self {
            inner,
            index: 0,
            pending: None,
            deferred: None,
            failed: false,
        }
    }
}

fn valid(item: SglItem) -> bool {
    match item {
        // A range is never empty (its type guarantees it).
        SglItem::Data(_) => true,
        SglItem::BitBucket(l) => l > 0,
    }
}

impl<I: Iterator<Item = SglItem>> Iterator for Runs<I> {
    type Item = Result<Run, usize>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if let Some(i) = self.deferred.take() {
            self.failed = true;
            return Some(Err(i));
        }
        loop {
            let Some(item) = self.inner.next() else {
                return self.pending.take().map(Ok);
            };
            let i = self.index;
            // One per item pulled from `inner` (a slice's items in the crate's only
            // caller), so `index <= len <= isize::MAX`.
            #[allow(clippy::arithmetic_side_effects)]
            {
                self.index += 1;
            }
            if !valid(item) {
                // Report the run before the bad item first: it comes earlier.
                if let Some(p) = self.pending.take() {
                    self.deferred = Some(i);
                    return Some(Ok(p));
                }
                self.failed = true;
                return Some(Err(i));
            }
            match self.pending {
                None => {
                    self.pending = Some(Run {
                        item,
                        first: i,
                        last: i,
                    })
                }
                Some(p) => match p.item.merge(item) {
                    Some(m) => {
                        self.pending = Some(Run {
                            item: m,
                            first: p.first,
                            last: i,
                        })
                    }
                    None => {
                        self.pending = Some(Run {
                            item,
                            first: i,
                            last: i,
                        });
                        return Some(Ok(p));
                    }
                },
            }
        }
    }
}
