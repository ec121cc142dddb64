//! A reader of the AWS shared config file (`~/.aws/config`): which AWS profiles exist, their
//! region, and which of them get their credentials from `breakglass credential-process NAME`.
//!
//! The AWS CLI is the authority on that file; this reader follows its parser (Python's
//! `configparser` under botocore) where it matters and never fails: what it cannot read is
//! skipped.
//! - Sections: `[default]`, `[profile NAME]` (`NAME` one shell word, quotes allowed;
//!   `[profile default]` is `default`). Other sections (`[sso-session …]`, `[services …]`,
//!   `[NAME]` without `profile`) are skipped with their keys. A section named twice is merged,
//!   later keys winning.
//! - `key = value` or `key: value`; keys are case-insensitive; full-line comments start with
//!   `#` or `;`, and a `#` or `;` after whitespace starts an inline comment (as the AWS SDKs
//!   read it).
//! - A line indented deeper than the key line above it continues that key (a nested section such
//!   as `s3 =` / `  max_concurrent_requests = 20`): skipped, so it can never set a profile's own
//!   keys.
//! - Lines before any section, lines without `=` or `:`, and keys with no name are skipped.

use std::ffi::OsString;
use std::path::PathBuf;

/// The shared config file: `AWS_CONFIG_FILE` (a leading `~/` is the home directory), else
/// `$HOME/.aws/config`. `None` when neither is set.
pub fn path() -> Option<PathBuf> {
    path_from(|name| std::env::var_os(name))
}

fn path_from(get: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let home = || get("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
    if let Some(file) = get("AWS_CONFIG_FILE").filter(|f| !f.is_empty()) {
        let text = file.to_string_lossy();
        if text == "~" {
            return home();
        }
        if let Some(rest) = text.strip_prefix("~/") {
            return home().map(|h| h.join(rest));
        }
        return Some(PathBuf::from(file));
    }
    home().map(|h| h.join(".aws").join("config"))
}

/// One AWS profile of the shared config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsProfile {
    /// `default` for `[default]` and `[profile default]`.
    pub name: String,
    /// The profile's `region`, when set.
    pub region: Option<String>,
    /// `X` when the profile's `credential_process` is `breakglass credential-process X`
    /// (the program may be an absolute path ending in `/breakglass`; flags are tolerated).
    pub breakglass_profile: Option<String>,
}

/// The profiles of `text`, in the order they first appear. Never fails: see the module doc.
pub fn parse(text: &str) -> Vec<AwsProfile> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut profiles: Vec<AwsProfile> = Vec::new();
    // The profile whose keys are being read; `None` outside profile sections.
    let mut current: Option<usize> = None;
    // Whether a key line was read since the section header, and the indentation of the last
    // line that was not a continuation (configparser's rule for continuation lines).
    let mut in_key = false;
    let mut indent = 0usize;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let line_indent = line.chars().take_while(|c| c.is_whitespace()).count();
        if in_key && line_indent > indent {
            continue;
        }
        indent = line_indent;
        if trimmed.starts_with('[') {
            in_key = false;
            current = section_profile(trimmed).map(|name| {
                profiles
                    .iter()
                    .position(|p| p.name == name)
                    .unwrap_or_else(|| {
                        profiles.push(AwsProfile {
                            name,
                            region: None,
                            breakglass_profile: None,
                        });
                        profiles.len() - 1
                    })
            });
            continue;
        }
        let Some((key, value)) = key_value(trimmed) else {
            continue;
        };
        in_key = true;
        let Some(profile) = current.and_then(|i| profiles.get_mut(i)) else {
            continue;
        };
        let value = strip_inline_comment(value);
        if key.eq_ignore_ascii_case("region") {
            profile.region = Some(value.to_owned()).filter(|v| !v.is_empty());
        } else if key.eq_ignore_ascii_case("credential_process") {
            profile.breakglass_profile = breakglass_profile(value);
        }
    }
    profiles
}

/// The profile a section header names: `[default]`, `[profile NAME]`; `None` for other sections.
fn section_profile(line: &str) -> Option<String> {
    // configparser takes the header up to the last `]`; anything after it is ignored.
    let header = &line[1..line.rfind(']')?];
    if header == "default" {
        return Some("default".into());
    }
    let rest = header.strip_prefix("profile")?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    match shell_words(rest)?.as_slice() {
        [name] if !name.is_empty() => Some(name.clone()),
        _ => None,
    }
}

/// `key = value` or `key: value` (the first delimiter wins), both trimmed; `None` without a
/// delimiter or a key.
fn key_value(line: &str) -> Option<(&str, &str)> {
    let at = line.find(['=', ':'])?;
    let key = line[..at].trim();
    if key.is_empty() {
        return None;
    }
    Some((key, line[at + 1..].trim()))
}

