//! Changing a version 3 vault's people and tokens without touching AWS (the `rekey`
//! ceremony's sealing): one custodian's new passphrase, a fresh split of `P`, a token removed
//! with a fresh `K` for the others, and the upgrade of a vault with one passphrase.

use secrecy::SecretString;
use zeroize::Zeroizing;

use super::format::CustodianSet;
use super::{
    check_custodians, data_key_v3, passphrase_factor, seal_share, shares, unwrap_v1, unwrap_v3,
    wrap_v3, Error, KeyFacts, Keys, Opened, SlotInfo, Vault,
};
use crate::secure::{random_bytes, Key32, Random};

/// A new custodian set ([`Opened::rekey`]): a fresh `P`, split anew.
pub struct NewCustodians<'a> {
    /// M.
    pub threshold: u8,
    /// The custodians, in share order (x = 1, 2, …), each with where their key comes from.
    pub members: Vec<(String, MemberKey<'a>)>,
}

/// Where a custodian's key comes from in a fresh split.
pub enum MemberKey<'a> {
    /// A custodian present in this sitting (by their x in the vault as opened): their key and
    /// salt are kept, so they type nothing again.
    Present(u8),
    /// A passphrase typed now: a new custodian, or one who was not present.
    Passphrase(&'a SecretString),
    /// The one passphrase of the version 1 or 2 vault being upgraded (its key and salt).
    Upgraded,
}

/// What [`Opened::rekey`] changes; what it does not name stays.
#[derive(Default)]
pub struct Change<'a> {
    /// A new custodian set (required to upgrade a version 1 or 2 vault).
    pub custodians: Option<NewCustodians<'a>>,
    /// Slots to remove.
    pub remove_slots: Vec<u8>,
}

impl Opened {
    /// A new passphrase for custodian `x`, who is present (their share opened in this
    /// sitting): their share is sealed again under the new passphrase (new salt); the other
    /// custodians, the slots and the data key do not change.
    pub fn change_passphrase(
        &self,
        x: u8,
        passphrase: &SecretString,
        rng: &dyn Random,
    ) -> Result<Vault, Error> {
        let Keys::Custodians { tk, present, .. } = &self.keys else {
            return Err(Error::NeedsUpgrade {
                version: self.vault.version(),
            });
        };
        let me = present
            .iter()
            .find(|p| p.x == x)
            .ok_or(Error::NoSuchCustodian { x })?;
        let mut v = self.vault.clone();
        let header = &mut v.sealed.header;
        let kdf = header.kdf;
        let vault_id = header.vault_id;
        let set = header.custodians.as_mut().ok_or(Error::Damaged)?;
        let record = set
            .members
            .iter_mut()
            .find(|m| m.x == x)
            .ok_or(Error::NoSuchCustodian { x })?;
        let salt = random_bytes(rng)?;
        let c = passphrase_factor(passphrase, &salt, &kdf)?;
        *record = seal_share(
            &vault_id,
            &tk[..32],
            &record.name.clone(),
            &me.share,
            salt,
            &c,
            rng,
        )?;
        v.reseal(&self.data_key, &self.payload, Some(&self.audit), rng)?;
        Ok(v)
    }

