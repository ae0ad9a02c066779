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
