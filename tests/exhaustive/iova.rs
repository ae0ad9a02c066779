//! Every sequence of up to [`DEPTH`] link / unlink / sync / free operations on one tiny
//! IOVA reservation (granule 4 KiB, offsets on a 2 KiB grid), run on [`SoftIommu`] and
//! on a model of the two-step API's rules written from its documentation.

use std::mem::discriminant;

use physvec::map::{
    Attrs, DataDirection, DmaMapper, IovaSpace, Linking, MapError, SoftIommu, Synced,
};
use physvec::{DmaAddr, PhysAddr, PhysRange};

const G: u64 = 0x1000;
const CELL: u64 = 0x800;
/// Operations per sequence (each sequence starts with a fresh reservation).
pub const DEPTH: usize = 4;

#[derive(Clone, Copy, Debug)]
enum Op {
    /// `link(phys, offset)` of `[o, e)`; `bad_sub`: phys's sub-granule offset is wrong.
    Link {
        o: u64,
        e: u64,
        bad_sub: bool,
    },
    Unlink {
        o: u64,
        e: u64,
    },
    Sync {
        o: u64,
        e: u64,
    },
    Free,
}

/// The model: which 2 KiB cells are linked (and to which physical address), the end of
/// an off-granule link below the reservation end, whether synced.
#[derive(Clone, Debug, Default)]
struct Model {
    cells: Vec<Option<u64>>,
    sealed: Option<u64>,
    synced: bool,
}

struct Cfg {
    pad: u64,
    size: u64,
}

impl Cfg {
    fn aligned(&self, off: u64) -> bool {
        (self.pad + off) % G == 0
    }
    fn granule(&self, off: u64) -> u64 {
        (self.pad + off) / G
    }
    /// Granules touched by `[o, e)`.
    fn granules(&self, o: u64, e: u64) -> std::ops::Range<u64> {
        self.granule(o)..(self.pad + e).div_ceil(G)
    }
    fn phys_for(&self, o: u64, tag: usize, bad_sub: bool) -> u64 {
        let sub = ((self.pad + o) % G) ^ if bad_sub { CELL } else { 0 };
        0x100_0000 * (tag as u64 + 1) + sub
    }
}

impl Model {
    fn linked_bytes(&self) -> u64 {
        self.cells.iter().flatten().count() as u64 * CELL
    }
    fn mapped_granules(&self, c: &Cfg) -> Vec<u64> {
        let mut v: Vec<u64> = (0..self.cells.len() as u64)
            .filter(|&i| self.cells[i as usize].is_some())
            .map(|i| c.granule(i * CELL))
            .collect();
        v.dedup();
        v
    }

    /// The documented rules of `link`, in the documented order.
    fn link(&mut self, c: &Cfg, o: u64, e: u64, phys: u64) -> Result<(), MapError> {
        let len = e - o;
        if e > c.size {
            return Err(MapError::OutOfReservation {
                offset: o,
                len,
                size: c.size,
            });
        }
        let boundary = MapError::MergeBoundary {
            offset: o,
            phys,
            granule: G,
        };
        // A link that ended off-granule had to be the last.
        if self.sealed.is_some_and(|s| s <= o) {
            return Err(boundary);
        }
        if o > 0 {
            // Every link but the first starts on a granule boundary (IOVA and phys).
            if !c.aligned(o) || phys % G != 0 {
                return Err(boundary);
            }
        } else if phys % G != c.pad {
            return Err(MapError::SubGranuleMismatch { phys, dma: 0 });
        }
        // Every link but the last ends on a granule boundary: an off-granule link may
        // not end below a link still present.
        let ends_off = (phys + len) % G != 0;
        let highest = (0..self.cells.len() as u64)
            .filter(|&i| self.cells[i as usize].is_some())
            .map(|i| (i + 1) * CELL)
            .max()
            .unwrap_or(0);
        if ends_off && e < c.size && highest > e {
            return Err(boundary);
        }
        let mapped = self.mapped_granules(c);
        if c.granules(o, e).any(|g| mapped.contains(&g)) {
            return Err(MapError::AlreadyMapped { iova: 0 });
        }
        for i in o / CELL..e / CELL {
            self.cells[i as usize] = Some(phys + (i * CELL - o));
        }
        if ends_off && e < c.size {
            self.sealed = Some(e);
        }
        Ok(())
    }

    fn unlink(&mut self, c: &Cfg, o: u64, e: u64) -> Result<(), MapError> {
        let len = e - o;
        let start_ok = o == 0 || c.aligned(o);
        let end_ok = e == c.size || Some(e) == self.sealed || c.aligned(e);
        // Every byte must be linked, except those past an off-granule last link in its
        // granule (they can never be linked).
        let dead = |off: u64| {
            self.sealed
                .is_some_and(|s| s <= off && c.granule(off) == c.granule(s - 1))
        };
        let all_linked =
            (o / CELL..e / CELL).all(|i| self.cells[i as usize].is_some() || dead(i * CELL));
        if !start_ok || !end_ok || !all_linked {
            return Err(MapError::NotLinked { offset: o, len });
        }
        for i in o / CELL..e / CELL {
            self.cells[i as usize] = None;
        }
        if self.sealed.is_some_and(|s| s > o && s <= e) {
            self.sealed = None;
        }
        Ok(())
    }

