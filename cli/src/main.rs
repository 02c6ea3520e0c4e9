//! `sluice`: the operator's command-line tool.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // `sluice order show 6 | head -3`: a closed pipe ends the command quietly, as it ends
    // every Unix tool, instead of a panic in println!.
    // SAFETY: called first thing in main, before any thread exists.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        );
    }
    let cli = sluice_cli::Cli::parse();
    sluice_core::logging::init(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("sluice: cannot start the async runtime: {err}");
            return ExitCode::from(71);
        }
    };
    match runtime.block_on(sluice_cli::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("sluice: {err:#}");
            ExitCode::from(1)
        }
    }
}
