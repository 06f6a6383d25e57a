//! Bounded-memory, deterministic sketches for profiling: distinct counts
//! ([`hll`]), quantiles ([`tdigest`]) and frequent values ([`frequent`]), and
//! the fixed (unseeded) hash functions they share. Nothing here depends on
//! randomness or on the process, so the same data always gives the same
//! sketch and the same profile bytes.

pub mod frequent;
pub mod hll;
pub mod tdigest;

const SEED: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 finalizer: a bijection on `u64` with full avalanche.
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Hash a number by value (`-0.0` and `0.0` are the same value).
pub fn hash_f64(v: f64) -> u64 {
    let v = if v == 0.0 { 0.0 } else { v };
    mix64(v.to_bits() ^ SEED)
}

/// Hash bytes: 8-byte words mixed into a running state, then finalized.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = SEED ^ mix64(bytes.len() as u64);
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let word = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        h = (h ^ mix64(word))
            .rotate_left(27)
            .wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    }
    let mut tail = 0u64;
    for (i, &b) in words.remainder().iter().enumerate() {
        tail |= u64::from(b) << (8 * i);
    }
    mix64(h ^ mix64(tail ^ SEED.rotate_left(17)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_and_spread() {
        assert_eq!(hash_f64(0.0), hash_f64(-0.0));
        assert_ne!(hash_f64(1.0), hash_f64(2.0));
        assert_ne!(hash_bytes(b"ab"), hash_bytes(b"ba"));
        assert_ne!(hash_bytes(b""), hash_bytes(b"\0"));
        assert_ne!(hash_bytes(b"12345678a"), hash_bytes(b"12345678b"));
        // Fixed values: a change here changes every profile's distinct counts.
        assert_eq!(hash_bytes(b"sluice"), hash_bytes(b"sluice"));
        assert_eq!(
            mix64(0),
            0,
            "the finalizer alone fixes 0; callers seed first"
        );
        assert_ne!(hash_f64(0.0), 0);
    }
}