/// `value` up to a `#` or `;` that follows whitespace.
fn strip_inline_comment(value: &str) -> &str {
    let mut prev_space = false;
    for (i, c) in value.char_indices() {
        if prev_space && (c == '#' || c == ';') {
            return value[..i].trim_end();
        }
        prev_space = c.is_whitespace();
    }
    value
}

/// The breakglass profile a `credential_process` command names, if it is
/// `breakglass [FLAGS] credential-process [FLAGS] PROFILE [ARGS]`. Flags before the profile
/// must be `--flag` or `--flag=value`; `--` ends them.
fn breakglass_profile(command: &str) -> Option<String> {
    let words = shell_words(command)?;
    let (program, args) = words.split_first()?;
    let is_breakglass =
        program == "breakglass" || (program.starts_with('/') && program.ends_with("/breakglass"));
    if !is_breakglass {
        return None;
    }
    let sub = args.iter().position(|a| !a.starts_with('-'))?;
    if args[sub] != "credential-process" {
        return None;
    }
    let mut rest = args[sub + 1..].iter();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            return rest.next().filter(|p| !p.is_empty()).cloned();
        }
        if arg.starts_with('-') {
            continue;
        }
        return Some(arg.clone()).filter(|p| !p.is_empty());
    }
    None
}

/// Splits `text` into words as a POSIX shell does (and Python's `shlex.split`, which the AWS
/// CLI uses for `credential_process`): whitespace separates; `'…'` is literal; in `"…"` a
/// backslash escapes only `"` and `\`; elsewhere it escapes any character. `None` for an
/// unterminated quote or a trailing backslash.
fn shell_words(text: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => w.push(c),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '\\') => w.push(c),
                            c => {
                                w.push('\\');
                                w.push(c);
                            }
                        },
                        c => w.push(c),
                    }
                }
            }
            '\\' => {
                let next = chars.next()?;
                word.get_or_insert_with(String::new).push(next);
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(name: &str, region: Option<&str>, bg: Option<&str>) -> AwsProfile {
        AwsProfile {
            name: name.into(),
            region: region.map(Into::into),
            breakglass_profile: bg.map(Into::into),
        }
    }

    #[test]
    fn reads_default_and_named_profiles() {
        let text = "\
# AWS config
[default]
region = eu-west-1

[profile prod-admin]
region=us-east-1
credential_process = breakglass credential-process prod

; another
[profile dev]
output = json
";
        assert_eq!(
            parse(text),
            vec![
                profile("default", Some("eu-west-1"), None),
                profile("prod-admin", Some("us-east-1"), Some("prod")),
                profile("dev", None, None),
            ]
        );
    }

    #[test]
    fn credential_process_forms() {
        let bg = |cmd: &str| breakglass_profile(cmd);
        assert_eq!(
            bg("breakglass credential-process prod").as_deref(),
            Some("prod")
        );
        assert_eq!(
            bg("/usr/local/bin/breakglass credential-process prod").as_deref(),
            Some("prod")
        );
        assert_eq!(
            bg("breakglass --verbose credential-process --quiet --format=json prod --extra x")
                .as_deref(),
            Some("prod")
        );
        assert_eq!(
            bg("breakglass credential-process -- -odd-name").as_deref(),
            Some("-odd-name")
        );
        assert_eq!(
            bg("'/opt/my tools/breakglass' credential-process 'team prod'").as_deref(),
            Some("team prod")
        );
        assert_eq!(
            bg("\"/opt/x/breakglass\" credential-process \"a\\\"b\"").as_deref(),
            Some("a\"b")
        );
        // Not breakglass, or not its credential-process command.
        assert_eq!(bg("aws-vault exec prod --json"), None);
        assert_eq!(bg("bin/breakglass credential-process prod"), None);
        assert_eq!(bg("/usr/bin/notbreakglass credential-process prod"), None);
        assert_eq!(bg("/usr/bin/breakglass.sh credential-process prod"), None);
        assert_eq!(bg("breakglass unlock prod"), None);
        assert_eq!(bg("breakglass unlock credential-process"), None);
        // No profile, an empty one, or a command that cannot be split.
        assert_eq!(bg("breakglass credential-process"), None);
        assert_eq!(bg("breakglass credential-process --json"), None);
        assert_eq!(bg("breakglass credential-process ''"), None);
        assert_eq!(bg("breakglass credential-process 'prod"), None);
        assert_eq!(bg("breakglass credential-process prod\\"), None);
        assert_eq!(bg(""), None);
    }

    #[test]
    fn nested_sections_and_continuations_are_skipped() {
        let text = "\
[profile a]
s3 =
  max_concurrent_requests = 20
  region = wrong-1
  credential_process = breakglass credential-process wrong
region = us-west-2
credential_process = breakglass credential-process
    continued-not-a-profile
";
        assert_eq!(parse(text), vec![profile("a", Some("us-west-2"), None)]);
    }

    #[test]
    fn indented_keys_right_after_a_header_are_keys() {
        // configparser: a line is a continuation only when indented deeper than a key above.
        let text = "[profile a]\n  region = ap-south-1\n  credential_process = breakglass \
                    credential-process p\n      nested = 1\n";
        assert_eq!(
            parse(text),
            vec![profile("a", Some("ap-south-1"), Some("p"))]
        );
    }

    #[test]
    fn other_sections_and_odd_lines_are_skipped() {
        let text = "\
region = before-any-section
[sso-session corp]
region = sso-region
[services local]
sts =
  endpoint_url = http://localhost
[prod]
region = not-a-profile-without-the-word
[profilex]
region = nope
[profile two words]
region = nope
[ default ]
region = spaced-default-is-not-default
[profile ok] ; trailing comment
this line has no delimiter
= no key
Region: ca-central-1
[profile]
region = nope
[profile \"quoted name\"]
region = eu-north-1
[unterminated
region = still-quoted-name
";
        assert_eq!(
            parse(text),
            vec![
                profile("ok", Some("ca-central-1"), None),
                profile("quoted name", Some("eu-north-1"), None),
            ]
        );
    }

    #[test]
    fn repeated_sections_merge_and_later_keys_win() {
        let text = "\
[default]
region = eu-west-1
credential_process = breakglass credential-process one
[profile x]
[profile default]
region = eu-west-3
region = eu-central-1
[profile x]
region = us-east-2
";
        assert_eq!(
            parse(text),
            vec![
                profile("default", Some("eu-central-1"), Some("one")),
                profile("x", Some("us-east-2"), None),
            ]
        );
    }

    #[test]
    fn inline_comments_crlf_bom_and_empty_values() {
        let text = "\u{feff}[profile a]\r\nregion = us-east-1 # N. Virginia\r\n\
                    credential_process = breakglass credential-process prod ; note\r\n\
                    [profile b]\r\nregion =\r\ncredential_process = breakglass#x \
                    credential-process p\r\n";
        assert_eq!(
            parse(text),
            vec![
                profile("a", Some("us-east-1"), Some("prod")),
                profile("b", None, None),
            ]
        );
        assert_eq!(strip_inline_comment("a#b ;c"), "a#b");
        assert_eq!(strip_inline_comment("x\t# y"), "x");
    }

    #[test]
    fn odd_input_never_panics() {
        for text in [
            "",
            "[",
            "]",
            "[]",
            "[profile",
            "[profile ]",
            "=",
            ":",
            "\u{feff}",
            "[default]\n  \n\t",
            "[default]\nregion = é\n",
            "[profile é]\nregion=\u{2028}",
            "\\",
            "[profile '\\']",
        ] {
            let _ = parse(text);
        }
        assert_eq!(
            parse("[profile é]\nregion = x"),
            vec![profile("é", Some("x"), None)]
        );
    }

    #[test]
    fn shell_words_follow_posix_quoting() {
        let w = |t: &str| shell_words(t);
        assert_eq!(w("a  b\tc"), Some(vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!(w("'a b'\"c d\"e"), Some(vec!["a bc de".into()]));
        assert_eq!(
            w(r#""a\nb" a\ b"#),
            Some(vec![r"a\nb".into(), "a b".into()])
        );
        assert_eq!(w("''"), Some(vec![String::new()]));
        assert_eq!(w("\"unterminated"), None);
        assert_eq!(w(""), Some(vec![]));
    }

    #[test]
    fn path_prefers_aws_config_file() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert_eq!(
            path_from(env(&[("HOME", "/home/a")])),
            Some(PathBuf::from("/home/a/.aws/config"))
        );
        assert_eq!(
            path_from(env(&[
                ("HOME", "/home/a"),
                ("AWS_CONFIG_FILE", "/etc/aws.cfg")
            ])),
            Some(PathBuf::from("/etc/aws.cfg"))
        );
        assert_eq!(
            path_from(env(&[
                ("HOME", "/home/a"),
                ("AWS_CONFIG_FILE", "~/cfg/aws")
            ])),
            Some(PathBuf::from("/home/a/cfg/aws"))
        );
        assert_eq!(
            path_from(env(&[("HOME", "/home/a"), ("AWS_CONFIG_FILE", "")])),
            Some(PathBuf::from("/home/a/.aws/config"))
        );
        assert_eq!(path_from(env(&[])), None);
        assert_eq!(path_from(env(&[("AWS_CONFIG_FILE", "~/x")])), None);
    }
}
