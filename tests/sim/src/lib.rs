//! `sluice-sim`: the deterministic simulation of issue 10. The real stages
//! (`sluice_ingest::Ingest`, `sluice_curate::Curate`, `sluice_profile::Profile`
//! through `sluice::Runner`, wired as `cli/src/local.rs` wires them, over a
//! `MemoryStore`) run on small generated files, several runner tasks per
//! stage at once, under injected S3 faults, crashes, duplicate and
//! reordered deliveries, overlapping re-uploads, deletions and DLQ
//! redrives; after quiescence every invariant of DESIGN.md is checked
//! against an oracle. Everything is a function of one `u64` seed.
//!
//! - [`store`]: the fault-injecting, scheduler-gated store and the sim DLQ;
//! - [`sim`]: producers, the event bus, runners, crashes and the scheduler;
//! - [`check`]: the oracle and the invariants;
//! - [`run_seed`]: one seed, start to verdict.
//!
//! **Time.** Simulated time is the scheduler's own clock (an agenda ordered
//! by time, see [`sim`]), not tokio's paused clock. A paused current-thread
//! runtime does not auto-advance while a `spawn_blocking` task is alive, and
//! every stage streams through one (ingest's parser sends row groups over a
//! bounded channel to the async half that uploads them), so any simulated
//! latency inside the async half would stall the run. The scheduler instead
//! lets one invocation run at a time, between store calls, and decides the
//! order from the seed; latency costs nothing because nothing waits for it.
//!
//! **Retries.** The runner's in-process backoff uses the thread RNG (no seed
//! reaches it), so the sim configures 0 ms backoff; attempts are still
//! spaced by the simulated store latency.

pub mod check;
pub mod rng;
pub mod sim;
pub mod store;

use std::collections::BTreeMap;
use std::fmt::Write as _;

pub use check::{Checked, Violation};
pub use sim::{SimConfig, Stats};

/// What one seed did and found.
#[derive(Debug)]
pub struct SeedResult {
    /// The seed.
    pub seed: u64,
    /// Counters.
    pub stats: Stats,
    /// Broken invariants.
    pub violations: Vec<Violation>,
    /// The event log.
    pub log: Vec<sim::LogEntry>,
    /// A hash of the event log: equal schedules have equal fingerprints.
    pub fingerprint: u64,
    /// Per violating landing key: the strings that find its log lines.
    pub needles: BTreeMap<String, Vec<String>>,
}

/// FNV-1a over the log, for telling schedules apart.
fn fingerprint(log: &[sim::LogEntry]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for e in log {
        for b in e.t.to_le_bytes().iter().chain(e.text.as_bytes()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Run one seed on a fresh single-threaded runtime (its own blocking pool).
pub fn run_seed(seed: u64, cfg: &SimConfig, verbose: bool) -> SeedResult {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return SeedResult {
                seed,
                stats: Stats::default(),
                violations: vec![Violation {
                    inv: 0,
                    class: "sim: cannot build a runtime".into(),
                    key: String::new(),
                    detail: e.to_string(),
                }],
                log: Vec::new(),
                fingerprint: 0,
                needles: BTreeMap::new(),
            }
        }
    };
    let out = rt.block_on(async {
        let mut s = match sim::Sim::new(seed, cfg.clone()) {
            Ok(s) => s,
            Err(e) => {
                return SeedResult {
                    seed,
                    stats: Stats::default(),
                    violations: vec![Violation {
                        inv: 0,
                        class: "sim: cannot build the stages".into(),
                        key: String::new(),
                        detail: e.to_string(),
                    }],
                    log: Vec::new(),
                    fingerprint: 0,
                    needles: BTreeMap::new(),
                };
            }
        };
        s.verbose = verbose;
        s.run().await;
        let checked = check::check(&s).await;
        SeedResult {
            seed,
            fingerprint: fingerprint(&s.log),
            stats: s.stats.clone(),
            violations: checked.violations,
            log: std::mem::take(&mut s.log),
            needles: checked.needles,
        }
    });
    // Aborted invocations may leave a blocking parser finishing its input.
    rt.shutdown_timeout(std::time::Duration::from_secs(30));
    out
}

/// The failure report of one seed: the seed, each invariant broken with its
/// keys and details, the event log lines touching those keys, and how to
/// reproduce it.
pub fn report(r: &SeedResult, max_log_lines: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "seed {}: {} violation(s)", r.seed, r.violations.len());
    for v in &r.violations {
        let _ = writeln!(
            s,
            "  [{}] {}{}",
            v.class,
            if v.key.is_empty() {
                String::new()
            } else {
                format!("{}: ", v.key)
            },
            v.detail
        );
    }
    for (key, needles) in &r.needles {
        let lines: Vec<&sim::LogEntry> = r
            .log
            .iter()
            .filter(|e| {
                needles.iter().any(|n| e.text.contains(n.as_str()))
                    || e.text.starts_with("quiescent")
                    || e.text.starts_with("operator")
            })
            .collect();
        let skip = lines.len().saturating_sub(max_log_lines);
        let _ = writeln!(
            s,
            "  event log touching {key} ({} line(s){}):",
            lines.len(),
            if skip > 0 {
                format!(", the first {skip} left out")
            } else {
                String::new()
            }
        );
        for e in lines.iter().skip(skip) {
            let _ = writeln!(s, "    [{:>7} ms] {}", e.t, e.text);
        }
    }
    let _ = writeln!(
        s,
        "  reproduce: SIM_SEED={} cargo test -p sluice-sim",
        r.seed
    );
    s
}
