//! Lambda entry point of the ingest stage: wiring only; the stage lives in the library.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let registry = sluice::contract::Registry::embedded()?;
    sluice::runner::run_lambda(sluice_ingest::Ingest::new(registry)).await
}
