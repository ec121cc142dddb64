//! Vault v3: custodians (M of N shares), their known-answer vector, tampering, quorums, and the
//! rekey operations (a passphrase changed, a fresh split, a token removed, an upgrade), with
//! old copies of the file proving that what was removed opens nothing new.

use secrecy::SecretString;

use breakglass::secure::{Key32, Random, SystemRandom};
use breakglass::token::oath::Session;
use breakglass::token::soft::SoftCard;
use breakglass::vault::{
    self, Change, CustodianKey, Error, KdfParams, MemberKey, NewCustodians, OathFactor,
    PassphraseKey, SealFactor, SlotInfo, Vault,
};

use super::vault::{
    assert_vector_payload, every_flip_and_truncation_of, pass, payload, token, TestRng, SEAL,
};

pub(crate) const VECTOR_V3: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/vault-v3-vector.bin"
);

/// The custodians of the vector and of most tests: name, passphrase.
const PEOPLE: [(&str, &str); 5] = [
    ("Alice", "alice correct horse"),
    ("Bob", "bob battery staple"),
    ("Carol", "carol purple monkey"),
    ("Dan", "dan dishwasher"),
    ("Erin", "erin elephant"),
];

fn create(n: usize, m: u8, card: &mut SoftCard, rng: &dyn Random) -> Vault {
    let passes: Vec<SecretString> = PEOPLE[..n].iter().map(|(_, p)| pass(p)).collect();
    let custodians: Vec<(&str, &SecretString)> = PEOPLE[..n]
        .iter()
        .zip(&passes)
        .map(|((name, _), p)| (*name, p))
        .collect();
    let mut s = Session::select(card).unwrap();
    let mut f = OathFactor::new(&mut s, SEAL);
    Vault::create_with_custodians(
        &custodians,
        m,
        KdfParams::LIGHT,
        &mut f,
        "primary",
        &payload(),
        rng,
        1_700_000_000,
    )
    .unwrap()
}

/// The key of the custodian called `name`, with `passphrase`.
fn key(v: &Vault, name: &str, passphrase: &str) -> CustodianKey {
    let (_, members) = v.custodians().expect("a vault with custodians");
    let x = members.iter().find(|m| m.name == name).expect(name).x;
    v.derive_custodian(x, &pass(passphrase)).unwrap()
}

/// Opens `v` with the custodians at `who` (indices into [`PEOPLE`]), their own passphrases.
fn open(v: &Vault, card: &mut SoftCard, who: &[usize]) -> Result<vault::Opened, Error> {
    let keys = who
        .iter()
        .map(|i| key(v, PEOPLE[*i].0, PEOPLE[*i].1))
        .collect();
    open_with(v, card, keys)
}

fn open_with(
    v: &Vault,
    card: &mut SoftCard,
    keys: Vec<CustodianKey>,
) -> Result<vault::Opened, Error> {
    let mut s = Session::select(card).unwrap();
    let mut f = OathFactor::new(&mut s, SEAL);
    v.open_derived(&PassphraseKey::quorum(keys), &mut f)
}

/// The token factor `T` of `card` for a slot, as a rekey asks for it.
fn answer(card: &mut SoftCard, slot: &SlotInfo) -> Result<Key32, Error> {
    let mut s = Session::select(card).unwrap();
    OathFactor::new(&mut s, SEAL).respond(slot)
}

fn with_checksum(mut body: Vec<u8>) -> Vec<u8> {
    let sum = ring::digest::digest(&ring::digest::SHA256, &body);
    body.extend_from_slice(sum.as_ref());
    body
}

/// Where the custodian set starts in a v3 file: after the key facts, which end with the
/// generation entry (`03 04` and four bytes).
fn custodians_at(bytes: &[u8], facts_end_hint: &[u8]) -> usize {
    bytes
        .windows(facts_end_hint.len())
        .position(|w| w == facts_end_hint)
        .expect("key facts")
        + facts_end_hint.len()
}

