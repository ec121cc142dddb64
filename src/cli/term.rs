//! The terminal side of every command: the ceremony's [`Prompt`] on `/dev/tty` (each prompt
//! names the role that must answer), secrets from stdin or the terminal, the touch prompt with
//! its countdown, and opening a URL in a browser.
//!
//! Prompts go to `/dev/tty`, never to stderr: under `credential_process` the AWS CLI captures
//! stderr, and the token holder would never see "Touch the token".

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use secrecy::SecretString;
use zeroize::{Zeroize, Zeroizing};

use breakglass::ceremony::{Error as CError, Prompt, Role};
use breakglass::token::TOUCH_TIMEOUT;

use super::error::{exit, CliError};

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

/// Asks on the controlling terminal.
pub struct TtyPrompt {
    tty: File,
    touch: Option<TouchPrompt>,
}

impl TtyPrompt {
    /// The controlling terminal; without one, [`CError::NoTerminal`].
    pub fn open() -> Result<Self, CError> {
        let tty = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .map_err(|_| CError::NoTerminal)?;
        Ok(Self { tty, touch: None })
    }

    /// The terminal of a ceremony, with this process first made non-dumpable (no core, no
    /// ptrace by the same user); a protection that could not be set is said on the terminal.
    pub fn for_ceremony() -> Result<Self, CError> {
        let failed = breakglass::agent::harden::no_dumps();
        let mut tty = Self::open()?;
        if !failed.is_empty() {
            tty.say(&format!(
                "Warning: this process could not be protected from memory reads ({}).",
                failed.join(", ")
            ));
        }
        Ok(tty)
    }

    /// The terminal as the prompt of a ceremony this process may lead.
    pub fn boxed() -> Result<Box<dyn Prompt>, CError> {
        Ok(Box::new(Self::open()?))
    }

    pub fn say(&mut self, text: &str) {
        let _ = writeln!(self.tty, "{text}");
    }

    /// Shows `text`, reads one echoed line from the terminal, trimmed.
    fn ask(&mut self, text: &str) -> Result<String, CError> {
        let _ = write!(self.tty, "{text}");
        let _ = self.tty.flush();
        let mut line = String::new();
        let read = self
            .tty
            .try_clone()
            .map_err(|e| CError::NoAnswer(e.to_string()))?;
        BufReader::new(read)
            .read_line(&mut line)
            .map_err(|e| CError::NoAnswer(e.to_string()))?;
        Ok(line.trim().to_owned())
    }

    fn secret(&mut self, text: &str) -> Result<SecretString, CError> {
        let s = secret_from_tty(text).map_err(|e| CError::NoAnswer(e.to_string()))?;
        Ok(SecretString::from(s.to_string()))
    }
}

impl Prompt for TtyPrompt {
    fn name(&mut self, role: Role) -> Result<String, CError> {
        self.ask(&format!("{}, type your name: ", capitalise(role.label())))
    }

    fn passphrase(&mut self, confirm: bool) -> Result<SecretString, CError> {
        let first = self.secret("Password holder, type the vault passphrase (not shown): ")?;
        if confirm {
            let second = self.secret("Password holder, type the passphrase again: ")?;
            use secrecy::ExposeSecret;
            if first.expose_secret() != second.expose_secret() {
                return Err(CError::PassphraseMismatch);
            }
        }
        Ok(first)
    }

    fn custodian_name(&mut self, index: usize, needed: usize) -> Result<String, CError> {
        self.ask(&format!(
            "Custodian {index} of {needed} needed: type your name: "
        ))
    }

    fn custodian_passphrase(&mut self, name: &str, confirm: bool) -> Result<SecretString, CError> {
        let name = breakglass::ceremony::names::printable(name);
        let first = self.secret(&format!(
            "Custodian {name}, type your passphrase (not shown): "
        ))?;
        if confirm {
            let second = self.secret(&format!("Custodian {name}, type your passphrase again: "))?;
            use secrecy::ExposeSecret;
            if first.expose_secret() != second.expose_secret() {
                return Err(CError::PassphraseMismatch);
            }
        }
        Ok(first)
    }

    fn access_code(&mut self) -> Result<SecretString, CError> {
        self.secret("Password holder, type the token's access code (not shown): ")
    }

    fn touch_start(&mut self, what: &str) {
        self.touch = Some(TouchPrompt::with_text(
            &format!("Token holder, touch the token now ({what})"),
            TOUCH_TIMEOUT,
        ));
    }

    fn touch_end(&mut self) {
        self.touch = None;
    }

    fn wait(&mut self, secs: u64, why: &str) {
        for left in (1..=secs).rev() {
            let _ = write!(self.tty, "\r\x1b[2K{why}: {left:>2} s ");
            let _ = self.tty.flush();
            std::thread::sleep(Duration::from_secs(1));
        }
        let _ = write!(self.tty, "\r\x1b[2K");
    }

    fn note(&mut self, text: &str) {
        self.say(text);
    }

    fn line(&mut self, question: &str) -> Result<String, CError> {
        self.ask(question)
    }

    fn pin(&mut self, what: &str, tries_left: u8) -> Result<SecretString, CError> {
        self.secret(&format!(
            "Password holder, type the token's {what} PIN (not shown; {tries_left} {} left): ",
            if tries_left == 1 { "try" } else { "tries" }
        ))
    }

    fn confirm(&mut self, question: &str) -> Result<bool, CError> {
        let answer = self.ask(&format!("{question} Type yes to go on: "))?;
        Ok(answer.eq_ignore_ascii_case("yes"))
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// Opens the URL with `--browser CMD` or the system browser.
pub fn open_browser(browser: Option<&str>, url: &str, profile: &str) -> Result<(), CliError> {
    let no_browser = |why: String| {
        CliError::new(
            format!("no browser could be opened: {why}"),
            format!(
                "run `breakglass console {profile} --print` and paste the link into a browser (only there: it is a secret), or pass --browser COMMAND"
            ),
            exit::UNAVAILABLE,
        )
    };
    match browser {
        Some(cmd) => {
            let mut words = cmd.split_whitespace();
            let program = words
                .next()
                .ok_or_else(|| no_browser("--browser is empty".into()))?;
            let status = Command::new(program)
                .args(words)
                .arg(url)
                .stdin(Stdio::null())
                .status()
                .map_err(|e| no_browser(format!("{program}: {e}")))?;
            if !status.success() {
                return Err(no_browser(format!("{program} exited with {status}")));
            }
        }
        None => webbrowser::open(url).map_err(|e| no_browser(e.to_string()))?,
    }
    eprintln!("breakglass: opened in the browser.");
    Ok(())
}
