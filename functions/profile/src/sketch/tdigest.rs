//! A merging t-digest (Dunning & Ertl) for quantiles in bounded memory:
//! values are buffered, then sorted and merged into at most ~`compression`
//! centroids whose size is limited by the k1 (arcsine) scale function, so
//! the tails stay precise. Deterministic: no randomness, ties broken by a
//! total order, values merged in arrival order.

use std::f64::consts::PI;

/// Default compression (about 100–200 centroids; quantile error well under 1 %).
pub const DEFAULT_COMPRESSION: f64 = 200.0;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Centroid {
    mean: f64,
    weight: f64,
}

/// A t-digest over finite f64 values.
#[derive(Debug, Clone)]
pub struct TDigest {
    compression: f64,
    centroids: Vec<Centroid>,
    buffer: Vec<f64>,
    buffer_cap: usize,
    min: f64,
    max: f64,
}

impl Default for TDigest {
    fn default() -> Self {
        Self::new(DEFAULT_COMPRESSION)
    }
}

impl TDigest {
    /// An empty digest.
    pub fn new(compression: f64) -> Self {
        let compression = compression.max(20.0);
        TDigest {
            compression,
            centroids: Vec::new(),
            buffer: Vec::new(),
            buffer_cap: (compression as usize) * 5,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// Add a value; non-finite values are ignored.
    pub fn add(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        self.buffer.push(x);
        if self.buffer.len() >= self.buffer_cap {
            self.compress();
        }
    }

    /// Total weight (values added).
    pub fn count(&self) -> f64 {
        self.centroids.iter().map(|c| c.weight).sum::<f64>() + self.buffer.len() as f64
    }

    fn k(&self, q: f64) -> f64 {
        self.compression / (2.0 * PI) * (2.0 * q - 1.0).clamp(-1.0, 1.0).asin()
    }

    fn k_inverse(&self, k: f64) -> f64 {
        let limit = self.compression / 4.0;
        if k >= limit {
            return 1.0;
        }
        ((2.0 * PI * k / self.compression).sin() + 1.0) / 2.0
    }

    /// Merge the buffer into the centroids.
    pub fn compress(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let mut items: Vec<Centroid> = std::mem::take(&mut self.centroids);
        items.extend(self.buffer.drain(..).map(|x| Centroid {
            mean: x,
            weight: 1.0,
        }));
        items.sort_by(|a, b| a.mean.total_cmp(&b.mean));
        let total: f64 = items.iter().map(|c| c.weight).sum();
        let mut out = Vec::with_capacity(self.compression as usize);
        let mut iter = items.into_iter();
        let Some(mut current) = iter.next() else {
            return;
        };
        let mut before = 0.0;
        let mut limit = total * self.k_inverse(self.k(0.0) + 1.0);
        for next in iter {
            if before + current.weight + next.weight <= limit {
                let weight = current.weight + next.weight;
                current.mean += (next.mean - current.mean) * next.weight / weight;
                current.weight = weight;
            } else {
                before += current.weight;
                out.push(current);
                limit = total * self.k_inverse(self.k(before / total) + 1.0);
                current = next;
            }
        }
        out.push(current);
        self.centroids = out;
    }

    /// The estimated `q`-quantile (0..=1), or `None` if nothing was added.
    pub fn quantile(&mut self, q: f64) -> Option<f64> {
        self.compress();
        let cs = &self.centroids;
        let first = cs.first()?;
        let last = cs.last()?;
        if cs.len() == 1 {
            return Some(first.mean);
        }
        let total: f64 = cs.iter().map(|c| c.weight).sum();
        let rank = q.clamp(0.0, 1.0) * total;
        // Between the minimum and the first centroid's centre.
        if rank <= first.weight / 2.0 {
            let f = if first.weight > 0.0 {
                rank / (first.weight / 2.0)
            } else {
                0.0
            };
            return Some(self.min + f * (first.mean - self.min));
        }
        let mut cumulative = 0.0;
        for pair in cs.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let left = cumulative + a.weight / 2.0;
            let right = cumulative + a.weight + b.weight / 2.0;
            if rank <= right {
                // Singletons are exact values: no interpolation into them.
                if a.weight == 1.0 && rank < left + 0.5 {
                    return Some(a.mean);
                }
                if b.weight == 1.0 && rank >= right - 0.5 {
                    return Some(b.mean);
                }
                let f = (rank - left) / (right - left);
                return Some((a.mean + f * (b.mean - a.mean)).clamp(self.min, self.max));
            }
            cumulative += a.weight;
        }
        // Between the last centroid's centre and the maximum.
        let left = total - last.weight / 2.0;
        let f = if last.weight > 0.0 {
            (rank - left) / (last.weight / 2.0)
        } else {
            1.0
        };
        Some((last.mean + f * (self.max - last.mean)).clamp(self.min, self.max))
    }

    /// Number of centroids (after compressing), for tests and tuning.
    pub fn centroids(&mut self) -> usize {
        self.compress();
        self.centroids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values 1..=n in a scrambled but fixed order.
    fn scrambled(n: u64) -> Vec<f64> {
        (0..n).map(|i| ((i * 7_919) % n + 1) as f64).collect()
    }

    #[test]
    fn quantiles_of_a_uniform_sequence() {
        let mut d = TDigest::default();
        for x in scrambled(100_000) {
            d.add(x);
        }
        for q in [0.01, 0.25, 0.5, 0.75, 0.99] {
            let got = d.quantile(q).unwrap();
            let want = q * 100_000.0;
            assert!((got - want).abs() < 100.0, "q{q}: {got} vs {want}");
        }
        assert_eq!(d.quantile(0.0), Some(1.0));
        assert_eq!(d.quantile(1.0), Some(100_000.0));
        assert!(d.centroids() <= 250, "bounded: {}", d.centroids());
    }

    #[test]
    fn small_inputs_and_edge_cases() {
        let mut d = TDigest::default();
        assert_eq!(d.quantile(0.5), None);
        d.add(f64::NAN);
        assert_eq!(d.quantile(0.5), None);
        d.add(5.0);
        assert_eq!(d.quantile(0.5), Some(5.0));
        for x in [1.0, 2.0, 3.0, 4.0] {
            d.add(x);
        }
        assert_eq!(d.quantile(0.5), Some(3.0));
        assert_eq!(d.quantile(0.0), Some(1.0));
        assert_eq!(d.quantile(1.0), Some(5.0));
        let mut same = TDigest::default();
        for _ in 0..10_000 {
            same.add(7.0);
        }
        assert_eq!(same.quantile(0.99), Some(7.0));
    }

    #[test]
    fn skewed_data_keeps_precise_tails() {
        let mut d = TDigest::default();
        // Exponential-ish: many small values, a long tail.
        let values: Vec<f64> = scrambled(50_000)
            .iter()
            .map(|x| (x / 5_000.0).exp())
            .collect();
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        for v in values {
            d.add(v);
        }
        for q in [0.01, 0.5, 0.99] {
            let exact = sorted[((q * 50_000.0) as usize).min(49_999)];
            let got = d.quantile(q).unwrap();
            assert!((got - exact).abs() / exact < 0.01, "q{q}: {got} vs {exact}");
        }
    }
}