#[test]
fn known_answer_vector_v3() {
    let v = create(3, 2, &mut token(0x11, 0x22), &TestRng::new());
    let bytes = v.to_bytes();
    if std::env::var_os("BREAKGLASS_WRITE_VECTORS").is_some() {
        std::fs::write(VECTOR_V3, &bytes).unwrap();
    }
    let expected = std::fs::read(VECTOR_V3).expect("tests/data/vault-v3-vector.bin");
    assert_eq!(
        bytes, expected,
        "vault v3 encoding changed: the format is frozen"
    );
    assert_eq!(&expected[8..10], &[0, 3], "version 3");
    let v = Vault::from_bytes(&expected).unwrap();
    assert_eq!(v.version(), 3);
    let (m, members) = v.custodians().unwrap();
    assert_eq!(m, 2);
    assert_eq!(
        members
            .iter()
            .map(|c| (c.x, c.name.as_str()))
            .collect::<Vec<_>>(),
        [(1, "Alice"), (2, "Bob"), (3, "Carol")]
    );
    for pair in [[0, 1], [0, 2], [1, 2], [2, 0]] {
        let opened = open(&v, &mut token(0x11, 0x22), &pair).unwrap();
        assert_vector_payload(&opened);
    }
    let all = open(&v, &mut token(0x11, 0x22), &[2, 1, 0]).unwrap();
    assert_eq!(all.custodians_present(), [3, 2, 1]);
}

#[test]
fn every_byte_flip_and_truncation_of_v3_is_damage() {
    every_flip_and_truncation_of(&std::fs::read(VECTOR_V3).unwrap());
}

/// Every byte of the body changed, with the checksum recomputed as an attacker would: the
/// parser, a share's seal, a slot's wrap or the payload's tag refuses it.
#[test]
fn a_deliberate_edit_of_v3_with_a_recomputed_checksum_never_opens() {
    let bytes = std::fs::read(VECTOR_V3).unwrap();
    let body_len = bytes.len() - 32;
    let mut card = token(0x11, 0x22);
    for i in 10..body_len {
        let mut b = bytes[..body_len].to_vec();
        b[i] ^= 0x01;
        let result = Vault::from_bytes(&with_checksum(b)).and_then(|v| {
            let (_, members) = v.custodians().ok_or(Error::Damaged)?;
            // By x, since an edited name is an edit too.
            let keys = members
                .iter()
                .take(2)
                .map(|m| {
                    let p = PEOPLE[usize::from(m.x) - 1].1;
                    v.derive_custodian(m.x, &pass(p))
                })
                .collect::<Result<Vec<_>, _>>()?;
            open_with(&v, &mut card, keys).map(|_| ())
        });
        assert!(result.is_err(), "edited byte {i} still opened");
    }
}

/// Any M of N open, in any order; fewer are refused before the token is asked anything.
#[test]
fn any_m_of_n_custodians_open_and_fewer_do_not() {
    let rng = SystemRandom::new();
    for (n, m) in [(1usize, 1u8), (3, 2), (5, 3)] {
        let mut card = token(3, 3);
        let v = create(n, m, &mut card, &rng);
        for mask in 1u32..(1 << n) {
            let who: Vec<usize> = (0..n).filter(|i| mask & (1 << i) != 0).collect();
            let r = open(&v, &mut card, &who);
            if who.len() >= usize::from(m) {
                let opened = r.unwrap_or_else(|e| panic!("{m} of {n}, {who:?}: {e}"));
                assert_eq!(opened.payload.access_key_id, "AKIAIOSFODNN7EXAMPLE");
            } else {
                let e = r.err().unwrap();
                assert!(
                    matches!(e, Error::Quorum { present, needed } if present == who.len() && needed == usize::from(m)),
                    "{m} of {n}, {who:?}: {e}"
                );
                assert_eq!(
                    e.to_string(),
                    format!(
                        "{} custodian(s) present, {m} needed to open this vault",
                        who.len()
                    )
                );
            }
        }
    }
}

