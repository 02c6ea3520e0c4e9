//! `sluice-service-proc`: runs one service: loads its code and serves its method calls.
//!
//! The master starts this process and hands it its identity and keys on stdin (never argv
//! or the environment); it is not meant to be started by hand. The loop it runs is
//! `sluice_core::child`, with the service engine (`sluice_service_proc::run`) beside it.

use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "sluice-service-proc", version = sluice_core::VERSION, about = "runs one service: loads its code and serves its method calls.")]
struct Args {}

fn main() -> ExitCode {
    let _args = Args::parse();
    sluice_core::engine::main("service", sluice_service_proc::run)
}