    /// The vault after `change`, in one new file (the caller replaces the old one atomically):
    ///
    /// - a new custodian set splits a fresh `P` (so shares of the old set, and an old copy of
    ///   the file, open nothing of the new one); custodians present keep their key, others
    ///   give a passphrase now;
    /// - removing slots gives the remaining ones a fresh token key `K`, so a removed token
    ///   with an old copy of the file opens nothing of the new one;
    /// - upgrading a version 1 or 2 vault (which needs `change.custodians`) does both, and
    ///   keeps the audit key.
    ///
    /// Any new `P` or `K` makes a new data key. Every slot that stays must be sealed again
    /// when the token key changes: the opening slot's token already answered; `token` is
    /// asked for each other slot's factor `T` (the holders present that token) and the answer
    /// is checked against the slot's old wrap ([`Error::WrongTokenForSlot`]).
    pub fn rekey(
        &self,
        change: &Change<'_>,
        token: &mut dyn FnMut(&SlotInfo) -> Result<Key32, Error>,
        rng: &dyn Random,
    ) -> Result<Vault, Error> {
        let old = &self.vault.sealed.header;
        let vault_id = old.vault_id;
        let upgrading = matches!(self.keys, Keys::Single { .. });
        if upgrading && change.custodians.is_none() {
            return Err(Error::NeedsUpgrade {
                version: self.vault.version(),
            });
        }
        // Slots first: what is removed, what stays.
        let mut slots = old.slots.clone();
        for id in &change.remove_slots {
            let before = slots.len();
            slots.retain(|s| s.info.id != *id);
            if slots.len() == before {
                return Err(Error::NoSuchSlot { id: *id });
            }
        }
        // Removing every slot says so, before saying the opening one cannot go.
        if slots.is_empty() {
            return Err(Error::LastSlot);
        }
        if change.remove_slots.contains(&self.slot_id) {
            return Err(Error::RemovingOpeningSlot { id: self.slot_id });
        }
        let resplit = change.custodians.is_some();
        let new_k = upgrading || !change.remove_slots.is_empty();
        let (old_p, old_tk) = match &self.keys {
            Keys::Single { p } => (p, None),
            Keys::Custodians { p, tk, .. } => (p, Some(tk)),
        };
        let mut tk = Zeroizing::new([0u8; 64]);
        // `Q` (which seals the shares) stays for the vault's life: a fresh one would mean
        // sealing every slot again, so every token present, for a change of people.
        match old_tk {
            Some(old) => tk[..32].copy_from_slice(&old[..32]),
            None => rng.fill(&mut tk[..32])?,
        }
        match old_tk {
            Some(old) if !new_k => tk[32..].copy_from_slice(&old[32..]),
            _ => rng.fill(&mut tk[32..])?,
        }
        let p = if resplit {
            Key32::random(rng)?
        } else {
            Key32::new(*old_p.expose())
        };
        // Every slot that stays, sealed again when the token key changed.
        if old_tk.is_none_or(|old| old[..] != tk[..]) {
            for record in &mut slots {
                let t = if record.info.id == self.slot_id {
                    Key32::new(*self.t.expose())
                } else {
                    let t = token(&record.info)?;
                    let right = match old_tk {
                        Some(_) => unwrap_v3(&vault_id, record, &t).is_some(),
                        None => unwrap_v1(&vault_id, record, old_p, &t)
                            .is_some_and(|k| k.expose() == self.data_key.expose()),
                    };
                    if !right {
                        return Err(Error::WrongTokenForSlot {
                            id: record.info.id,
                            label: record.info.label.clone(),
                        });
                    }
                    t
                };
                record.hkdf_salt = random_bytes(rng)?;
                record.wrap_nonce = random_bytes(rng)?;
                wrap_v3(&vault_id, record, &t, &tk);
            }
        }
        // The custodians: split anew, or kept as they are.
        let custodians = match &change.custodians {
            None => old.custodians.clone(),
            Some(new) => {
                let names: Vec<&str> = new.members.iter().map(|(n, _)| n.as_str()).collect();
                check_custodians(new.threshold, &names)?;
                let split = shares::split(&p, new.threshold, names.len() as u8, rng)?;
                let mut members = Vec::with_capacity(split.len());
                for ((name, key), share) in new.members.iter().zip(&split) {
                    let (c, salt) = match key {
                        MemberKey::Present(x) => {
                            let Keys::Custodians { present, .. } = &self.keys else {
                                return Err(Error::NoSuchCustodian { x: *x });
                            };
                            let me = present
                                .iter()
                                .find(|p| p.x == *x)
                                .ok_or(Error::NoSuchCustodian { x: *x })?;
                            (Key32::new(*me.c.expose()), me.salt)
                        }
                        MemberKey::Passphrase(passphrase) => {
                            let salt = random_bytes(rng)?;
                            (passphrase_factor(passphrase, &salt, &old.kdf)?, salt)
                        }
                        MemberKey::Upgraded => match &self.keys {
                            Keys::Single { p } => (Key32::new(*p.expose()), old.kdf_salt),
                            Keys::Custodians { .. } => {
                                return Err(Error::InvalidInput {
                                    what: "custodians",
                                    reason: "only a vault with one passphrase is upgraded".into(),
                                })
                            }
                        },
                    };
                    members.push(seal_share(
                        &vault_id,
                        &tk[..32],
                        name,
                        share,
                        salt,
                        &c,
                        rng,
                    )?);
                }
                Some(CustodianSet {
                    threshold: new.threshold,
                    members,
                })
            }
        };
        let mut header = old.clone();
        header.slots = slots;
        header.custodians = custodians;
        if header.key.is_none() {
            header.key = Some(KeyFacts {
                access_key_id: self.payload.access_key_id.clone(),
                sealed_at: self.payload.rotated,
                generation: 0,
            });
        }
        let changed = resplit || new_k;
        if changed {
            header.kdf_salt = random_bytes(rng)?;
        }
        let data_key = if changed {
            data_key_v3(&p, &tk[32..], &header.kdf_salt, &vault_id)
        } else {
            Key32::new(*self.data_key.expose())
        };
        let mut v = Vault::unsealed(header);
        v.reseal(&data_key, &self.payload, Some(&self.audit), rng)?;
        Ok(v)
    }
}
