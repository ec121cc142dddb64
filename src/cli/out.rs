//! Standard output for every command: [`outln!`] and [`out!`] write there and return a
//! [`CliError`] instead of panicking as `println!` does, so that a reader that stops early
//! (`breakglass token list | head -2`) ends the command quietly.
//!
//! A closed pipe (EPIPE) ends the command with status 0 and nothing on stderr, as ripgrep does
//! (its `main` turns a `BrokenPipe` into a clean exit). C tools such as git die of SIGPIPE
//! instead (status 141 in a shell); breakglass keeps Rust's default of ignoring SIGPIPE,
//! because the same process writes to the agent's socket and to pcscd's, where the default
//! action would kill it without a word in the middle of a ceremony.

use std::fmt;
use std::io::{self, Write};

use super::error::{exit, CliError};

/// `writeln!` to standard output; `Err` when it cannot be written ([`write`]).
macro_rules! outln {
    () => {
        $crate::cli::out::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `write!` to standard output; `Err` when it cannot be written ([`write`]).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::out::write(format_args!($($arg)*))
    };
}

/// Writes `args` to standard output and flushes it. A reader that went away gives
/// [`CliError::stdout_closed`] (a quiet exit 0); any other failure is an error.
pub fn write(args: fmt::Arguments<'_>) -> Result<(), CliError> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_fmt(args)
        .and_then(|()| stdout.flush())
        .map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe => CliError::stdout_closed(),
            _ => CliError::new(
                format!("cannot write to standard output: {e}"),
                "check where the output goes (a full disk, a file that cannot be written)",
                exit::FAILURE,
            ),
        })
}
