//! A minimal libtest-compatible runner for test binaries built with `harness = false`,
//! so that a test needing QEMU is reported as *ignored* (with its reason) in the summary
//! when `qemu-system-x86_64` is missing, instead of passing in 0.00 s. With
//! `PHYSVEC_REQUIRE_QEMU=1` a missing QEMU fails the test instead.
//!
//! Understands what `cargo test` passes: name filters, `--exact`, `--skip NAME`,
//! `--ignored`, `--include-ignored`, `--list`, `-q`/`--quiet`; output is never captured
//! (`--nocapture` is accepted); other libtest flags are accepted and ignored.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use super::qtest::{find_qemu, QEMU, REQUIRE_ENV};

/// What a test needs to run.
pub enum Body {
    /// Runs anywhere.
    Plain(fn()),
    /// Runs with the QEMU binary; ignored (or failed, with `PHYSVEC_REQUIRE_QEMU=1`)
    /// when QEMU is missing.
    Qemu(fn(&Path)),
}

/// One test of the binary.
pub struct Trial {
    /// Its name, as filters match it.
    pub name: &'static str,
    /// What it runs.
    pub body: Body,
}

enum Outcome {
    Ok,
    Failed,
    Ignored(String),
}

/// Runs `trials` as libtest would; the process exit code of the test binary.
pub fn run(trials: &[Trial]) -> ExitCode {
    let mut filters: Vec<String> = Vec::new();
    let mut skips: Vec<String> = Vec::new();
    let (mut exact, mut list, mut quiet) = (false, false, false);
    let (mut only_ignored, mut include_ignored) = (false, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--exact" => exact = true,
            "--list" => list = true,
            "-q" | "--quiet" => quiet = true,
            "--ignored" => only_ignored = true,
            "--include-ignored" => include_ignored = true,
            "--skip" => skips.extend(args.next()),
            // Flags with a separate value.
            "--test-threads" | "--format" | "--color" | "--logfile" | "-Z" => {
                args.next();
            }
            s if s.starts_with('-') => {}
            s => filters.push(s.to_owned()),
        }
    }
    let matches = |name: &str, pat: &str| {
        if exact {
            name == pat
        } else {
            name.contains(pat)
        }
    };
    let selected: Vec<&Trial> = trials
        .iter()
        .filter(|t| filters.is_empty() || filters.iter().any(|f| matches(t.name, f)))
        .filter(|t| !skips.iter().any(|s| matches(t.name, s)))
        .collect();
    let filtered_out = trials.len() - selected.len();
    if list {
        for t in &selected {
            println!("{}: test", t.name);
        }
        println!("\n{} tests, 0 benchmarks", selected.len());
        return ExitCode::SUCCESS;
    }
    // No test here is `#[ignore]`d statically: `--ignored` runs none of them.
    let _ = include_ignored;
    let t0 = Instant::now();
    println!(
        "\nrunning {} tests",
        if only_ignored { 0 } else { selected.len() }
    );
    let qemu = find_qemu();
    let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1");
    let (mut passed, mut ignored) = (0, 0);
    let mut failed: Vec<&str> = Vec::new();
    for t in selected.iter().filter(|_| !only_ignored) {
        let outcome = match (&t.body, &qemu) {
            (Body::Plain(f), _) => guarded(f),
            (Body::Qemu(f), Some(q)) => guarded(|| f(q)),
            (Body::Qemu(_), None) if required => {
                eprintln!("{}: {QEMU} not found on PATH but {REQUIRE_ENV}=1 requires it", t.name);
                Outcome::Failed
            }
            (Body::Qemu(_), None) => Outcome::Ignored(format!(
                "{QEMU} not found on PATH (install qemu-system-x86; {REQUIRE_ENV}=1 makes this a failure)"
            )),
        };
        match &outcome {
            Outcome::Ok => passed += 1,
            Outcome::Failed => failed.push(t.name),
            Outcome::Ignored(_) => ignored += 1,
        }
        if quiet {
            print!(
                "{}",
                match outcome {
                    Outcome::Ok => ".",
                    Outcome::Failed => "F",
                    Outcome::Ignored(_) => "i",
                }
            );
        } else {
            match outcome {
                Outcome::Ok => println!("test {} ... ok", t.name),
                Outcome::Failed => println!("test {} ... FAILED", t.name),
                Outcome::Ignored(why) => println!("test {} ... ignored, {why}", t.name),
            }
        }
    }
    if quiet {
        println!();
    }
    if !failed.is_empty() {
        println!("\nfailures:");
        for f in &failed {
            println!("    {f}");
        }
    }
    println!(
        "\ntest result: {}. {passed} passed; {} failed; {ignored} ignored; 0 measured; \
         {filtered_out} filtered out; finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        t0.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(101)
    }
}

/// Runs `f`; a panic (its message printed by the panic hook) is a failure.
fn guarded(f: impl FnOnce()) -> Outcome {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => Outcome::Ok,
        Err(_) => Outcome::Failed,
    }
}
