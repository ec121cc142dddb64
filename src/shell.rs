//! Shell text for `breakglass env PROFILE --shell ...`: one statement per variable that sets it
//! in the user's shell. The values are live AWS credentials, so two things matter here:
//!
//! - **Quoting is exact for any value.** Every value goes inside the shell's single-quote form,
//!   the one with the fewest special characters, and those few are escaped. Nothing in a value
//!   can end the statement early, expand, or run.
//! - **No stray copies.** The text is written into one buffer sized up front for the worst case,
//!   which refuses to grow, so no reallocation leaves an unwiped copy on the heap; the buffer is
//!   returned as [`Zeroizing`] and wiped (its whole capacity) when dropped.
//!
//! How the caller's user evaluates it, and what the shells themselves do with it:
//!
//! - bash, zsh: `eval "$(breakglass env P --shell bash)"`. The double quotes matter: without
//!   them the shell splits the text into words before `eval` sees it. zsh's `RC_QUOTES` option
//!   does not change the meaning, because a closing quote is never directly followed by an
//!   opening one.
//! - fish: `breakglass env P --shell fish | source`. fish treats a variable whose name ends in
//!   `PATH` as a list split on `:`; it exports it joined with `:` again, so child processes
//!   still see the exact value.
//! - PowerShell: `breakglass env P --shell powershell | Out-String | Invoke-Expression`. Without
//!   `Out-String`, PowerShell hands each output *line* to `Invoke-Expression` separately, which
//!   breaks a value that holds a newline. Assigning `''` to `$Env:NAME` removes the variable
//!   rather than setting it empty: that is PowerShell's rule, not a quoting problem.

use zeroize::Zeroizing;

/// The shells `breakglass env` can write for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    /// Bash: `export NAME='value'`
    Bash,
    /// Zsh: `export NAME='value'`
    Zsh,
    /// Fish: `set -gx NAME 'value'`
    Fish,
    /// PowerShell: `$Env:NAME = 'value'`
    Powershell,
}

/// Statements that set each `(name, value)` in `shell`, one per statement, each ending with a
/// newline (a statement spans several lines when its value holds newlines).
///
/// Returns `Err` naming the variable when a name is not `[A-Za-z_][A-Za-z0-9_]*` (names come
/// from our own code, so that is a programming error), or when a value holds a NUL byte (no
/// environment can carry one). Error messages never include a value.
pub fn render(shell: Shell, vars: &[(&str, &str)]) -> Result<Zeroizing<String>, Error> {
    let syntax = Syntax::of(shell);
    let mut buf = FixedBuffer::new(capacity_needed(&syntax, vars)?)?;
    for (name, value) in vars {
        write_statement(&mut buf, &syntax, name, value)?;
    }
    Ok(buf.into_inner())
}

/// Why the assignments could not be written. Never carries a value: values are secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A variable name outside `[A-Za-z_][A-Za-z0-9_]*` (names are ours: a bug).
    #[error("invalid environment variable name {name:?}: it must match [A-Za-z_][A-Za-z0-9_]*")]
    BadName {
        /// The name.
        name: String,
    },
    /// A value with a NUL byte, which no environment can carry.
    #[error(
        "the value of environment variable {name} contains a NUL byte, which an environment \
         cannot hold"
    )]
    Nul {
        /// The variable (never its value).
        name: String,
    },
    /// The text would not fit in memory (its size overflows).
    #[error("the environment text is too large to build")]
    TooLarge,
    /// The allocator refused the buffer.
    #[error("cannot allocate the environment text: {0}")]
    Alloc(std::collections::TryReserveError),
    /// A push went past the precomputed size: a bug in the size computation.
    #[error("internal error: the environment text outgrew its precomputed size")]
    Outgrown,
}

