//! Lambda entry point of the curate stage: load the embedded contracts and
//! reference tables and validate every `[curate]` section once (cold start),
//! then hand over to the shared runner.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let registry = sluice::contract::Registry::embedded()?;
    sluice::runner::run_lambda(sluice_curate::Curate::new(registry)?).await
}
