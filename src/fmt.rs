//! Human-readable formatting helpers shared by `Display` impls and the tool.

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
        const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        // The largest unit that divides the value exactly: printed as the exact value.
        let mut exact = 0usize;
        while exact < UNITS.len() - 1
            && self.0 != 0
            && self.0.trailing_zeros() >= 10 * (exact as u32 + 1)
        {
            exact += 1;
        }
        write!(f, "{} {}", self.0 >> (10 * exact), UNITS[exact])?;
        // The largest unit the value reaches: an approximation beside it when useful.
        let mut unit = 0usize;
        while unit < UNITS.len() - 1 && self.0 >> (10 * (unit + 1)) > 0 {
            unit += 1;
        }
        if unit > exact {
            let scale = 1u128 << (10 * unit);
            let tenths = (u128::from(self.0) * 10 + scale / 2) / scale;
            write!(f, " (~{}.{} {})", tenths / 10, tenths % 10, UNITS[unit])?;
        }
        Ok(())
    }
}
