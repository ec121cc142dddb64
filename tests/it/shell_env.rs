//! The real shells agree with `breakglass::shell`: hostile values are rendered, the text is
//! evaluated by bash, zsh and fish the way a user would (`eval "$(...)"`, `... | source`), and
//! every variable is read back, both as the shell sees it and as a child process inherits it,
//! and compared byte for byte with the input. PowerShell is not installable here; its quoting is
//! covered by the unit tests in `src/shell.rs`.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use breakglass::shell::{render, Shell};

/// Values chosen to break naive quoting in at least one of the shells.
fn nasty_values() -> Vec<(&'static str, String)> {
    let fixed: &[(&str, &str)] = &[
        ("EMPTY", ""),
        ("SINGLE_QUOTE", "'"),
        ("QUOTES", "it's \"quoted\" '' \"\" '\\''"),
        ("BACKSLASHES", "\\ \\\\ \\' \\\" \\n \\$ trailing\\"),
        ("ONLY_BACKSLASH", "\\"),
        ("DOLLARS", "$HOME ${HOME} $(id) $((1+1)) $'x' $\"y\" $"),
        ("BACKTICKS", "`id` ``"),
        ("NEWLINES", "\nfirst\n\nlast\n"),
        ("BANGS", "!! !$ !-1 ^a^b !"),
        ("GLOBS", "* ? [a] ~ ~root {a,b} # %self"),
        ("CONTROLS", "\t\r\x1b[31m\x7f\x01 \u{85}"),
        (
            "UNICODE",
            "é € 😀 \u{2018}\u{2019}\u{201A}\u{201B} \u{200B} \u{FEFF} \u{FDD0} \u{F600} \u{10FFFF}",
        ),
        ("DASH_E", "-e"),
        ("DOUBLE_DASH", "--help"),
        ("SEPARATORS", "; echo pwned; & | > < && || ( ) { }"),
        ("COLONS", "a:b::c:"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY+/=",
        ),
    ];
    let mut vars: Vec<(&str, String)> = fixed.iter().map(|(n, v)| (*n, v.to_string())).collect();
    vars.push(("MANY_QUOTES", "'\\".repeat(5000)));
    vars
}

/// The shell binary on PATH, or `None` after a visible skip (a failure in CI).
fn find_shell(test: &str, exe: &str, apt_package: &str) -> Option<PathBuf> {
    crate::common::tool(test, exe, &format!("apt-get install {apt_package}"))
}

/// Runs `exe args...` with `script` on stdin in a clean environment and returns its stdout.
/// Fails on a non-zero exit or on anything written to stderr (an injected command would show).
fn run_shell(exe: &PathBuf, args: &[&str], script: &str, locale: &str) -> Vec<u8> {
    let home = tempfile::tempdir().expect("temp home");
    let mut child = Command::new(exe)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("LC_ALL", locale)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shell");
    let mut stdin = child.stdin.take().expect("stdin");
    let script = script.to_string();
    // Written from a thread so a large script cannot deadlock against a full stdout pipe.
    let writer = std::thread::spawn(move || stdin.write_all(script.as_bytes()));
    let out = child.wait_with_output().expect("wait for shell");
    // A shell that died early closed its stdin: its stderr, below, says why.
    let written = writer.join().expect("writer thread");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{} {args:?} ({locale}) failed: {}\nstderr: {}",
        exe.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    written.expect("write script");
    out.stdout
}

/// The shell command that prints each variable NUL-terminated, then the exported environment
/// (`env -0`), so both the shell's own value and the inherited one can be checked.
fn print_back(names: &[&str], fish: bool) -> String {
    let refs: Vec<String> = names
        .iter()
        .map(|n| {
            if fish {
                format!("${n}")
            } else {
                format!("\"${n}\"")
            }
        })
        .collect();
    format!("printf '%s\\0' {}; env -0", refs.join(" "))
}

/// Splits the shell's output and compares every variable with its input, byte for byte.
fn check_round_trip(label: &str, vars: &[(&str, String)], stdout: &[u8]) {
    let mut fields = stdout.split(|&b| b == 0);
    for (name, value) in vars {
        let got = fields.next().unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(got),
            value.as_str(),
            "{label}: shell value of {name}"
        );
        assert_eq!(got, value.as_bytes(), "{label}: shell bytes of {name}");
    }
    let env: HashMap<&[u8], &[u8]> = fields
        .filter_map(|entry| {
            let eq = entry.iter().position(|&b| b == b'=')?;
            Some((&entry[..eq], &entry[eq + 1..]))
        })
        .collect();
    for (name, value) in vars {
        let got = env
            .get(name.as_bytes())
            .unwrap_or_else(|| panic!("{label}: {name} was not exported"));
        assert_eq!(*got, value.as_bytes(), "{label}: exported value of {name}");
    }
}

/// Renders the nasty values for `shell`, has the real shell run `options -c "EVAL; print back"`
/// with the text on stdin under each locale, and checks the round trip.
fn round_trip(test: &str, shell: Shell, exe: &str, options: &[&str], eval: &str) {
    let Some(path) = find_shell(test, exe, exe) else {
        return;
    };
    let vars = nasty_values();
    let borrowed: Vec<(&str, &str)> = vars.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let script = render(shell, &borrowed).expect("render");
    let names: Vec<&str> = vars.iter().map(|(n, _)| *n).collect();
    let command = format!("{eval}; {}", print_back(&names, shell == Shell::Fish));
    let mut args = options.to_vec();
    args.extend(["-c", &command]);
    for locale in ["C.UTF-8", "C"] {
        let stdout = run_shell(&path, &args, &script, locale);
        check_round_trip(&format!("{exe} {locale}"), &vars, &stdout);
    }
}

#[test]
fn bash_round_trips_nasty_values() {
    round_trip(
        "bash_round_trips_nasty_values",
        Shell::Bash,
        "bash",
        &["--norc", "--noprofile"],
        "eval \"$(cat)\"",
    );
}

#[test]
fn zsh_round_trips_nasty_values() {
    round_trip(
        "zsh_round_trips_nasty_values",
        Shell::Zsh,
        "zsh",
        &["-f"],
        "eval \"$(cat)\"",
    );
}

/// zsh's RC_QUOTES makes `''` inside single quotes a literal quote; the text must mean the
/// same with it on.
#[test]
fn zsh_rc_quotes_round_trips_nasty_values() {
    round_trip(
        "zsh_rc_quotes_round_trips_nasty_values",
        Shell::Zsh,
        "zsh",
        &["-f", "-o", "rcquotes"],
        "eval \"$(cat)\"",
    );
}

/// fish reads the script from stdin with `source` (no argument, stdin not a terminal), as in
/// `breakglass env P --shell fish | source`.
#[test]
fn fish_round_trips_nasty_values() {
    round_trip(
        "fish_round_trips_nasty_values",
        Shell::Fish,
        "fish",
        &["--no-config"],
        "source",
    );
}