/// What one shell's assignment statement looks like: `{before_name}NAME{open}VALUE{close}`.
struct Syntax {
    before_name: &'static str,
    /// From after the name up to and including the opening single quote.
    open: &'static str,
    /// The closing quote and the newline that ends the statement.
    close: &'static str,
    /// The most bytes any one value byte can turn into, used to size the buffer.
    worst_expansion: usize,
    /// The replacement text for a character that is special inside the single quotes.
    escape: fn(char) -> Option<&'static str>,
}

impl Syntax {
    fn of(shell: Shell) -> Self {
        match shell {
            Shell::Bash | Shell::Zsh => Self {
                before_name: "export ",
                open: "='",
                close: "'\n",
                worst_expansion: 4,
                escape: escape_posix,
            },
            Shell::Fish => Self {
                before_name: "set -gx ",
                open: " '",
                close: "'\n",
                worst_expansion: 2,
                escape: escape_fish,
            },
            Shell::Powershell => Self {
                before_name: "$Env:",
                open: " = '",
                close: "'\n",
                worst_expansion: 2,
                escape: escape_powershell,
            },
        }
    }

    /// Bytes of the statement's fixed parts (everything but the value).
    fn overhead(&self, name: &str) -> usize {
        self.before_name.len() + name.len() + self.open.len() + self.close.len()
    }
}

/// bash and zsh: nothing is special inside single quotes except the quote itself, which cannot
/// be escaped there. So close the quotes, add an escaped quote, and reopen: `'\''`.
fn escape_posix(c: char) -> Option<&'static str> {
    (c == '\'').then_some(r"'\''")
}

/// fish: inside single quotes, `\\` and `\'` are the only escapes (any other backslash is
/// literal). A backslash must be doubled too, or a value ending in `\` would escape the closing
/// quote.
fn escape_fish(c: char) -> Option<&'static str> {
    match c {
        '\\' => Some(r"\\"),
        '\'' => Some(r"\'"),
        _ => None,
    }
}

/// PowerShell: inside single quotes a quote is written twice, and PowerShell counts the
/// typographic single quotes U+2018..U+201B as quotes as well, so each of those is doubled too.
fn escape_powershell(c: char) -> Option<&'static str> {
    match c {
        '\'' => Some("''"),
        '\u{2018}' => Some("\u{2018}\u{2018}"),
        '\u{2019}' => Some("\u{2019}\u{2019}"),
        '\u{201A}' => Some("\u{201A}\u{201A}"),
        '\u{201B}' => Some("\u{201B}\u{201B}"),
        _ => None,
    }
}

/// The buffer size that holds the statements for `vars` whatever their values contain, after
/// checking every name and value. Overflow is reported rather than wrapped.
fn capacity_needed(syntax: &Syntax, vars: &[(&str, &str)]) -> Result<usize, Error> {
    let too_large = || Error::TooLarge;
    let mut total: usize = 0;
    for (name, value) in vars {
        check_name(name)?;
        check_value(name, value)?;
        let value_worst = value
            .len()
            .checked_mul(syntax.worst_expansion)
            .ok_or_else(too_large)?;
        total = total
            .checked_add(syntax.overhead(name))
            .and_then(|t| t.checked_add(value_worst))
            .ok_or_else(too_large)?;
    }
    Ok(total)
}

/// Names are ours and go into the text unquoted, so they must be plain identifiers that every
/// supported shell accepts as a variable name.
fn check_name(name: &str) -> Result<(), Error> {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    if first_ok && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(())
    } else {
        Err(Error::BadName {
            name: name.to_owned(),
        })
    }
}

