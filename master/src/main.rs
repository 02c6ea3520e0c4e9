//! `sluice-master`: parses the command line, starts logging, and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = sluice_master::Args::parse();
    let log = sluice_core::logging::init(!args.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sluice-master")
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("sluice-master: cannot start the async runtime: {err}");
            return ExitCode::from(71);
        }
    };
    let code = runtime.block_on(sluice_master::run(args, log));
    // Drop the runtime before exiting so every task's resources are released in order.
    drop(runtime);
    ExitCode::from(code)
}
