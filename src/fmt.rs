//! Human-readable formatting helpers shared by `Display` impls and the tool.

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

/// A byte count printed exactly: `512 B`, `4 KiB` (a whole number of units), and
/// `4080 B (~4.0 KiB)` when not, so a driver author never reads a rounded size.
///
/// ```
/// use physvec::fmt::Bytes;
/// assert_eq!(Bytes(4096).to_string(), "4 KiB");
/// assert_eq!(Bytes(4080).to_string(), "4080 B (~4.0 KiB)");
/// assert_eq!(Bytes(1536 * 1024).to_string(), "1536 KiB (~1.5 MiB)");
/// assert_eq!(Bytes(100).to_string(), "100 B");
/// assert_eq!(Bytes(u64::MAX).to_string(), "18446744073709551615 B (~16.0 EiB)");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bytes(pub u64);

/// `one` when `n == 1`, else `many`: for error messages that print a count.
pub(crate) const fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Each unit with the shift that gives its size; EiB is the last below 2^64.
        const UNITS: [(&str, u32); 7] = [
            ("B", 0),
            ("KiB", 10),
            ("MiB", 20),
            ("GiB", 30),
            ("TiB", 40),
            ("PiB", 50),
            ("EiB", 60),
        ];
        let v = self.0;
        // The largest unit passing `ok` (units pass in a prefix; bytes always do).
        let largest = |ok: &dyn Fn(u32) -> bool| {
            UNITS
                .iter()
                .copied()
                .take_while(|&(_, shift)| shift == 0 || ok(shift))
                .last()
                .unwrap_or(("B", 0))
        };
        // The largest unit that divides the value exactly: printed as the exact value.
        let (name, exact) = largest(&|shift| v != 0 && v.trailing_zeros() >= shift);
        write!(f, "{} {name}", v >> exact)?;
        // The largest unit the value reaches: an approximation beside it when useful.
        let (name, unit) = largest(&|shift| v >> shift > 0);
        if unit > exact {
            // `v * 10 < 2^68` and `scale <= 2^60` keep every step far inside u128; the
            // divisors are non-zero (`scale >= 1`, the literal 10).
            #[allow(clippy::arithmetic_side_effects)]
            let (whole, tenth) = {
                let scale = 1u128 << unit;
                let tenths = (u128::from(v) * 10 + scale / 2) / scale;
                (tenths / 10, tenths % 10)
            };
            write!(f, " (~{whole}.{tenth} {name})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]
mod tests {
    use super::*;

    /// The former index-based formatter, kept as the model of the output.
    fn model(v: u64) -> String {
        const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        let mut exact = 0usize;
        while exact < UNITS.len() - 1 && v != 0 && v.trailing_zeros() >= 10 * (exact as u32 + 1) {
            exact += 1;
        }
        let mut s = format!("{} {}", v >> (10 * exact), UNITS[exact]);
        let mut unit = 0usize;
        while unit < UNITS.len() - 1 && v >> (10 * (unit + 1)) > 0 {
            unit += 1;
        }
        if unit > exact {
            let scale = 1u128 << (10 * unit);
            let tenths = (u128::from(v) * 10 + scale / 2) / scale;
            s += &format!(" (~{}.{} {})", tenths / 10, tenths % 10, UNITS[unit]);
        }
        s
    }

    #[test]
    fn bytes_match_the_model_around_every_unit() {
        let mut values = vec![0, 1, 2, 3, 100, 999, u64::MAX, u64::MAX - 1, 1 << 63];
        for shift in 0..64 {
            let p = 1u64 << shift;
            values.extend([p - 1, p, p + 1, p.wrapping_mul(3), p | (p >> 1)]);
        }
        for v in values {
            assert_eq!(Bytes(v).to_string(), model(v), "{v:#x}");
        }
    }
}

/// A number that `Debug`-prints in hex (`0xffffea0000000400`): for address and pointer
/// fields in hand-written `Debug` impls, so no address ever prints in decimal.
///
/// ```
/// use physvec::fmt::Hex;
/// assert_eq!(format!("{:?}", Hex(0x1000)), "0x1000");
/// assert_eq!(Hex(255).to_string(), "0xff");
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Hex(pub u64);

impl fmt::Debug for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}
