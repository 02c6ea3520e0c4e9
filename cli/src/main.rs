//! `sluice`: the operator's command-line tool.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
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
