//! The Sluice master process.
//!
//! [`run`] performs the documented system startup ([`startup`]), serves until a shutdown
//! is requested (SIGTERM, SIGINT, or the shutdown API), then performs the documented
//! shutdown ([`shutdown`]). Every step's failure maps to one [`startup::StartupError`]
//! with an operator-readable message and a sysexits-style exit code.

pub mod api;
pub mod groups;
pub mod heartbeat;
pub mod jobs;
pub mod options_api;
pub mod orders;
pub mod services;
pub mod shutdown;
pub mod startup;
pub mod supervisor;
pub mod system;
mod verbs;
pub mod workflows;

use std::path::PathBuf;

use clap::Parser;
use sluice_core::logging::LogFile;

/// Command line of `sluice-master`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "sluice-master",
    version = sluice_core::VERSION,
    about = "Start the Sluice master for one node: it opens the system database and the \
             application session, recovers a crashed session, and supervises the node's \
             processes until it is asked to stop (SIGTERM, SIGINT or the shutdown API).",
    after_help = "Options come from $OMQ_DIR/etc/options; arguments of the form \
                  qorus.NAME=value override them. `sluice options` lists every option."
)]
pub struct Args {
    /// Option overrides, e.g. `qorus.instance-key=node-1` (later ones win).
    #[arg(value_name = "qorus.NAME=VALUE")]
    pub overrides: Vec<String>,

    /// The instance home: etc/options, log/, var/ (default: $OMQ_DIR, else ./var/omq).
    #[arg(long, env = "OMQ_DIR", value_name = "DIR")]
    pub omq_dir: Option<PathBuf>,

    /// Create the system schema if the database is empty (first start).
    #[arg(long)]
    pub create_schema: bool,

    /// Do not copy log lines to stderr (the log file still gets them).
    #[arg(long, short)]
    pub quiet: bool,
}

/// Runs the master to completion and returns the process exit code.
pub async fn run(args: Args, log: LogFile) -> u8 {
    let system = match startup::start(&args, log.clone()).await {
        Ok(system) => system,
        Err(err) => {
            tracing::error!(step = err.step(), "startup failed: {err}");
            eprintln!("sluice-master: startup step {} failed: {err}", err.step());
            if let Some(help) = err.help() {
                eprintln!("  hint: {help}");
            }
            log.close();
            return err.exit_code();
        }
    };
    let system = std::sync::Arc::new(system);
    let heartbeat = heartbeat::spawn(system.clone());
    let reason = shutdown::wait_for_request(&system).await;
    // The heartbeat ends on the shutdown signal; wait so it never races the session close.
    let _ = heartbeat.await;
    shutdown::stop(system, reason).await
}
