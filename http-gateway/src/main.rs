//! `sluice-http-gateway`: the HTTP gateway: the REST API over the cluster's system API, on
//! the HTTP and HTTPS listeners of `qorus.http-server` and `qorus.http-secure-server`.
//!
//! The master starts this process and hands it its identity and keys on stdin (never argv
//! or the environment); it is not meant to be started by hand. The loop it runs is
//! `sluice_core::child`, with the gateway (`sluice_http_gateway::run`) beside it.

use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "sluice-http-gateway", version = sluice_core::VERSION, about = "the HTTP gateway: the REST API over the cluster's system API, on HTTP and HTTPS listeners.")]
struct Args {}

fn main() -> ExitCode {
    let _args = Args::parse();
    let work: sluice_core::child::Work = Box::new(|ctx| Box::pin(sluice_http_gateway::run(ctx)));
    ExitCode::from(sluice_core::child::main_with("http-gateway", Some(work)))
}
