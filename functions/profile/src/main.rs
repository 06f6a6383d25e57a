//! Lambda entry point of the profile stage: load the embedded contracts and
//! build the alert sink (an SNS client, if configured) once at cold start,
//! then hand over to the shared runner.

use sluice_profile::{alerts, Profile};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let registry = sluice::contract::Registry::embedded()?;
    let profile = match sluice::config::Config::from_env("profile") {
        Ok(config) => {
            Profile::with_alerts(registry, alerts::sink_for(config.alerts.as_ref()).await)?
        }
        // The runner validates the configuration again and refuses to start
        // with a clear message.
        Err(_) => Profile::new(registry)?,
    };
    sluice::runner::run_lambda(profile).await
}
