//! Terminal input and output: secrets from stdin or the controlling terminal, and the touch
//! prompt with its countdown.
//!
//! Prompts go to `/dev/tty`, never to stderr: under `credential_process` the AWS CLI captures
//! stderr, and the token holder would never see "Touch the token".

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use zeroize::{Zeroize, Zeroizing};

use super::error::CliError;

/// Longest secret line accepted on stdin.
const MAX_LINE: usize = 4096;

/// Reads secret lines from standard input without buffering them anywhere but in wiped memory:
/// it opens `/dev/stdin` afresh and reads byte by byte (std's global stdin buffer would keep a
/// copy for the life of the process).
pub struct SecretStdin {
    file: Option<File>,
}

impl SecretStdin {
    pub fn new() -> Self {
        Self { file: None }
    }

    /// The next line without its line ending; `what` names it in errors.
    pub fn line(&mut self, what: &str) -> Result<Zeroizing<String>, CliError> {
        let fail = |why: String| {
            CliError::usage(
                format!("could not read the {what} from standard input: {why}"),
                format!("write the {what} on its own line to standard input"),
            )
        };
        if self.file.is_none() {
            self.file = Some(File::open("/dev/stdin").map_err(|e| fail(e.to_string()))?);
        }
        let Some(file) = self.file.as_mut() else {
            return Err(fail("standard input is closed".into()));
        };
        let mut buf = Zeroizing::new(Vec::with_capacity(64));
        let mut byte = [0u8; 1];
        loop {
            match file.read(&mut byte) {
                Ok(0) => break,
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) => buf.push(byte[0]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(fail(e.to_string())),
            }
            if buf.len() > MAX_LINE {
                return Err(fail(format!("longer than {MAX_LINE} bytes")));
            }
        }
        byte.zeroize();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        if buf.is_empty() {
            return Err(fail("it is empty".into()));
        }
        let text = std::str::from_utf8(&buf).map_err(|_| fail("it is not UTF-8 text".into()))?;
        Ok(Zeroizing::new(text.to_owned()))
    }
}

/// Asks on the controlling terminal with echo off. Fails when there is no terminal.
pub fn secret_from_tty(prompt: &str) -> io::Result<Zeroizing<String>> {
    rpassword::prompt_password(prompt).map(Zeroizing::new)
}

/// True when a person may answer on the terminal: `/dev/tty` opens and this process is in
/// its foreground process group (a background job, `aws … &`, would be stopped by the first
/// read and leave every other caller waiting).
pub fn has_tty() -> bool {
    let Ok(tty) = OpenOptions::new().read(true).write(true).open("/dev/tty") else {
        return false;
    };
    nix::unistd::tcgetpgrp(&tty).is_ok_and(|fg| fg == nix::unistd::getpgrp())
}

/// "Touch the token…" on the terminal with a countdown, until dropped.
pub struct TouchPrompt {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TouchPrompt {
    /// Starts the prompt for the code of `account`.
    pub fn start(account: &str, timeout: Duration) -> Self {
        Self::with_text(
            &format!("Touch the token to release the code for {account:?}"),
            timeout,
        )
    }

    /// Starts a prompt with its own text. Without a terminal it prints one line on stderr.
    pub fn with_text(text: &str, timeout: Duration) -> Self {
        let tty = OpenOptions::new().write(true).open("/dev/tty");
        let Ok(mut tty) = tty else {
            eprintln!("{text} (it waits {} s)…", timeout.as_secs());
            return Self {
                stop: None,
                thread: None,
            };
        };
        let (tx, rx) = mpsc::channel::<()>();
        let text = text.to_owned();
        let thread = std::thread::spawn(move || {
            let mut left = timeout.as_secs();
            loop {
                let _ = write!(tty, "\r\x1b[2K{text}… {left:>2} s ");
                let _ = tty.flush();
                match rx.recv_timeout(Duration::from_secs(1)) {
                    Err(mpsc::RecvTimeoutError::Timeout) if left > 0 => left -= 1,
                    _ => break,
                }
            }
            let _ = write!(tty, "\r\x1b[2K");
            let _ = tty.flush();
        });
        Self {
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for TouchPrompt {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
