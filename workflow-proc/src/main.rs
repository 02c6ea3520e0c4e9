//! `sluice-workflow-proc`: runs one workflow: claims its orders and executes their steps, durably.
//!
//! The master starts this process and hands it its identity and keys on stdin (never argv
//! or the environment); it is not meant to be started by hand. The loop it runs is
//! `sluice_core::child`, with the workflow engine (`sluice_workflow_proc::run`) beside it.

use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "sluice-workflow-proc", version = sluice_core::VERSION, about = "runs one workflow: claims its orders and executes their steps, durably.")]
struct Args {}

fn main() -> ExitCode {
    let _args = Args::parse();
    sluice_core::engine::main("workflow", sluice_workflow_proc::run)
}
