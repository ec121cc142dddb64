//! A [`Prompt`] that answers from a script: the demo's two holders, the tests' and the
//! benchmarks'. Each answer list is used in order and its last answer repeats, so a script of
//! one answer answers every ceremony the same.

use std::collections::VecDeque;

use secrecy::SecretString;

use crate::ceremony::{Error, Prompt, Role};

/// Scripted holders. With [`Scripted::narrated`], every answer is told to a sink as
/// "[role] types …" (secrets as dots), which the demo prints.
pub struct Scripted {
    password_holder: String,
    token_holder: String,
    passphrases: VecDeque<String>,
    pins: VecDeque<String>,
    custodians: Vec<(String, String)>,
    narrate: Option<Narrator>,
}

/// Where a narrated script tells what the holders type.
type Narrator = Box<dyn FnMut(&str)>;

impl Scripted {
    /// Two holders and the passphrase they type; no PIN until [`Scripted::pins`].
    pub fn new(password_holder: &str, token_holder: &str, passphrase: &str) -> Self {
        Self {
            password_holder: password_holder.to_owned(),
            token_holder: token_holder.to_owned(),
            passphrases: VecDeque::from([passphrase.to_owned()]),
            pins: VecDeque::new(),
            custodians: Vec::new(),
            narrate: None,
        }
    }

    /// The custodians present, in the order they answer, with their passphrases: the n-th
    /// custodian asked gives the n-th name, and each gives their own passphrase (a name not
    /// listed types the next of [`Scripted::passphrases`]).
    pub fn custodians(mut self, present: &[(&str, &str)]) -> Self {
        self.custodians = present
            .iter()
            .map(|(n, p)| ((*n).to_owned(), (*p).to_owned()))
            .collect();
        self
    }

    /// The passphrases typed, in order (the last one repeats).
    pub fn passphrases(mut self, answers: &[&str]) -> Self {
        self.passphrases = answers.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// The PINs typed, in order (the last one repeats).
    pub fn pins(mut self, answers: &[&str]) -> Self {
        self.pins = answers.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// Tells every answer, touch and note to `sink`, one line each.
    pub fn narrated(mut self, sink: impl FnMut(&str) + 'static) -> Self {
        self.narrate = Some(Box::new(sink));
        self
    }

    fn say(&mut self, text: &str) {
        if let Some(sink) = &mut self.narrate {
            sink(text);
        }
    }
}

/// The next answer; the last one stays.
fn next(answers: &mut VecDeque<String>) -> Option<String> {
    if answers.len() > 1 {
        answers.pop_front()
    } else {
        answers.front().cloned()
    }
}

fn dots(s: &str) -> String {
    "•".repeat(s.chars().count())
}

impl Prompt for Scripted {
    fn name(&mut self, role: Role) -> Result<String, Error> {
        let n = match role {
            Role::PasswordHolder => self.password_holder.clone(),
            Role::TokenHolder => self.token_holder.clone(),
        };
        self.say(&format!("[{}] types their name: {n}", role.label()));
        Ok(n)
    }

    fn passphrase(&mut self, confirm: bool) -> Result<SecretString, Error> {
        let p = next(&mut self.passphrases).unwrap_or_default();
        let times = if confirm { " (twice)" } else { "" };
        self.say(&format!(
            "[password holder] types the passphrase{times}: {}",
            dots(&p)
        ));
        Ok(SecretString::from(p))
    }

    fn custodian_name(&mut self, index: usize, needed: usize) -> Result<String, Error> {
        let name = self
            .custodians
            .get(index.saturating_sub(1))
            .map(|(n, _)| n.clone())
            .ok_or_else(|| {
                Error::NoAnswer(format!(
                    "custodian {index} of {needed} is not in the script"
                ))
            })?;
        self.say(&format!(
            "[custodian {index} of {needed}] types their name: {name}"
        ));
        Ok(name)
    }

    fn custodian_passphrase(&mut self, name: &str, confirm: bool) -> Result<SecretString, Error> {
        let p = match self.custodians.iter().find(|(n, _)| n == name) {
            Some((_, p)) => p.clone(),
            None => next(&mut self.passphrases).unwrap_or_default(),
        };
        let times = if confirm { " (twice)" } else { "" };
        self.say(&format!(
            "[custodian {name}] types their passphrase{times}: {}",
            dots(&p)
        ));
        Ok(SecretString::from(p))
    }

    fn access_code(&mut self) -> Result<SecretString, Error> {
        Err(Error::NoAnswer(
            "the scripted token has no access code".into(),
        ))
    }

    fn touch_start(&mut self, what: &str) {
        self.say(&format!("[token holder] touches the token ({what})"));
    }

    fn touch_end(&mut self) {}

    fn wait(&mut self, secs: u64, why: &str) {
        self.say(&format!("{why}: {secs} s"));
        std::thread::sleep(std::time::Duration::from_secs(secs));
    }

    fn note(&mut self, text: &str) {
        self.say(text);
    }

    fn pin(&mut self, what: &str, tries_left: u8) -> Result<SecretString, Error> {
        let p = next(&mut self.pins)
            .ok_or_else(|| Error::NoAnswer(format!("no {what} PIN in the script")))?;
        self.say(&format!(
            "[password holder] types the {what} PIN ({tries_left} tries left): {}",
            dots(&p)
        ));
        Ok(SecretString::from(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn answers_in_order_and_the_last_repeats() {
        let mut s = Scripted::new("Alice", "Bob", "p").passphrases(&["one", "two"]);
        assert_eq!(s.name(Role::PasswordHolder).unwrap(), "Alice");
        assert_eq!(s.name(Role::TokenHolder).unwrap(), "Bob");
        assert_eq!(s.passphrase(false).unwrap().expose_secret(), "one");
        assert_eq!(s.passphrase(false).unwrap().expose_secret(), "two");
        assert_eq!(s.passphrase(false).unwrap().expose_secret(), "two");
        assert!(matches!(s.pin("PIV", 3), Err(Error::NoAnswer(_))));
        let mut s = s.pins(&["1", "2"]);
        assert_eq!(s.pin("PIV", 3).unwrap().expose_secret(), "1");
        assert_eq!(s.pin("PIV", 2).unwrap().expose_secret(), "2");
        assert_eq!(s.pin("PIV", 2).unwrap().expose_secret(), "2");
    }
}