/// A wrong passphrase names that custodian and no one else; the same custodian twice, or one
/// the vault does not have, is refused; one passphrase does not open a custodians' vault.
#[test]
fn a_wrong_passphrase_names_only_its_custodian() {
    let rng = SystemRandom::new();
    let mut card = token(4, 4);
    let v = create(3, 2, &mut card, &rng);
    let keys = vec![
        key(&v, "Alice", PEOPLE[0].1),
        key(&v, "Carol", "carol PURPLE monkey"),
    ];
    let e = open_with(&v, &mut card, keys).err().unwrap();
    assert!(matches!(&e, Error::ShareNotOpened { name } if name == "Carol"));
    assert_eq!(
        e.to_string(),
        "custodian \"Carol\"'s passphrase did not open their share of this vault"
    );
    // Two wrong: only the first one given is named, nothing is said of the other.
    let keys = vec![key(&v, "Bob", "nope"), key(&v, "Alice", "nope either")];
    let e = open_with(&v, &mut card, keys).err().unwrap();
    assert!(
        matches!(&e, Error::ShareNotOpened { name } if name == "Bob"),
        "{e}"
    );
    let twice = vec![key(&v, "Bob", PEOPLE[1].1), key(&v, "Bob", PEOPLE[1].1)];
    assert!(matches!(
        open_with(&v, &mut card, twice),
        Err(Error::NoSuchCustodian { x: 2 })
    ));
    assert!(matches!(
        v.derive_custodian(9, &pass("x")),
        Err(Error::NoSuchCustodian { x: 9 })
    ));
    let e = v.derive(&pass(PEOPLE[0].1)).err().unwrap();
    assert_eq!(
        e.to_string(),
        "this vault opens with 2 of its custodians' passphrases, not with one passphrase"
    );
    // And the other way round: custodians for a vault with one passphrase.
    let v2 = Vault::from_bytes(&std::fs::read(super::vault::VECTOR_V2).unwrap()).unwrap();
    assert!(v2.custodians().is_none());
    assert!(matches!(
        v2.derive_custodian(1, &pass("x")),
        Err(Error::Quorum { needed: 0, .. })
    ));
}

/// A custodian record taken from another vault (same name, same x, its own passphrase) does
/// not open: the share's seal binds the vault id and needs this vault's token key.
#[test]
fn a_share_from_another_vault_does_not_open() {
    let rng = SystemRandom::new();
    let mut card = token(5, 5);
    let a = create(3, 2, &mut card, &rng).to_bytes();
    let b = create(3, 2, &mut card, &rng).to_bytes();
    let gen = [0x03, 0x04, 0, 0, 0, 0];
    let (ca, cb) = (custodians_at(&a, &gen), custodians_at(&b, &gen));
    // Records are the same length in both (same names): swap Carol's (the third).
    let record_len = |bytes: &[u8], at: usize, k: usize| -> (usize, usize) {
        let mut pos = at + 2;
        for _ in 0..k {
            pos += 2 + usize::from(u16::from_be_bytes([bytes[pos], bytes[pos + 1]]));
        }
        let len = 2 + usize::from(u16::from_be_bytes([bytes[pos], bytes[pos + 1]]));
        (pos, len)
    };
    let (pa, la) = record_len(&a, ca, 2);
    let (pb, lb) = record_len(&b, cb, 2);
    assert_eq!(la, lb);
    let mut forged = a[..a.len() - 32].to_vec();
    forged[pa..pa + la].copy_from_slice(&b[pb..pb + lb]);
    let v = Vault::from_bytes(&with_checksum(forged)).unwrap();
    let e = open(&v, &mut card, &[2, 0]).err().unwrap();
    assert!(
        matches!(&e, Error::ShareNotOpened { name } if name == "Carol"),
        "{e}"
    );
    // The untouched custodians' shares open, but the header is the payload's associated
    // data: the edit is caught there.
    assert!(matches!(open(&v, &mut card, &[0, 1]), Err(Error::Damaged)));
}

/// One custodian's new passphrase: it opens, the old one does not, and the other custodians'
/// records, the slots and the payload's key are untouched.
#[test]
fn a_custodian_changes_their_passphrase_alone() {
    let rng = SystemRandom::new();
    let mut card = token(6, 6);
    let v = create(3, 2, &mut card, &rng);
    let opened = open(&v, &mut card, &[0, 1]).unwrap();
    let audit = opened.audit_key();
    let v2 = opened
        .change_passphrase(2, &pass("bob's new passphrase"), &rng)
        .unwrap();
    let (_, before) = v.custodians().unwrap();
    let (_, after) = v2.custodians().unwrap();
    assert_eq!(before[0], after[0], "Alice untouched");
    assert_eq!(before[2], after[2], "Carol untouched");
    assert_ne!(before[1], after[1]);
    assert_eq!(
        v.slots().collect::<Vec<_>>(),
        v2.slots().collect::<Vec<_>>()
    );
    let keys = vec![
        key(&v2, "Bob", "bob's new passphrase"),
        key(&v2, "Carol", PEOPLE[2].1),
    ];
    let reopened = open_with(&v2, &mut card, keys).unwrap();
    assert_eq!(reopened.audit_key().expose(), audit.expose());
    let e = open(&v2, &mut card, &[1, 2]).err().unwrap();
    assert!(matches!(&e, Error::ShareNotOpened { name } if name == "Bob"));
    // Only a custodian present can change theirs this way.
    assert!(matches!(
        opened.change_passphrase(3, &pass("x"), &rng),
        Err(Error::NoSuchCustodian { x: 3 })
    ));
}

