//! The proptest configuration of every fuzz property (here and in
//! `functions/ingest/tests/it/fuzz_rows.rs`, which includes this file):
//! `SLUICE_FUZZ_CASES` cases (else the property's default) and
//! `SLUICE_FUZZ_SEED` (a number, or `random`; fixed by default, so that
//! `make unit` runs the same cases every time).

use proptest::prelude::ProptestConfig;
use proptest::test_runner::RngSeed;

pub fn fuzz_config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("SLUICE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    let rng_seed = match std::env::var("SLUICE_FUZZ_SEED").as_deref() {
        Err(_) => RngSeed::Fixed(0x5100_1ce0),
        Ok("random") => RngSeed::Random,
        Ok(s) => RngSeed::Fixed(
            s.parse()
                .unwrap_or_else(|_| panic!("SLUICE_FUZZ_SEED={s:?}: not a number or \"random\"")),
        ),
    };
    ProptestConfig {
        cases,
        rng_seed,
        // Failures are kept as named regression tests, not in files beside the source.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}
