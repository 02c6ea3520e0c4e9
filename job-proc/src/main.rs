//! `sluice-job-proc`: runs one job: fires it on its schedule and records every run.
//!
//! The master starts this process and hands it its identity and keys on stdin (never argv
//! or the environment); it is not meant to be started by hand. The loop it runs is
//! `sluice_core::child`, with the job engine (`sluice_job_proc::run`) beside it.

use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "sluice-job-proc", version = sluice_core::VERSION, about = "runs one job: fires it on its schedule and records every run.")]
struct Args {}

fn main() -> ExitCode {
    let _args = Args::parse();
    sluice_core::engine::main("job", sluice_job_proc::run)
}