/// An environment value cannot hold NUL, and shells drop or mangle it. The message names only
/// the variable: the value is a secret.
fn check_value(name: &str, value: &str) -> Result<(), Error> {
    if value.contains('\0') {
        return Err(Error::Nul {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Writes one complete assignment statement.
fn write_statement(
    buf: &mut FixedBuffer,
    syntax: &Syntax,
    name: &str,
    value: &str,
) -> Result<(), Error> {
    buf.push_str(syntax.before_name)?;
    buf.push_str(name)?;
    buf.push_str(syntax.open)?;
    write_quoted_body(buf, value, syntax.escape)?;
    buf.push_str(syntax.close)
}

/// Copies `value` into `buf`, replacing special characters. Plain runs are copied straight from
/// `value` as slices, so no piece of the secret passes through a temporary.
fn write_quoted_body(
    buf: &mut FixedBuffer,
    value: &str,
    escape: fn(char) -> Option<&'static str>,
) -> Result<(), Error> {
    let mut run_start = 0;
    for (i, c) in value.char_indices() {
        if let Some(replacement) = escape(c) {
            buf.push_str(&value[run_start..i])?;
            buf.push_str(replacement)?;
            run_start = i + c.len_utf8();
        }
    }
    buf.push_str(&value[run_start..])
}

/// A wiped string buffer that never reallocates: a push that would not fit is an error (a bug
/// in [`capacity_needed`]), never a silent growth that would leave the old allocation unwiped.
/// No `Debug`: it holds secrets.
struct FixedBuffer(Zeroizing<String>);

impl FixedBuffer {
    /// Allocates exactly `capacity` bytes; `try_reserve_exact` reports a size the allocator
    /// cannot give instead of aborting.
    fn new(capacity: usize) -> Result<Self, Error> {
        let mut s = String::new();
        s.try_reserve_exact(capacity).map_err(Error::Alloc)?;
        Ok(Self(Zeroizing::new(s)))
    }

    fn push_str(&mut self, s: &str) -> Result<(), Error> {
        if s.len() > self.0.capacity() - self.0.len() {
            return Err(Error::Outgrown);
        }
        self.0.push_str(s);
        Ok(())
    }

    fn into_inner(self) -> Zeroizing<String> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    const ALL: [Shell; 4] = [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::Powershell];

    fn ok(shell: Shell, vars: &[(&str, &str)]) -> String {
        render(shell, vars).expect("render").to_string()
    }

    #[test]
    fn simple_values_per_shell() {
        let vars = [("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"), ("EMPTY", "")];
        assert_eq!(
            ok(Shell::Bash, &vars),
            "export AWS_ACCESS_KEY_ID='AKIAEXAMPLE'\nexport EMPTY=''\n"
        );
        assert_eq!(
            ok(Shell::Zsh, &vars),
            "export AWS_ACCESS_KEY_ID='AKIAEXAMPLE'\nexport EMPTY=''\n"
        );
        assert_eq!(
            ok(Shell::Fish, &vars),
            "set -gx AWS_ACCESS_KEY_ID 'AKIAEXAMPLE'\nset -gx EMPTY ''\n"
        );
        assert_eq!(
            ok(Shell::Powershell, &vars),
            "$Env:AWS_ACCESS_KEY_ID = 'AKIAEXAMPLE'\n$Env:EMPTY = ''\n"
        );
    }

    #[test]
    fn no_vars_is_empty_text() {
        for shell in ALL {
            assert_eq!(ok(shell, &[]), "");
        }
    }

    #[test]
    fn posix_quote_is_closed_escaped_and_reopened() {
        let vars = [("A", r#"it's "x" \ $HOME `id` !! "#)];
        let want = "export A='it'\\''s \"x\" \\ $HOME `id` !! '\n";
        assert_eq!(ok(Shell::Bash, &vars), want);
        assert_eq!(ok(Shell::Zsh, &vars), want);
    }

    #[test]
    fn fish_escapes_backslash_and_quote_only() {
        let vars = [("A", "a'b\\c\\\\\"$d\n")];
        assert_eq!(
            ok(Shell::Fish, &vars),
            "set -gx A 'a\\'b\\\\c\\\\\\\\\"$d\n'\n"
        );
        // A trailing backslash must not escape the closing quote.
        assert_eq!(ok(Shell::Fish, &[("B", "x\\")]), "set -gx B 'x\\\\'\n");
    }

    #[test]
    fn powershell_doubles_every_single_quote_kind() {
        let vars = [("A", "a'b\u{2018}c\u{2019}d\u{201A}e\u{201B}f\"$g`h\\")];
        assert_eq!(
            ok(Shell::Powershell, &vars),
            "$Env:A = 'a''b\u{2018}\u{2018}c\u{2019}\u{2019}d\u{201A}\u{201A}e\u{201B}\u{201B}f\"$g`h\\'\n"
        );
    }

    #[test]
    fn bad_names_are_rejected_by_name() {
        for name in ["", "1A", "A-B", "A B", "A=B", "É", "A;rm", "$A"] {
            for shell in ALL {
                let err = render(shell, &[("OK", "v"), (name, "v")])
                    .expect_err(name)
                    .to_string();
                assert!(err.contains(&format!("{name:?}")), "{err}");
            }
        }
        for name in ["_", "A", "a_1", "_9", "AWS_SESSION_TOKEN"] {
            assert!(render(Shell::Bash, &[(name, "v")]).is_ok(), "{name}");
        }
    }

    #[test]
    fn nul_in_value_is_rejected_without_showing_the_value() {
        for shell in ALL {
            let err = render(shell, &[("SECRET_KEY", "hunter2\0tail")])
                .expect_err("NUL")
                .to_string();
            assert!(err.contains("SECRET_KEY"), "{err}");
            assert!(!err.contains("hunter2") && !err.contains("tail"), "{err}");
        }
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let out = render(Shell::Bash, &[("K", "hunter2")]).expect("render");
        assert!(!format!("{out:?}").contains("hunter2"));
    }

    /// The buffer is allocated once at the worst-case size and never grows: its capacity after
    /// building is exactly the precomputed size, whatever the values hold.
    #[test]
    fn buffer_never_reallocates() {
        let nasty = "'\"\\$`!\n\u{2018}\u{2019}\u{201A}\u{201B}é😀";
        let vars = [("A", nasty), ("B", ""), ("C", "plain")];
        for shell in ALL {
            let needed = capacity_needed(&Syntax::of(shell), &vars).expect("size");
            let out = render(shell, &vars).expect("render");
            assert_eq!(out.capacity(), needed, "{shell:?}");
            assert!(out.len() <= needed);
        }
    }

    /// The worst case is reached: a value made only of the costliest character fills the
    /// buffer exactly, so the bound is tight as well as safe.
    #[test]
    fn worst_case_fills_buffer_exactly() {
        let cases = [
            (Shell::Bash, "'".repeat(100)),
            (Shell::Zsh, "'".repeat(100)),
            (Shell::Fish, "\\'".repeat(50)),
            (
                Shell::Powershell,
                "'\u{2018}\u{2019}\u{201A}\u{201B}".repeat(20),
            ),
        ];
        for (shell, value) in cases {
            let out = render(shell, &[("V", &value)]).expect("render");
            assert_eq!(out.len(), out.capacity(), "{shell:?}");
        }
    }

    /// No escape expands a character by more than the factor the buffer is sized with.
    #[test]
    fn escapes_stay_within_worst_expansion() {
        for shell in ALL {
            let syntax = Syntax::of(shell);
            for c in [
                '\'', '"', '\\', '$', '`', '\n', '\u{2018}', '\u{2019}', '\u{201A}', '\u{201B}',
            ] {
                if let Some(rep) = (syntax.escape)(c) {
                    assert!(
                        rep.len() <= syntax.worst_expansion * c.len_utf8(),
                        "{shell:?} {c:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn value_enum_names_match_the_cli() {
        let names: Vec<String> = Shell::value_variants()
            .iter()
            .filter_map(|s| s.to_possible_value())
            .map(|p| p.get_name().to_string())
            .collect();
        assert_eq!(names, ["bash", "zsh", "fish", "powershell"]);
    }
}
