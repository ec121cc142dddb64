//! The PC/SC transport: list readers, choose one, connect, run exclusive transactions.
//!
//! Hardware quirk: dropping a `pcsc::Card` disconnects with `SCARD_RESET_CARD`, which resets the
//! token and drops any verified state other programs rely on. [`Card`] disconnects with
//! `SCARD_LEAVE_CARD` instead, as ykman and age-plugin-yubikey do.

use std::ffi::CString;
use std::time::Duration;

use ::pcsc::{Context, Disposition, Protocols, ReaderState, Scope, ShareMode, State};
use zeroize::Zeroizing;

use super::{Error, Transport};

/// Largest response we accept in one exchange (extended APDU plus status word).
const RECEIVE_BUFFER: usize = 65_538;

/// A reader and whether a card sits in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderInfo {
    /// The reader's name, as pcscd reports it.
    pub name: String,
    /// A card is present and not mute.
    pub card_present: bool,
    /// The card's answer to reset; empty without a card.
    pub atr: Vec<u8>,
}

/// Lists every reader pcscd knows, with card presence and ATR.
pub fn list_readers() -> Result<Vec<ReaderInfo>, Error> {
    let ctx = Context::establish(Scope::User)?;
    list_with(&ctx)
}

fn list_with(ctx: &Context) -> Result<Vec<ReaderInfo>, Error> {
    let names = ctx.list_readers_owned()?;
    let mut states: Vec<ReaderState> = names
        .iter()
        .map(|n| ReaderState::new(n.clone(), State::UNAWARE))
        .collect();
    if states.is_empty() {
        return Ok(Vec::new());
    }
    ctx.get_status_change(Duration::ZERO, &mut states)?;
    Ok(states
        .iter()
        .map(|s| ReaderInfo {
            name: s.name().to_string_lossy().into_owned(),
            card_present: s.event_state().contains(State::PRESENT)
                && !s.event_state().contains(State::MUTE),
            atr: s.atr().to_vec(),
        })
        .collect())
}

/// Picks the reader to use: with a filter, the readers whose name contains it
/// (case-insensitive; an exact name always wins); without, every reader. Among the candidates,
/// exactly one must hold a card.
pub fn choose_reader(readers: &[ReaderInfo], filter: Option<&str>) -> Result<String, Error> {
    let all_names = || readers.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
    if readers.is_empty() {
        return Err(Error::NoReaders);
    }
    let candidates: Vec<&ReaderInfo> = match filter {
        Some(f) => {
            if let Some(exact) = readers.iter().find(|r| r.name == f) {
                vec![exact]
            } else {
                let f = f.to_lowercase();
                let found: Vec<_> = readers
                    .iter()
                    .filter(|r| r.name.to_lowercase().contains(&f))
                    .collect();
                if found.is_empty() {
                    return Err(Error::ReaderNotFound {
                        wanted: f,
                        readers: all_names(),
                    });
                }
                found
            }
        }
        None => readers.iter().collect(),
    };
    let with_card: Vec<&&ReaderInfo> = candidates.iter().filter(|r| r.card_present).collect();
    match with_card.as_slice() {
        [one] => Ok(one.name.clone()),
        [] => Err(Error::NoToken {
            readers: candidates.iter().map(|r| r.name.clone()).collect(),
        }),
        many => Err(Error::SeveralTokens {
            readers: many.iter().map(|r| r.name.clone()).collect(),
        }),
    }
}

/// A connected card. Open a [`Card::transaction`] to talk to it.
pub struct Card {
    card: Option<::pcsc::Card>,
    reader: String,
}

impl std::fmt::Debug for Card {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Card")
            .field("reader", &self.reader)
            .finish()
    }
}

impl Card {
    /// Connects (shared mode) to the one token selected by `filter` (see [`choose_reader`]).
    pub fn open(filter: Option<&str>) -> Result<Self, Error> {
        let ctx = Context::establish(Scope::User)?;
        let readers = list_with(&ctx)?;
        let name = choose_reader(&readers, filter)?;
        Self::connect(&ctx, &name)
    }

    /// Connects to the reader with exactly this name.
    pub fn open_exact(name: &str) -> Result<Self, Error> {
        let ctx = Context::establish(Scope::User)?;
        Self::connect(&ctx, name)
    }

