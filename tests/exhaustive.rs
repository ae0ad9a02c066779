//! Exhaustive small-scope checks (issue 15): every input in a small universe, compared
//! with a direct model of the rules. Universe sizes and counts are in TESTING.md; each
//! test prints its count (`cargo test --test exhaustive -- --nocapture`).

#[path = "exhaustive/iova.rs"]
mod iova;

#[test]
fn iova_issue_15_sequence() {
    iova::issue_15_sequence();
}

#[test]
fn iova_every_sequence_of_four_ops() {
    let (n, alphabets) = iova::check_all();
    println!(
        "exhaustive iova: {n} sequences of {} ops over alphabets of {alphabets:?} ops, configs {:x?}",
        iova::DEPTH,
        iova::CONFIGS
    );
}

#[path = "exhaustive/prp.rs"]
mod prp;

#[test]
fn prp_every_layout_encodes_and_decodes_as_the_model() {
    use physvec::nvme::MemoryPageSize;
    for (mps, pages) in [
        (MemoryPageSize::SIZE_4K, 4),
        (MemoryPageSize::new(0x2000).unwrap(), 3),
    ] {
        let (layouts, encodings) = prp::check_layouts(mps, pages);
        println!(
            "exhaustive prp: mps {:#x}: {layouts} layouts, {encodings} encodings",
            mps.get()
        );
    }
}

#[test]
fn prp_every_small_pointer_set_decodes_as_the_model() {
    use physvec::nvme::MemoryPageSize;
    for mps in [
        MemoryPageSize::SIZE_4K,
        MemoryPageSize::new(0x2000).unwrap(),
    ] {
        let n = prp::check_decoder(mps);
        println!("exhaustive prp decode: mps {:#x}: {n} cases", mps.get());
    }
}

#[path = "exhaustive/sgl.rs"]
mod sgl;

#[test]
fn sgl_every_chain_of_four_descriptors_decodes_as_the_model() {
    let (chains, decodes, deep) = sgl::check_all(4);
    println!("exhaustive sgl: {chains} chains ({deep} with two segments), {decodes} decodes");
}

#[path = "exhaustive/sg.rs"]
mod sg;

#[test]
fn sg_every_table_of_six_entries_walks_and_imports_as_the_model() {
    let (tables, walks) = sg::check_all();
    println!(
        "exhaustive sg: {tables} tables of up to {} entries, {walks} walks",
        sg::SLOTS
    );
}