/// A fresh split without Carol, 2 of 3 with a new custodian Dan: the new set opens, Carol is
/// not in it, and an old copy's custodian section (Carol's and Alice's old shares) spliced
/// into the new file opens nothing: the new `P` is not the old one.
#[test]
fn a_fresh_split_removes_a_custodian_for_good() {
    let rng = SystemRandom::new();
    let mut card = token(7, 7);
    let v = create(3, 2, &mut card, &rng);
    let old = v.to_bytes();
    let opened = open(&v, &mut card, &[0, 1]).unwrap();
    let dan = pass(PEOPLE[3].1);
    let change = Change {
        custodians: Some(NewCustodians {
            threshold: 2,
            members: vec![
                ("Alice".into(), MemberKey::Present(1)),
                ("Bob".into(), MemberKey::Present(2)),
                ("Dan".into(), MemberKey::Passphrase(&dan)),
            ],
        }),
        remove_slots: vec![],
    };
    let v2 = opened
        .rekey(&change, &mut |_| panic!("no token is needed"), &rng)
        .unwrap();
    let new = v2.to_bytes();
    let (_, members) = v2.custodians().unwrap();
    assert_eq!(
        members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["Alice", "Bob", "Dan"]
    );
    // Dan and Alice, Alice and Bob (with their unchanged passphrases) open it.
    for who in [[0, 3], [0, 1], [3, 1]] {
        let keys = who
            .iter()
            .map(|i| key(&v2, PEOPLE[*i].0, PEOPLE[*i].1))
            .collect();
        let o = open_with(&v2, &mut card, keys).unwrap();
        assert_eq!(o.audit_key().expose(), opened.audit_key().expose());
    }
    // The slots were not sealed again: no token was needed.
    assert_eq!(
        v.slots().collect::<Vec<_>>(),
        v2.slots().collect::<Vec<_>>()
    );
    // The old custodian section in the new file: Alice and Carol's old shares rebuild the old
    // P, which is not the new file's.
    let gen = [0x03, 0x04, 0, 0, 0, 0];
    let (co, cn) = (custodians_at(&old, &gen), custodians_at(&new, &gen));
    let end = |b: &[u8], at: usize| {
        let n = usize::from(b[at + 1]);
        let mut pos = at + 2;
        for _ in 0..n {
            pos += 2 + usize::from(u16::from_be_bytes([b[pos], b[pos + 1]]));
        }
        pos
    };
    let mut forged = new[..cn].to_vec();
    forged.extend_from_slice(&old[co..end(&old, co)]);
    forged.extend_from_slice(&new[end(&new, cn)..new.len() - 32]);
    let forged = Vault::from_bytes(&with_checksum(forged)).unwrap();
    let e = open(&forged, &mut card, &[0, 2]).err().unwrap();
    assert!(matches!(e, Error::Damaged), "{e}");
    // The old copy itself still opens with Carol: said in the ceremony's warning.
    open(&Vault::from_bytes(&old).unwrap(), &mut card, &[0, 2]).unwrap();
}

