//! HyperLogLog distinct counting: 2^14 one-byte registers (16 KiB per
//! column, standard error ~0.8 %), estimated with Ertl's improved estimator
//! ("New cardinality estimation algorithms for HyperLogLog sketches", 2017),
//! which is accurate from a handful of values to billions without the
//! empirical bias tables of HyperLogLog++.

/// Register index bits.
pub const PRECISION: u32 = 14;
const M: usize = 1 << PRECISION;
/// Bits left for the rank.
const Q: u32 = 64 - PRECISION;

/// A HyperLogLog sketch over 64-bit hashes.
#[derive(Clone)]
pub struct HyperLogLog {
    registers: Box<[u8]>,
    /// How many registers hold each value 0..=Q+1, kept as registers rise,
    /// so that an estimate costs O(Q) instead of a pass over all 2^14
    /// registers (which dominated profiling small files).
    counts: [u32; Q as usize + 2],
}

impl Default for HyperLogLog {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for HyperLogLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HyperLogLog")
            .field("estimate", &self.estimate())
            .finish()
    }
}

impl HyperLogLog {
    /// An empty sketch.
    pub fn new() -> Self {
        let mut counts = [0u32; Q as usize + 2];
        counts[0] = M as u32;
        HyperLogLog {
            registers: vec![0u8; M].into_boxed_slice(),
            counts,
        }
    }

    /// Add a (well-mixed) 64-bit hash.
    pub fn insert_hash(&mut self, hash: u64) {
        let index = (hash >> Q) as usize;
        // The low Q bits, moved to the top; the rank is the position of the first 1.
        let rest = hash << PRECISION;
        let rank = (rest.leading_zeros() + 1).min(Q + 1) as u8;
        if let Some(r) = self.registers.get_mut(index) {
            if rank > *r {
                // Both are at most Q + 1: `rank` by the `min` above, `*r`
                // because only ranks are ever stored.
                self.counts[usize::from(*r)] -= 1;
                self.counts[usize::from(rank)] += 1;
                *r = rank;
            }
        }
    }

    /// The estimated number of distinct hashes added.
    pub fn estimate(&self) -> f64 {
        let counts = &self.counts;
        let m = M as f64;
        if counts[0] as usize == M {
            return 0.0;
        }
        let mut z = m * tau((m - f64::from(counts[Q as usize + 1])) / m);
        for k in (1..=Q as usize).rev() {
            z = 0.5 * (z + f64::from(counts[k]));
        }
        z += m * sigma(f64::from(counts[0]) / m);
        let alpha_inf = 1.0 / (2.0 * std::f64::consts::LN_2);
        alpha_inf * m * m / z
    }
}

/// Ertl's sigma: corrects for empty registers.
fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let previous = z;
        z += x * y;
        y += y;
        if z == previous {
            return z;
        }
    }
}

/// Ertl's tau: corrects for saturated registers.
fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let previous = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if z == previous {
            return z / 3.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{hash_bytes, hash_f64};
    use super::*;

    fn relative_error(n: u64) -> f64 {
        let mut h = HyperLogLog::new();
        for i in 0..n {
            h.insert_hash(hash_f64(i as f64));
            h.insert_hash(hash_f64(i as f64)); // repeats do not count
        }
        (h.estimate() - n as f64).abs() / n as f64
    }

    #[test]
    fn estimates_within_a_few_percent_across_the_range() {
        assert_eq!(HyperLogLog::new().estimate(), 0.0);
        for n in [1u64, 10, 100, 1_000, 10_000, 50_000, 200_000] {
            let err = relative_error(n);
            assert!(err < 0.03, "{n}: relative error {err}");
        }
    }

    /// The histogram kept on insert is the one a pass over the registers gives.
    #[test]
    fn kept_counts_match_a_recount() {
        let mut h = HyperLogLog::new();
        for i in 0..5_000u64 {
            h.insert_hash(hash_f64((i % 1_700) as f64));
            let mut recount = [0u32; Q as usize + 2];
            if i % 499 == 0 {
                for &r in h.registers.iter() {
                    recount[usize::from(r)] += 1;
                }
                assert_eq!(recount, h.counts, "after {i} inserts");
            }
        }
        assert_eq!(h.counts.iter().sum::<u32>(), M as u32);
    }

    #[test]
    fn strings_count_too() {
        let mut h = HyperLogLog::new();
        for i in 0..20_000 {
            h.insert_hash(hash_bytes(format!("zone-{i}").as_bytes()));
        }
        let e = h.estimate();
        assert!((e - 20_000.0).abs() / 20_000.0 < 0.03, "{e}");
    }
}
