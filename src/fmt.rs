//! Human-readable formatting helpers shared by `Display` impls and the tool.

use core::fmt;

/// A byte count printed in binary units: `512 B`, `4 KiB`, `1.5 MiB`.
///
/// ```
/// use physvec::fmt::Bytes;
/// assert_eq!(Bytes(4096).to_string(), "4 KiB");
/// assert_eq!(Bytes(1536 * 1024).to_string(), "1.5 MiB");
/// assert_eq!(Bytes(100).to_string(), "100 B");
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
        let mut unit = 0;
        let mut v = self.0;
        while v >= 1024 && unit < UNITS.len() - 1 {
            v >>= 10;
            unit += 1;
        }
        if unit == 0 {
            return write!(f, "{} B", self.0);
        }
        // One decimal when not a whole number of units.
        let scale = 1u128 << (10 * unit);
        let tenths = (self.0 as u128 * 10 + scale / 2) / scale;
        if tenths % 10 == 0 {
            write!(f, "{} {}", tenths / 10, UNITS[unit])
        } else {
            write!(f, "{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
        }
    }
}
