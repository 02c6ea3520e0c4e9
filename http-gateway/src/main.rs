//! `sluice-http-gateway`: the HTTP gateway: REST, JSON-RPC, XML-RPC, YAML-RPC and WebSocket listeners for the cluster.
//!
//! The master starts this process and hands it its identity and keys on stdin (never argv
//! or the environment); it is not meant to be started by hand. The loop it runs is
//! `sluice_core::child`.

use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "sluice-http-gateway", version = sluice_core::VERSION, about = "the HTTP gateway: REST, JSON-RPC, XML-RPC, YAML-RPC and WebSocket listeners for the cluster.")]
struct Args {}

fn main() -> ExitCode {
    let _args = Args::parse();
    ExitCode::from(sluice_core::child::main("http-gateway"))
}