/// Removing the backup token: the third token that stays is asked for, checked, and sealed
/// again; the removed token's old slot record spliced into the new file opens nothing.
#[test]
fn removing_a_token_gives_the_others_a_new_token_key() {
    let rng = SystemRandom::new();
    let (mut primary, mut backup, mut third) = (token(8, 8), token(9, 9), token(10, 10));
    let v = create(3, 2, &mut primary, &rng);
    let opened = open(&v, &mut primary, &[0, 1]).unwrap();
    let (v, _) = {
        let mut s = Session::select(&mut backup).unwrap();
        let mut f = OathFactor::new(&mut s, SEAL);
        opened
            .add_slot(&mut f, "backup", "arn:aws:iam::123456789012:mfa/b", &rng)
            .unwrap()
    };
    let opened = open(&v, &mut primary, &[0, 1]).unwrap();
    let (v, _) = {
        let mut s = Session::select(&mut third).unwrap();
        let mut f = OathFactor::new(&mut s, SEAL);
        opened
            .add_slot(&mut f, "third", "arn:aws:iam::123456789012:mfa/c", &rng)
            .unwrap()
    };
    let old = v.to_bytes();
    open(&v, &mut backup, &[1, 2]).unwrap();
    let opened = open(&v, &mut primary, &[0, 1]).unwrap();
    let change = Change {
        custodians: None,
        remove_slots: vec![1],
    };
    // The wrong token for slot 2 is refused.
    let e = opened
        .rekey(&change, &mut |slot| answer(&mut backup, slot), &rng)
        .err()
        .unwrap();
    assert!(matches!(e, Error::WrongTokenForSlot { id: 2, .. }), "{e}");
    let mut asked = Vec::new();
    let v2 = opened
        .rekey(
            &change,
            &mut |slot| {
                asked.push(slot.id);
                answer(&mut third, slot)
            },
            &rng,
        )
        .unwrap();
    assert_eq!(
        asked,
        [2],
        "only the slot that stays and did not open is asked"
    );
    assert_eq!(v2.slots().map(|s| s.id).collect::<Vec<_>>(), [0, 2]);
    assert!(matches!(
        open(&v2, &mut backup, &[0, 1]),
        Err(Error::NotEnrolled { .. })
    ));
    for card in [&mut primary, &mut third] {
        let o = open(&v2, card, &[1, 2]).unwrap();
        assert_eq!(o.audit_key().expose(), opened.audit_key().expose());
    }
    // The backup's slot record from the old copy put back into the new file: its token key
    // is the old one, and the new payload is not sealed under it.
    let forged = splice_slot(&v2.to_bytes(), &old, 1);
    let forged = Vault::from_bytes(&forged).unwrap();
    let e = open(&forged, &mut backup, &[0, 1]).err().unwrap();
    assert!(matches!(e, Error::Damaged), "{e}");
    // Refusals: the opening slot, a slot that is not there, the last slot.
    let o = open(&v2, &mut primary, &[0, 1]).unwrap();
    let refuse = |remove: Vec<u8>| {
        o.rekey(
            &Change {
                custodians: None,
                remove_slots: remove,
            },
            &mut |_| Err(Error::Damaged),
            &rng,
        )
        .err()
        .unwrap()
    };
    assert!(matches!(
        refuse(vec![0]),
        Error::RemovingOpeningSlot { id: 0 }
    ));
    assert!(matches!(refuse(vec![5]), Error::NoSuchSlot { id: 5 }));
    // Every slot at once: the last one cannot go, whichever opened.
    assert!(matches!(refuse(vec![2, 0]), Error::LastSlot));
}

/// `new` with slot `id`'s record from `old` added after its slots (count and checksum fixed).
fn splice_slot(new: &[u8], old: &[u8], id: u8) -> Vec<u8> {
    let slots = |b: &[u8]| -> (usize, Vec<(usize, usize)>) {
        let n = usize::from(b[79]);
        let mut pos = 80;
        let mut out = Vec::new();
        for _ in 0..n {
            let len = 2 + usize::from(u16::from_be_bytes([b[pos], b[pos + 1]]));
            out.push((pos, len));
            pos += len;
        }
        (pos, out)
    };
    let (_, old_slots) = slots(old);
    let (new_end, new_slots) = slots(new);
    let (at, len) = old_slots
        .into_iter()
        .find(|(pos, _)| old[pos + 2] == id)
        .unwrap();
    let mut out = new[..new_end].to_vec();
    out[79] = (new_slots.len() + 1) as u8;
    out.extend_from_slice(&old[at..at + len]);
    out.extend_from_slice(&new[new_end..new.len() - 32]);
    with_checksum(out)
}