    fn sync(&mut self, c: &Cfg, o: u64, e: u64) -> Result<(), MapError> {
        if self.linked_bytes() == 0 {
            return Err(MapError::SyncBeforeLink);
        }
        if e <= o || e > c.size {
            return Err(MapError::SyncOutOfRange {
                offset: o,
                len: e - o,
            });
        }
        self.synced = true;
        Ok(())
    }
}

enum Space {
    Linking(IovaSpace<Linking>),
    Synced(IovaSpace<Synced>),
    Gone,
}

const TO: DataDirection = DataDirection::ToDevice;

fn same(got: &Result<(), MapError>, want: &Result<(), MapError>) -> bool {
    match (got, want) {
        (Ok(()), Ok(())) => true,
        (Err(a), Err(b)) => discriminant(a) == discriminant(b),
        _ => false,
    }
}

/// Runs one sequence; returns a description of the first disagreement.
fn run(iommu: &SoftIommu, c: &Cfg, ops: &[Op]) -> Result<(), String> {
    let no = Attrs::empty();
    let mut space = Space::Linking(
        iommu
            .reserve(PhysAddr::new(c.pad), c.size)
            .map_err(|e| format!("reserve: {e:?}"))?
            .ok_or("no reservation")?,
    );
    let base = match &space {
        Space::Linking(s) => s.addr().as_u64(),
        _ => unreachable!(),
    };
    let mut m = Model {
        cells: vec![None; (c.size / CELL) as usize],
        ..Model::default()
    };
    for (step, &op) in ops.iter().enumerate() {
        let fail = |what: String| format!("step {step} {op:?}: {what}");
        let (got, want) = match (op, std::mem::replace(&mut space, Space::Gone)) {
            (_, Space::Gone) => return Ok(()),
            (Op::Link { o, e, bad_sub }, Space::Linking(mut s)) => {
                let phys = c.phys_for(o, step, bad_sub);
                let got = iommu.link(&mut s, PhysRange::new(phys, e - o), o, TO, no);
                space = Space::Linking(s);
                (got, m.link(c, o, e, phys))
            }
            // Link after sync does not compile: nothing to run.
            (Op::Link { .. }, s @ Space::Synced(_)) => {
                space = s;
                continue;
            }
            (Op::Unlink { o, e }, Space::Linking(mut s)) => {
                let got = iommu.unlink(&mut s, o, e - o, TO, no);
                space = Space::Linking(s);
                (got, m.unlink(c, o, e))
            }
            (Op::Unlink { o, e }, Space::Synced(mut s)) => {
                let got = iommu.unlink(&mut s, o, e - o, TO, no);
                space = Space::Synced(s);
                (got, m.unlink(c, o, e))
            }
            (Op::Sync { o, e }, Space::Linking(s)) => {
                let got = match iommu.sync(s, o, e - o) {
                    Ok(s) => {
                        space = Space::Synced(s);
                        Ok(())
                    }
                    Err(err) => {
                        space = Space::Linking(err.space);
                        Err(err.error)
                    }
                };
                (got, m.sync(c, o, e))
            }
            (Op::Sync { .. }, s @ Space::Synced(_)) => {
                space = s;
                continue;
            }
            (Op::Free, s) => {
                let got = match s {
                    Space::Linking(s) => iommu.free(s),
                    Space::Synced(s) => iommu.free(s),
                    Space::Gone => Ok(()),
                };
                let linked = m.linked_bytes();
                let want = if linked > 0 {
                    Err(MapError::StillLinked { bytes: linked })
                } else {
                    Ok(())
                };
                if got != want {
                    return Err(fail(format!("got {got:?}, model {want:?}")));
                }
                // Free gives everything back, links or not.
                if !iommu.is_idle() {
                    return Err(fail("not idle after free".into()));
                }
                return Ok(());
            }
        };
        if !same(&got, &want) {
            return Err(fail(format!("got {got:?}, model {want:?} (model {m:?})")));
        }
        let linked = match &space {
            Space::Linking(s) => s.linked_bytes(),
            Space::Synced(s) => s.linked_bytes(),
            Space::Gone => 0,
        };
        if linked != m.linked_bytes() {
            return Err(fail(format!(
                "linked {linked:#x}, model {:#x}",
                m.linked_bytes()
            )));
        }
        // What the device sees: every linked cell translates to its physical address,
        // every granule without a linked cell translates to nothing.
        let mapped = m.mapped_granules(c);
        for (i, cell) in m.cells.iter().enumerate() {
            let off = i as u64 * CELL;
            let t = iommu
                .translate(DmaAddr::new(base + off))
                .map(|p| p.as_u64());
            let ok = match cell {
                Some(p) => t == Some(*p),
                None => mapped.contains(&c.granule(off)) || t.is_none(),
            };
            if !ok {
                return Err(fail(format!(
                    "offset {off:#x} translates to {t:x?}, model {cell:x?}"
                )));
            }
        }
    }
    match space {
        Space::Linking(s) => iommu.destroy(s, TO, Attrs::empty()),
        Space::Synced(s) => iommu.destroy(s, TO, Attrs::empty()),
        Space::Gone => Ok(()),
    }
    .map_err(|e| format!("destroy: {e:?}"))?;
    if iommu.is_idle() {
        Ok(())
    } else {
        Err("not idle after destroy".into())
    }
}

