//! The `breakglass` binary: parse arguments, run the command, map errors to exit codes.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used)]

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // The AWS CLI and SDKs run `breakglass credential-process PROFILE` for every process they
    // start: skip building the whole argument parser for that exact form (the figures are in
    // benches/agent.rs). Anything else, including flags, goes through clap.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().take(4).collect();
    let (result, one_line) = match argv.as_slice() {
        [_, cmd, profile]
            if cmd == "credential-process" && !profile.to_string_lossy().starts_with('-') =>
        {
            (
                cli::credential_process(&profile.to_string_lossy(), None),
                true,
            )
        }
        _ => (
            cli::Cli::parse_from(cli::respelled(std::env::args_os())).run(),
            false,
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.is_quiet() => ExitCode::from(err.exit_code()),
        Err(err) => {
            if one_line {
                err.print_one_line();
            } else {
                err.print();
            }
            ExitCode::from(err.exit_code())
        }
    }
}
