//! Frequent values in bounded memory: the Misra–Gries summary keeps at most
//! `capacity` candidate values; every value occurring more than
//! `n / (capacity + 1)` times is guaranteed to be among them. The profile
//! then counts the candidates exactly in a second pass over the file, so the
//! reported counts are exact (only a value rarer than that bound can be
//! missing from the top list). The result does not depend on hash-map order.

use std::collections::HashMap;

/// Default number of candidates kept per column.
pub const DEFAULT_CAPACITY: usize = 1024;

/// A Misra–Gries summary over strings.
#[derive(Debug, Clone)]
pub struct FrequentItems {
    capacity: usize,
    counters: HashMap<String, u64>,
    decremented: bool,
}

impl Default for FrequentItems {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl FrequentItems {
    /// A summary keeping at most `capacity` candidates.
    pub fn new(capacity: usize) -> Self {
        FrequentItems {
            capacity: capacity.max(1),
            counters: HashMap::new(),
            decremented: false,
        }
    }

    /// Count one occurrence.
    pub fn add(&mut self, value: &str) {
        if let Some(c) = self.counters.get_mut(value) {
            *c += 1;
        } else if self.counters.len() < self.capacity {
            self.counters.insert(value.to_string(), 1);
        } else {
            // Decrement every counter (and, implicitly, the new value's):
            // amortised O(1), since each round removes capacity + 1 counts.
            self.counters.retain(|_, c| {
                *c -= 1;
                *c > 0
            });
            self.decremented = true;
        }
    }

    /// Whether every distinct value was kept (then the counts are exact).
    pub fn is_exact(&self) -> bool {
        !self.decremented
    }

    /// The candidates, with zeroed counters for an exact recount.
    pub fn into_candidates(self) -> HashMap<String, u64> {
        self.counters.into_keys().map(|k| (k, 0)).collect()
    }

    /// The candidates with their (lower-bound) counts.
    pub fn counters(&self) -> &HashMap<String, u64> {
        &self.counters
    }
}

/// The `n` most frequent of exactly counted values: by count, descending,
/// then by value, ascending (a stable, deterministic order).
pub fn top(counts: HashMap<String, u64>, n: usize) -> Vec<(String, u64)> {
    let mut all: Vec<(String, u64)> = counts.into_iter().filter(|(_, c)| *c > 0).collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(n);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heavy_hitters_survive_a_long_tail() {
        let mut f = FrequentItems::new(16);
        for i in 0..10_000 {
            f.add(&format!("rare-{i}"));
            if i % 4 == 0 {
                f.add("common");
            }
            if i % 10 == 0 {
                f.add("frequent");
            }
        }
        assert!(!f.is_exact());
        assert!(f.counters().len() <= 16);
        let c = f.into_candidates();
        assert!(c.contains_key("common") && c.contains_key("frequent"));
    }

    #[test]
    fn exact_when_few_distinct_and_top_is_ordered() {
        let mut f = FrequentItems::default();
        for v in ["b", "a", "b", "c", "a", "b"] {
            f.add(v);
        }
        assert!(f.is_exact());
        let t = top(f.counters().clone(), 2);
        assert_eq!(t, vec![("b".to_string(), 3), ("a".to_string(), 2)]);
        let ties: HashMap<String, u64> = [("y".to_string(), 1), ("x".to_string(), 1)].into();
        assert_eq!(top(ties, 5)[0].0, "x", "ties by value");
    }
}
