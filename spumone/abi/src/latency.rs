//! The RTOS's latency histogram line, as the RTOS prints it and the host tools read it:
//! `latency-hist q4 <bucket>:<count> ...`, the filled buckets only, printed just before each
//! round's `latency` line.
//!
//! Buckets are quarter octaves of nanoseconds: bucket `4e + q` holds
//! `[2^e (1 + q/4), 2^e (1 + (q+1)/4))`; values below 4 ns are their own buckets 0..3, and
//! buckets 4..7 are never used.

/// Buckets a `u32` nanosecond latency falls into.
pub const BUCKETS: usize = 128;
/// What starts a histogram line.
pub const PREFIX: &str = "latency-hist q4";

/// The bucket of a latency of `ns` nanoseconds.
pub const fn bucket(ns: u32) -> usize {
    if ns < 4 {
        return ns as usize;
    }
    let e = 31 - ns.leading_zeros();
    let quarter = (ns >> (e - 2)) & 3;
    (4 * e + quarter) as usize
}

/// The smallest latency (ns) bucket `b` holds.
pub const fn bucket_floor_ns(b: usize) -> u64 {
    if b < 8 {
        return b as u64;
    }
    let (e, q) = (b / 4, b % 4);
    (1u64 << e) + ((q as u64) << (e - 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_latency_lies_between_its_buckets_floor_and_the_next() {
        let mut x: u64 = 0;
        while x <= u32::MAX as u64 {
            let b = bucket(x as u32);
            assert!(b < BUCKETS, "{x}");
            assert!(bucket_floor_ns(b) <= x, "{x} below bucket {b}");
            if b + 1 < BUCKETS {
                let next = if b == 3 { 8 } else { b + 1 };
                assert!(x < bucket_floor_ns(next), "{x} beyond bucket {b}");
            }
            x = x * 5 / 4 + 1;
        }
    }
}
