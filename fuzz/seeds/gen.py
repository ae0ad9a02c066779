#!/usr/bin/env python3
"""Writes the committed seed corpora (fuzz/seeds/<target>/<name>) from the unit-test
vectors of the decoders, encoders and mappers, in the byte format `arbitrary` 1.x
decodes the targets' `Input` structs from:

- integers: little endian, full width; bool: one byte (bit 0); Option: bool then value;
- enums: a u32 `v` selects variant `(v * count) >> 32`;
- Vec (not last field): per element a `1` byte then the element, then a `0` byte;
- the last field takes the rest: `&[u8]` = raw bytes; Vec = (1, element)*.

Run from anywhere: `python3 fuzz/seeds/gen.py` (rewrites the seed directories).
"""
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def u8(v): return struct.pack("<B", v & 0xFF)
def u16(v): return struct.pack("<H", v & 0xFFFF)
def u32(v): return struct.pack("<I", v & 0xFFFFFFFF)
def u64(v): return struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)
def bool_(b): return u8(1 if b else 0)
def opt(v, enc): return bool_(False) if v is None else bool_(True) + enc(v)
def variant(i, n): return u32(-(-(i << 32) // n))  # smallest v with (v*n)>>32 == i
def vec(items): return b"".join(b"\x01" + x for x in items) + b"\x00"
def rest_vec(items): return b"".join(b"\x01" + x for x in items)


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def entries(*xs): return b"".join(u64(x) for x in xs)


# ---------------------------------------------------------------- NVMe descriptors
def desc(addr, length, typ, sub=0):
    return u64(addr) + u32(length) + b"\0\0\0" + u8(typ << 4 | sub)
def db(a, l): return desc(a, l, 0)
def bb(l): return desc(0, l, 1)
def seg(a, n): return desc(a, 16 * n, 2)
def last(a, n): return desc(a, 16 * n, 3)
def keyed(a, l, key): return u64(a) + u8(l) + u8(l >> 8) + u8(l >> 16) + u32(key) + u8(4 << 4)


# ---------------------------------------------------------------- prp_decode
def prp(name, prp1, prp2, length, base=0, mem=b"", mps=0, budget=1024, compat=False,
        fold=False):
    short = length if length < 0x10000 else None
    write("prp_decode", name, u64(prp1) + u64(prp2) + u64(length) + u8(mps) + u16(budget)
          + bool_(compat) + bool_(fold) + opt(short, u16) + u32(base) + mem)

prp("one_page", 0x10000, 0, 0x1000)
prp("prp2_data", 0x10800, 0x11000, 0x1000)
prp("prp1_unaligned_strict", 0x10802, 0x11000, 0x1000)
prp("prp1_unaligned_compat", 0x10802, 0x11000, 0x1000, compat=True)
prp("prp2_offset", 0x10000, 0x11200, 0x2000)
prp("list_offset_0x10", 0x10000, 0x80010, 0x4000, 0x80010, entries(0x20000, 0x30000, 0x40000))
prp("list_entry_offset", 0x10000, 0x80000, 0x3000, 0x80000, entries(0x20000, 0x30100))
prp("chained", 0x10000, 0x80FF0, 0x4000, 0x80FF0, entries(0x20000, 0x81000, 0x21000, 0x22000))
prp("chain_ptr_offset", 0x10000, 0x80FF0, 0x4000, 0x80FF0, entries(0x20000, 0x90008))
prp("list_unreadable", 0x10000, 0x80000, 0x3000)
prp("list_tail_slot", 0x10000, 0x80FFC, 0x3000, 0x80FF8, entries(0x20000, 0x30000), compat=True)
# Every page folds onto one qword 0x80000: a list page chaining to itself forever.
prp("self_chain_fold", 0x10000, 0x80000, 0xFFFFFFFFFFFFFFFF, mem=entries(0x80000), fold=True)
prp("mps_64k", 0x10000, 0x80000, 0x30000, 0x80000, entries(0x100000, 0x110000), mps=4)
prp("end_of_space", 0xFFFFFFFFFFFFF000, 0, 0x1000)

# ---------------------------------------------------------------- sgl_decode
ALL, QEMU = 0x0D, 0x01  # SGLS bits as the target maps them

def sgl(name, sgl1, length, base=0, mem=b"", sgls=ALL, budget=1024, compat=False, fold=False):
    short = length if length < 0x10000 else None
    write("sgl_decode", name, sgl1 + u64(length) + opt(short, u16) + u8(sgls) + u16(budget)
          + bool_(compat) + bool_(fold) + u32(base) + mem)

sgl("dptr_data", db(0x10000, 0x1000), 0x1000, sgls=QEMU)
sgl("dptr_short", db(0x10000, 0x800), 0x1000, sgls=QEMU)
sgl("dptr_long_compat", db(0x10000, 0x2000), 0x1000, sgls=QEMU, compat=True)
sgl("last_three", last(0x80000, 3), 0x600, 0x80000,
    db(0x10001, 0x100) + db(0x20003, 0x200) + db(0x30005, 0x300), sgls=QEMU)
sgl("seg_then_last", seg(0x80000, 2), 0x600, 0x80000,
    db(0x10000, 0x200) + last(0x80020, 2) + db(0x20000, 0x200) + db(0x30000, 0x200))
sgl("last_then_seg", last(0x80000, 2), 0x600, 0x80000,
    db(0x10000, 0x200) + last(0x80020, 2) + db(0x20000, 0x200) + db(0x30000, 0x200))
sgl("seg_len_24", desc(0x80000, 24, 2), 0x600, 0x80000, db(0x10000, 0x200))
sgl("seg_in_middle", last(0x80000, 2), 0x400, 0x80000, last(0x80020, 1) + db(0x20000, 0x200))
sgl("excess_block", last(0x80000, 2), 0x200, 0x80000, db(0x10000, 0x200) + db(0x20000, 0x200))
sgl("bucket_qemu", last(0x80000, 2), 0x400, 0x80000, db(0x10000, 0x200) + bb(0x200),
    sgls=QEMU, compat=True)
sgl("keyed", last(0x80000, 4), 0x330, 0x80000,
    keyed(0x10000, 0x200, 9) + bb(0x10) + bb(0x20) + db(0x10200, 0x100))
sgl("subtype_1", desc(0x10000, 0x200, 0, 1), 0x200)
sgl("zero_len_block", last(0x80000, 2), 0x200, 0x80000, db(0x10000, 0) + db(0x20000, 0x200))
sgl("self_loop", seg(0x80000, 1), 0x200, 0x80000, seg(0x80000, 1))
sgl("two_cycle", seg(0x80000, 2), 0xFFFFFFFFFFFFFFFF, 0x80000,
    db(0x10000, 0x10) + seg(0x80020, 2) + db(0x20000, 0x10) + seg(0x80000, 2))
sgl("qemu_defect_chain", seg(0x80000, 2), 0x400, 0x80000,
    db(0x10000, 0x100) + seg(0x80020, 2) + db(0x20000, 0x100) + last(0x80040, 2)
    + db(0x30000, 0x100) + db(0x40000, 0x100))
sgl("unreadable", last(0xA0000, 1), 0x200)
# Folded: every segment is the same 32 bytes, [Data, Segment → itself] repeated.
sgl("fold_chain", seg(0x80000, 2), 0xFFFFFFFFFFFFFFFF, mem=db(0x10000, 0x10) + seg(0x80000, 2),
    fold=True)
sgl("dword_gran", db(0x10001, 0x200), 0x200, sgls=0x02 | 0x0C)

# ---------------------------------------------------------------- sg_import
def sg_data(pfn, length, offset=0, last=False):
    return variant(0, 3) + u16(pfn) + u16(offset) + u32(length) + bool_(last)
def sg_chain(chunk, slot, skew=0): return variant(1, 3) + u8(chunk) + u8(slot) + u8(skew)
def sg_raw(link, offset, length): return variant(2, 3) + u64(link) + u32(offset) + u32(length)

def sgi(name, chunks, start=(0, 0), nents=None, max_entries=64, high=False):
    write("sg_import", name, vec([vec(c) for c in chunks]) + u8(start[0]) + u8(start[1])
          + opt(nents, u8) + u8(max_entries) + bool_(high))

sgi("two_merge", [[sg_data(0x10, 0x1000), sg_data(0x11, 0x800, last=True)]])
sgi("chained", [[sg_data(0x1, 0x1000), sg_chain(1, 0)], [sg_data(0x2, 0x1000, last=True)]])
sgi("nents", [[sg_data(0x1, 0x1000), sg_chain(1, 0)], [sg_data(0x2, 0x1000, last=True)]],
    nents=2)
sgi("truncated", [[sg_data(0x1, 0x1000, last=True)]], nents=3)
sgi("self_loop", [[sg_data(0x1, 0x1000), sg_chain(0, 0)]])
sgi("chain_to_chain", [[sg_data(0x1, 0x1000), sg_chain(1, 0)], [sg_chain(0, 0)]])
sgi("chain_misaligned", [[sg_data(0x1, 0x1000), sg_chain(0, 0, 0xFF)]])
sgi("first_is_chain", [[sg_chain(0, 1), sg_data(0x1, 0x1000, last=True)]])
sgi("bad_page", [[sg_raw(0x1234, 0, 0x1000)]])
sgi("empty_entry", [[sg_data(0x1, 0)]])
sgi("overflow", [[sg_data(0xFFFF, 0xFFFFFFFF, 0xFFFF, last=True)]], high=True)
# A maximal chain: 8 chunks of 16 slots, each ending in a chain to the next.
full = [[sg_data(16 * c + i, 0x1000) for i in range(15)] + [sg_chain(c + 1, 0)] for c in range(7)]
full.append([sg_data(0x800 + i, 0x1000, last=(i == 15)) for i in range(16)])
sgi("max_chain", full, max_entries=255)
# A long cycle through all chunks back to the start.
ring = [[sg_data(c, 0x1000), sg_chain((c + 1) % 8, 0)] for c in range(8)]
sgi("ring", ring, max_entries=255)

# ---------------------------------------------------------------- prp_roundtrip
def pr_pages(pfn, pages): return variant(0, 3) + u32(pfn) + u8(pages)
def pr_contig(l): return variant(1, 3) + u16(l)
def pr_raw(a, l): return variant(2, 3) + u64(a) + u32(l)

def prt(name, pieces, mps=0, first_off=0, pool=4, head=0):
    write("prp_roundtrip", name, u8(mps) + u16(first_off) + u8(pool) + u16(head)
          + rest_vec(pieces))

prt("spdk_list_of_three", [pr_raw(0x100800, 0x3000)])
prt("two_ranges", [pr_raw(0x100800, 0x800), pr_raw(0x200000, 0x2000)])
prt("contig_halves", [pr_raw(0x1000, 0x800), pr_contig(0x800)])
prt("prp2_data", [pr_raw(0x10800, 0x1000)])
prt("chain_small_first", [pr_pages(0x100, 8), pr_pages(0x300, 8)], first_off=0xFF0, pool=7)
prt("incompatible", [pr_raw(0x1000, 0x800), pr_raw(0x3000, 0x1000)])
prt("mps_16k", [pr_pages(0x10, 3), pr_pages(0x40, 2)], mps=2, head=0x200)
prt("too_few_pages", [pr_pages(0x100, 8)] * 6, pool=1)

# ---------------------------------------------------------------- sgl_roundtrip
def sr_data(a, l): return variant(0, 4) + u64(a) + u32(l)
def sr_contig(l): return variant(1, 4) + u32(l)
def sr_bucket(l): return variant(2, 4) + u32(l)
def sr_huge(pfn, gib): return variant(3, 4) + u32(pfn) + u8(gib)

def srt(name, pieces, sgls=ALL, key=None, workaround=False, slots=15, pool=4):
    write("sgl_roundtrip", name, u8(sgls) + opt(key, u32) + bool_(workaround) + u8(slots)
          + u8(pool) + rest_vec(pieces))

srt("two_blocks", [sr_data(0x10000, 0x200), sr_data(0x20010, 0x300)])
srt("single_in_dptr", [sr_data(0x10000, 0x1000)])
srt("bucket_between", [sr_data(0x10000, 0x200), sr_bucket(0x100), sr_data(0x10200, 0x100)])
srt("keyed", [sr_data(0x10000, 0x200), sr_contig(0x200)], key=0x1234)
srt("huge_5g", [sr_huge(0, 4), sr_bucket(0x200)])
srt("chain_slots_2", [sr_data(0x10000 * i, 0x100) for i in range(1, 7)], slots=1, pool=7)
srt("chain_workaround", [sr_data(0x10000 * i, 0x100) for i in range(1, 7)], slots=2, pool=7,
    workaround=True, sgls=QEMU)
srt("dword_reject", [sr_data(0x10001, 0x100)], sgls=0x02 | 0x0C)

# ---------------------------------------------------------------- mapper_ops
NOPS = 9
def m_reserve(hint, size): return variant(0, NOPS) + u16(hint) + u32(size)
def m_link(s, k, pfn, pages, tail): return variant(1, NOPS) + u8(s) + u8(k) + u32(pfn) + u8(pages) + u16(tail)
def m_rawlink(s, phys, ln, off): return variant(2, NOPS) + u8(s) + u64(phys) + u32(ln) + u64(off)
def m_sync(s, whole=True, off=0, size=0): return variant(3, NOPS) + u8(s) + bool_(whole) + u32(off) + u32(size)
def m_unlink(s, l, raw=None):
    return variant(4, NOPS) + u8(s) + u8(l) + opt(raw, lambda r: u32(r[0]) + u32(r[1]))
def m_free(s): return variant(5, NOPS) + u8(s)
def m_destroy(s): return variant(6, NOPS) + u8(s)
def m_map(phys, ln, d=2): return variant(7, NOPS) + u64(phys) + u32(ln) + u8(d)
def m_unmap(i, bogus=False): return variant(8, NOPS) + u8(i) + bool_(bogus)

def mops(name, ops, granule=0, aperture=24, mask=1, large=True):
    write("mapper_ops", name, u8(granule) + u8(aperture) + u8(mask) + bool_(large)
          + rest_vec(ops))

# The module example: 6 KiB at sub-granule offset 0x800, two links, one sync.
mops("two_step", [m_reserve(0x800, 0x60), m_rawlink(0, 0x100800, 0x800, 0),
                  m_rawlink(0, 0x200000, 0x1000, 0x800), m_sync(0), m_unlink(0, 0, (0, 0x1800)),
                  m_free(0)])
mops("map_phys", [m_map(0x100800, 0x800), m_map(0x300000, 0x3000, 0), m_unmap(0, True),
                  m_unmap(0)])
# mapper_ops crash-c691828f (see tests/hardening.rs regressions).
mops("regression_off_granule_below", [m_reserve(0, 0x7FFFFFFF), m_link(0, 5, 0x500, 1, 11565),
                                      m_link(0, 0, 0x600, 1, 11565), m_unlink(0, 0),
                                      m_link(0, 0, 0, 0, 0)])
mops("destroy_linked", [m_reserve(0x10, 0x1000), m_link(0, 0, 0x10, 3, 0), m_link(0, 4, 0x20, 2, 0x10),
                        m_sync(0), m_destroy(0)], granule=2)
mops("free_still_linked", [m_reserve(0, 0x100), m_link(0, 0, 0x10, 1, 0), m_free(0)])

# ---------------------------------------------------------------- rdma_pages
def rp_pages(pfn, pages, tail=0): return variant(0, 3) + u32(pfn) + u8(pages) + u16(tail)
def rp_contig(l): return variant(1, 3) + u32(l)
def rp_raw(a, l): return variant(2, 3) + u64(a) + u32(l)

def rdp(name, pieces, max_pages=8, sg_offset=0, shift=0, head=0):
    write("rdma_pages", name, u8(shift) + u8(max_pages) + u32(sg_offset << 1) + u16(head)
          + rest_vec(pieces))

rdp("module_example", [rp_raw(0x100200, 0xE00), rp_raw(0x101000, 0x1000)], max_pages=4)
rdp("gap_ends_prefix", [rp_raw(0x10000, 0x3000), rp_raw(0x40000, 0x800), rp_raw(0x90000, 0x1000)])
rdp("list_fills", [rp_raw(0x10000, 0x3000), rp_raw(0x40000, 0x800), rp_raw(0x90000, 0x1000)],
    max_pages=2)
rdp("unaligned_first_fills", [rp_raw(0x10800, 0x2000)], max_pages=1)
rdp("sg_offset", [rp_raw(0x10000, 0x3000), rp_pages(0x50, 2)], sg_offset=0x1800)
rdp("contig_merge", [rp_raw(0x10100, 0x100), rp_contig(0x2000), rp_contig(0x10)], shift=1)

# ---------------------------------------------------------------- builder_ops
def b_raw(a, l): return variant(0, 4) + u64(a) + u64(l)
def b_next(l): return variant(1, 4) + u16(l)
def b_pfn(p, s): return variant(2, 4) + u64(p) + u8(s)
def b_page(a): return variant(3, 4) + u64(a)

def bops(name, ops, max_seg=0x10000, boundary=32, mask=64, align=0, max_segments=16):
    write("builder_ops", name, u64(max_seg) + u8(boundary) + u8(mask) + u8(align)
          + u8(max_segments) + rest_vec(ops))

bops("pages_coalesce", [b_pfn(0x1000 + i, 0) for i in range(8)])
bops("boundary_split", [b_raw(0xFFFF_F000, 0x2000)], boundary=32)
bops("max_segment_split", [b_raw(0x10000, 0x30000)], max_seg=0x10000)
bops("next_chain", [b_raw(0x10000, 0x800), b_next(0x800), b_next(0x1000), b_page(0x80000)])
bops("above_mask", [b_raw(0x1_0000_0000, 0x1000)], mask=32)
bops("end_of_space", [b_raw(0xFFFFFFFFFFFFF000, 0x1000)], mask=64)