/// The operation alphabet for one reservation. Small reservations (up to 3 cells): every
/// link and unlink of `[o, e)` with `o < e` on the 2 KiB grid. Larger ones: links of one
/// or two cells at every granule start and one cell in, unlinks of each granule, of half
/// a granule and of everything. Both: one link with a wrong sub-granule offset, a sync of
/// the whole transfer and of its first cell, free.
fn alphabet(c: &Cfg) -> Vec<Op> {
    let pts: Vec<u64> = (0..=c.size / CELL).map(|i| i * CELL).collect();
    let mut ops = Vec::new();
    if pts.len() <= 4 {
        for (i, &o) in pts.iter().enumerate() {
            for &e in &pts[i + 1..] {
                ops.push(Op::Link {
                    o,
                    e,
                    bad_sub: false,
                });
                ops.push(Op::Unlink { o, e });
            }
        }
    } else {
        for o in (0..c.size).step_by(G as usize).chain([CELL]) {
            for e in [o + CELL, o + G].into_iter().filter(|&e| e <= c.size) {
                ops.push(Op::Link {
                    o,
                    e,
                    bad_sub: false,
                });
            }
            if o % G == 0 {
                ops.push(Op::Unlink {
                    o,
                    e: (o + G).min(c.size),
                });
                if o > 0 {
                    ops.push(Op::Unlink { o, e: o + CELL });
                }
            }
        }
        ops.push(Op::Unlink { o: 0, e: c.size });
    }
    ops.push(Op::Link {
        o: 0,
        e: CELL,
        bad_sub: true,
    });
    ops.push(Op::Sync { o: 0, e: c.size });
    ops.push(Op::Sync { o: 0, e: CELL });
    ops.push(Op::Free);
    ops
}

/// Configurations: (pad, size) of the reservation. The first is the shape of issue 15's
/// sequence (three granules), the second starts mid-granule.
pub const CONFIGS: [(u64, u64); 2] = [(0, 0x3000), (0x800, 0x1800)];

/// Runs every sequence of up to `DEPTH` operations for every configuration; returns the
/// number of sequences run.
pub fn check_all() -> (u64, Vec<usize>) {
    let mut n = 0u64;
    let mut sizes = Vec::new();
    for (pad, size) in CONFIGS {
        let c = Cfg { pad, size };
        let ops = alphabet(&c);
        // One IOMMU for all sequences: each leaves it idle (checked).
        let iommu = SoftIommu::new_4k();
        let k = ops.len();
        sizes.push(k);
        let mut idx = [0usize; DEPTH];
        // Sequences of exactly DEPTH cover every shorter one as a prefix (each prefix is
        // checked step by step), so only full-length sequences run.
        loop {
            let seq: Vec<Op> = idx.iter().map(|&i| ops[i]).collect();
            if let Err(e) = run(&iommu, &c, &seq) {
                panic!("pad {pad:#x} size {size:#x} {seq:?}: {e}");
            }
            n += 1;
            let mut d = DEPTH;
            loop {
                if d == 0 {
                    break;
                }
                d -= 1;
                idx[d] += 1;
                if idx[d] < k {
                    break;
                }
                idx[d] = 0;
            }
            if idx.iter().all(|&i| i == 0) {
                break;
            }
        }
    }
    (n, sizes)
}

/// The sequence of issue 15, alone (its failure message is the clearest).
pub fn issue_15_sequence() {
    let c = Cfg {
        pad: 0,
        size: 0x3000,
    };
    let ops = [
        Op::Link {
            o: 0,
            e: 0x1000,
            bad_sub: false,
        },
        Op::Link {
            o: 0x2000,
            e: 0x3000,
            bad_sub: false,
        },
        Op::Unlink {
            o: 0x2000,
            e: 0x3000,
        },
        Op::Link {
            o: 0x1000,
            e: 0x1800,
            bad_sub: false,
        },
    ];
    run(&SoftIommu::new_4k(), &c, &ops).unwrap();
}
