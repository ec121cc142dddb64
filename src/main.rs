//! The `breakglass` binary: parse arguments, run the command, map errors to exit codes.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used)]

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match args.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            err.print();
            ExitCode::from(err.exit_code())
        }
    }
}