    fn connect(ctx: &Context, name: &str) -> Result<Self, Error> {
        let cname = CString::new(name).map_err(|_| Error::InvalidInput {
            what: "reader name",
            reason: "contains a NUL byte".into(),
        })?;
        // Right after another client died holding the card (a ceremony killed while the
        // token blinked), pcscd resets the card for it; until the card's ATR and protocol are
        // back, SCardConnect answers PROTO_MISMATCH (or RESET_CARD). That lasts milliseconds:
        // wait for it, within a bound, instead of failing a ceremony on pcscd's cleanup.
        let mut tries = 0;
        let card = loop {
            match ctx.connect(&cname, ShareMode::Shared, Protocols::ANY) {
                Err(::pcsc::Error::ProtoMismatch | ::pcsc::Error::ResetCard) if tries < 20 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => break other?,
            }
        };
        Ok(Self {
            card: Some(card),
            reader: name.to_owned(),
        })
    }

    /// The name of the reader the card is in.
    pub fn reader(&self) -> &str {
        &self.reader
    }

    /// Begins an exclusive transaction: no other program can interleave APDUs until it drops.
    pub fn transaction(&mut self) -> Result<Transaction<'_>, Error> {
        let card = self.card.as_mut().ok_or(Error::TokenRemoved)?;
        Ok(Transaction {
            tx: card.transaction()?,
        })
    }
}

impl Drop for Card {
    fn drop(&mut self) {
        if let Some(card) = self.card.take() {
            // Leave the card as it is; on failure the pcsc crate's own Drop resets it.
            let _ = card.disconnect(Disposition::LeaveCard);
        }
    }
}

/// An exclusive transaction on a [`Card`]; the [`Transport`] for applet clients.
pub struct Transaction<'c> {
    tx: ::pcsc::Transaction<'c>,
}

impl Transport for Transaction<'_> {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let mut buf = Zeroizing::new(vec![0u8; RECEIVE_BUFFER]);
        let n = match self.tx.transmit(apdu, &mut buf) {
            Ok(answer) => answer.len(),
            // From SCardTransmit, pcsc-lite's NOT_TRANSACTED means "APDU exchange not
            // successful": the reader lost the card mid-command (a token pulled while it waits
            // for a touch). pcscd may not have noticed the removal yet, so the card's status
            // can still say "present"; the token did stop answering either way.
            Err(::pcsc::Error::NotTransacted) => return Err(Error::TokenRemoved),
            Err(e) => return Err(e.into()),
        };
        if n < 2 {
            // A reader whose card vanished mid-command (vpcd when the card's socket closes)
            // can report success with no bytes at all: ask pcscd what became of the card.
            return Err(match self.tx.status2_owned() {
                Err(e) => Error::from(e),
                Ok(_) => Error::TokenRemoved,
            });
        }
        buf.truncate(n);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(name: &str, card: bool) -> ReaderInfo {
        ReaderInfo {
            name: name.into(),
            card_present: card,
            atr: vec![],
        }
    }

    #[test]
    fn chooses_the_only_reader_with_a_card() {
        let rs = [
            reader("Virtual PCD 00 00", false),
            reader("Virtual PCD 00 01", true),
        ];
        assert_eq!(choose_reader(&rs, None).unwrap(), "Virtual PCD 00 01");
        assert_eq!(
            choose_reader(&rs, Some("virtual")).unwrap(),
            "Virtual PCD 00 01"
        );
    }

    #[test]
    fn exact_name_beats_substring() {
        let rs = [
            reader("Virtual PCD 00 00", true),
            reader("Virtual PCD 00 01", true),
        ];
        assert!(matches!(
            choose_reader(&rs, None),
            Err(Error::SeveralTokens { readers }) if readers.len() == 2
        ));
        assert_eq!(
            choose_reader(&rs, Some("Virtual PCD 00 00")).unwrap(),
            "Virtual PCD 00 00"
        );
        assert_eq!(
            choose_reader(&rs, Some("00 01")).unwrap(),
            "Virtual PCD 00 01"
        );
    }

    #[test]
    fn reports_missing_readers_and_tokens() {
        assert!(matches!(choose_reader(&[], None), Err(Error::NoReaders)));
        let rs = [reader("Yubico YubiKey OTP+FIDO+CCID 00 00", false)];
        assert!(matches!(
            choose_reader(&rs, None),
            Err(Error::NoToken { .. })
        ));
        assert!(matches!(
            choose_reader(&rs, Some("nitrokey")),
            Err(Error::ReaderNotFound { .. })
        ));
    }
}
