//! `sluice-http-gateway`: the HTTP gateway: REST, JSON-RPC, XML-RPC, YAML-RPC and WebSocket listeners for the cluster.
//!
//! The master starts this process and hands it its identity and keys over a private pipe;
//! it is not meant to be started by hand.

use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "sluice-http-gateway", version = sluice_core::VERSION, about = "the HTTP gateway: REST, JSON-RPC, XML-RPC, YAML-RPC and WebSocket listeners for the cluster.")]
struct Args {
    /// The instance home (default: $OMQ_DIR, else ./var/omq).
    #[arg(long, env = "OMQ_DIR", value_name = "DIR")]
    omq_dir: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let _args = Args::parse();
    eprintln!(
        "sluice-http-gateway: this process is started by sluice-master for one interface; \
         this build of the master does not start it yet"
    );
    ExitCode::from(64)
}