/// A version 2 vault with one passphrase becomes version 3: the one passphrase becomes
/// custodian Alice's (she types nothing new), Bob gets a share with a passphrase of his own,
/// every token is sealed again, and the audit key carries over.
#[test]
fn upgrading_a_version_2_vault_keeps_its_passphrase_and_audit_key() {
    let v = Vault::from_bytes(&std::fs::read(super::vault::VECTOR_V2).unwrap()).unwrap();
    let mut card = token(0x11, 0x22);
    let opened = {
        let mut s = Session::select(&mut card).unwrap();
        let mut f = OathFactor::new(&mut s, SEAL);
        v.open(&pass("correct horse battery staple"), &mut f)
            .unwrap()
    };
    let rng = SystemRandom::new();
    // Without custodians there is nothing to upgrade to.
    assert!(matches!(
        opened.rekey(&Change::default(), &mut |_| Err(Error::Damaged), &rng),
        Err(Error::NeedsUpgrade { version: 2 })
    ));
    assert!(matches!(
        opened.change_passphrase(1, &pass("x"), &rng),
        Err(Error::NeedsUpgrade { version: 2 })
    ));
    let bob = pass("bob battery staple");
    let change = Change {
        custodians: Some(NewCustodians {
            threshold: 2,
            members: vec![
                ("Alice".into(), MemberKey::Upgraded),
                ("Bob".into(), MemberKey::Passphrase(&bob)),
            ],
        }),
        remove_slots: vec![],
    };
    let v3 = opened
        .rekey(&change, &mut |_| panic!("one slot, the opening one"), &rng)
        .unwrap();
    assert_eq!(v3.version(), 3);
    assert_eq!(v3.key_facts(), v.key_facts());
    let keys = vec![
        key(&v3, "Alice", "correct horse battery staple"),
        key(&v3, "Bob", "bob battery staple"),
    ];
    let reopened = open_with(&v3, &mut card, keys).unwrap();
    assert_vector_payload(&reopened);
    assert_eq!(reopened.audit_key().expose(), opened.audit_key().expose());
    // Its own bytes round-trip, and a v3 rotation keeps custodians and audit key.
    let again = Vault::from_bytes(&v3.to_bytes()).unwrap();
    assert_eq!(again, v3);
    let rotated = reopened
        .with_new_key(
            "AKIANEWKEYNEWKEY0001",
            &pass("NEWsecretNEWsecretNEWsecretNEWsecret0001"),
            1_800_000_000,
            &rng,
        )
        .unwrap();
    assert_eq!(rotated.custodians(), v3.custodians());
    let keys = vec![
        key(&rotated, "Bob", "bob battery staple"),
        key(&rotated, "Alice", "correct horse battery staple"),
    ];
    let o = open_with(&rotated, &mut card, keys).unwrap();
    assert_eq!(o.payload.access_key_id, "AKIANEWKEYNEWKEY0001");
    assert_eq!(o.audit_key().expose(), opened.audit_key().expose());
}

/// A version 3 slot that matches the token (same device) but whose answer differs (the
/// sealing credential was replaced) says so, naming the slot, instead of blaming a passphrase.
#[test]
fn a_replaced_sealing_credential_is_told_apart_from_a_wrong_passphrase() {
    let rng = SystemRandom::new();
    let v = create(2, 1, &mut token(13, 13), &rng);
    let e = open(&v, &mut token(13, 14), &[0]).err().unwrap();
    assert!(matches!(e, Error::TokenKeyNotOpened { id: 0 }), "{e}");
    assert!(
        e.to_string()
            .starts_with("the token did not open its key slot 0: its answer differs"),
        "{e}"
    );
}

/// Custodian sets that cannot be sealed.
#[test]
fn bad_custodian_sets_are_refused_naming_the_problem() {
    let rng = SystemRandom::new();
    let mut card = token(12, 12);
    let p = pass("a passphrase");
    let try_create = |custodians: &[(&str, &SecretString)], m: u8, card: &mut SoftCard| {
        let mut s = Session::select(card).unwrap();
        let mut f = OathFactor::new(&mut s, SEAL);
        Vault::create_with_custodians(
            custodians,
            m,
            KdfParams::LIGHT,
            &mut f,
            "primary",
            &payload(),
            &rng,
            1,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
    };
    let two = [("Alice", &p), ("Bob", &p)];
    assert!(try_create(&two, 3, &mut card).contains("must be 1 to 2"));
    assert!(try_create(&two, 0, &mut card).contains("not 0"));
    assert!(try_create(&[("Alice", &p), ("Alice", &p)], 1, &mut card).contains("named twice"));
    assert!(try_create(&[], 1, &mut card).contains("1 to 16 custodians, not 0"));
    assert!(try_create(&[("Al\u{1b}ice", &p)], 1, &mut card).contains("printable"));
    let many: Vec<(String, &SecretString)> = (0..17).map(|i| (format!("c{i}"), &p)).collect();
    let many: Vec<(&str, &SecretString)> = many.iter().map(|(n, p)| (n.as_str(), *p)).collect();
    assert!(try_create(&many, 2, &mut card).contains("not 17"));
    // And in a fresh split: removing the last custodian.
    let v = create(1, 1, &mut card, &rng);
    let opened = open(&v, &mut card, &[0]).unwrap();
    let e = opened
        .rekey(
            &Change {
                custodians: Some(NewCustodians {
                    threshold: 1,
                    members: vec![],
                }),
                remove_slots: vec![],
            },
            &mut |_| Err(Error::Damaged),
            &rng,
        )
        .err()
        .unwrap();
    assert!(e.to_string().contains("1 to 16 custodians, not 0"), "{e}");
}
