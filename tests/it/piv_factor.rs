//! The PIV seal factor through the real pcscd and vpcd, with the `yubikey` crate talking to the
//! soft token: the CLI enrolment and unlock on a pty, the PIN counter (tries left, the last
//! try asked for, blocked), attestation that does not chain, an occupied slot, a token whose
//! serial differs.

use crate::common;

use std::collections::VecDeque;
use std::net::SocketAddr;

use secrecy::{ExposeSecret, SecretString};
use x509_cert::der::Decode;
use x509_cert::Certificate;

use breakglass::sandbox::sts::Sts;
use breakglass::secure::SystemRandom;
use breakglass::token::pcsc::Card;
use breakglass::token::piv::PivCard;
use breakglass::token::soft::SoftCard;
use breakglass::token::Token;
use breakglass::vault::piv::{PivEnrolment, PivFactor};
use breakglass::vault::{Error, KdfParams, PinEntry, Vault};
use common::home::*;
use common::*;

const PIN: &str = "123456";

#[test]
fn cli_enrols_and_unlocks_with_the_piv_factor() {
    if !pcsc_ready("cli_enrols_and_unlocks_with_the_piv_factor") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("piv-root.der");
    let token = SoftToken::start_with(
        Slot::claim(0),
        "approve",
        15,
        &["--piv-root-out", root.to_str().unwrap()],
    );
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    sts.create_user("breakglass");
    let (key_id, key_secret) = sts.create_access_key("breakglass");
    let (serial, seed) = sts.create_mfa_device("breakglass", "breakglass");
    let home = Home::new();
    let args = |extra: &[&str]| {
        let endpoint = sts.endpoint();
        let head = [
            "prod",
            "--factor",
            "piv",
            "--import-key",
            "--mfa-serial",
            &serial,
        ];
        let mut a: Vec<String> = light_enrolment(&head, &endpoint, &r)
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    // Without roots: refused before anything touches the token.
    let no_roots: Vec<String> = args(&[]);
    let no_roots: Vec<&str> = std::iter::once("enroll")
        .chain(no_roots.iter().map(String::as_str))
        .collect();
    let o = run_with_input(
        home.command(&no_roots),
        Some(&format!(
            "{key_id}\n{}\n{}\n",
            key_secret.expose_secret(),
            *seed
        )),
    );
    fails(o, 2, &["--attestation-roots", "yubico-ca-certs.txt"]);

    let transcript = dir.path().join("enrolment.md");
    let with_roots = args(&[
        "--attestation-roots",
        root.to_str().unwrap(),
        "--transcript",
        transcript.to_str().unwrap(),
    ]);
    let with_roots: Vec<&str> = with_roots.iter().map(String::as_str).collect();
    let mut p = start_enroll(
        &home,
        &with_roots,
        &[&key_id, key_secret.expose_secret(), &seed],
        &[],
    );
    p.exp_string("generating a P-256 key in PIV slot 82")
        .unwrap();
    p.exp_string("Password holder, type the token's PIV PIN (not shown; 3 tries left): ")
        .unwrap();
    p.send_line(PIN).unwrap();
    let out = p.exp_eof().unwrap();
    assert!(
        out.contains("Attestation verified: firmware 5.7.1"),
        "{out}"
    );
    assert!(out.contains("Enrolled "), "{out}");
    // The witnesses' transcript names the token, the attestation and its root's fingerprint.
    let md = std::fs::read_to_string(&transcript).unwrap();
    for needle in [
        "# Enrolment — profile prod",
        "| result | completed |",
        "generating a P-256 key in PIV slot 82",
        "Attestation verified: firmware 5.7.1",
        "root SHA-256 ",
        "| MFA device | arn:aws:iam::",
        "Password holder, name: ____",
        "Token holder, name: ____",
    ] {
        assert!(md.contains(needle), "{needle:?} missing:\n{md}");
    }
    assert!(!md.contains(key_secret.expose_secret()), "{md}");
    assert!(!md.contains(&key_id), "the key id is masked: {md}");

    // The vault's slot is a PIV slot with the token's serial; no OATH sealing credential.
    let vault = breakglass::vault::file::read(&home.vault("prod")).unwrap();
    let slot = vault.slots().next().unwrap();
    assert_eq!(slot.kind.name(), "piv");
    let listed = ok(home
        .command(&["token", "list", "--reader", &r])
        .output()
        .unwrap());
    assert!(!listed.contains("breakglass-seal"), "{listed}");
    assert!(listed.contains("PIV: serial "), "{listed}");
    assert!(
        listed.contains("slot 82: P-256, PIN always, touch always"),
        "{listed}"
    );
    assert!(listed.contains("FIDO2 (USB HID): "), "{listed}");

    // Unlock: a typo first (the token counts it and says so), then the right PIN.
    let mut p = pty(
        home.command(&[
            "unlock",
            "prod",
            "--reason",
            "PIV drill",
            "--print-json",
            "--reader",
            &r,
        ]),
        60_000,
    );
    p.exp_string("Password holder, type your name: ").unwrap();
    p.send_line("Alice").unwrap();
    p.exp_string("Token holder, type your name: ").unwrap();
    p.send_line("Bob").unwrap();
    p.exp_string("Password holder, type the vault passphrase (not shown): ")
        .unwrap();
    p.send_line(PASSPHRASE).unwrap();
    p.exp_string("Password holder, type the token's PIV PIN (not shown; 3 tries left): ")
        .unwrap();
    p.send_line("654321").unwrap();
    p.exp_string("Password holder, type the token's PIV PIN (not shown; 2 tries left): ")
        .unwrap();
    p.send_line(PIN).unwrap();
    let out = p.exp_eof().unwrap();
    let json = session_json(&out);
    assert!(json["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
    assert_eq!(sts.counts().get_session_token, 1);
    let audit = home.audit();
    assert!(audit.contains("\"factor\":\"piv\""), "{audit}");
    home.assert_no_secret(&[("the long-term secret", key_secret.expose_secret())]);
}

/// Scripted PINs; counts what was asked.
struct Pins {
    pins: VecDeque<&'static str>,
    confirm_last: bool,
    asked: Vec<u8>,
    last_try_questions: u32,
}

impl Pins {
    fn new(pins: &[&'static str], confirm_last: bool) -> Self {
        Self {
            pins: pins.iter().copied().collect(),
            confirm_last,
            asked: Vec::new(),
            last_try_questions: 0,
        }
    }
}

impl PinEntry for Pins {
    fn pin(&mut self, _what: &str, tries_left: u8) -> Result<SecretString, Error> {
        self.asked.push(tries_left);
        self.pins
            .pop_front()
            .map(|p| SecretString::from(p.to_owned()))
            .ok_or_else(|| Error::NoAnswer("no more scripted PINs".into()))
    }
    fn confirm_last_try(&mut self, _what: &str) -> bool {
        self.last_try_questions += 1;
        self.confirm_last
    }
    fn touch_start(&mut self, _why: &str) {}
    fn touch_end(&mut self) {}
}

fn passphrase() -> SecretString {
    SecretString::from(PASSPHRASE.to_owned())
}

fn enrol(
    card: &mut dyn PivCard,
    roots: &[Certificate],
    slot: u8,
    replace: bool,
    pins: &mut Pins,
) -> Result<Vault, Error> {
    let mut f = PivFactor::for_enrolment(
        card,
        pins,
        PivEnrolment {
            slot,
            replace,
            roots,
            now: unix_now(),
        },
    );
    Vault::create(
        &passphrase(),
        KdfParams::LIGHT,
        &mut f,
        "primary",
        &sample_payload(),
        &SystemRandom::new(),
        1,
    )
}

fn open(vault: &Vault, card: &mut dyn PivCard, pins: &mut Pins) -> Result<(), Error> {
    let mut f = PivFactor::new(card, pins);
    vault.open(&passphrase(), &mut f).map(|_| ())
}

#[test]
fn pin_counter_last_try_blocked_and_puk() {
    if !pcsc_ready("pin_counter_last_try_blocked_and_puk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root_path = dir.path().join("root.der");
    let token = SoftToken::start_with(
        Slot::claim(1),
        "approve",
        15,
        &["--piv-root-out", root_path.to_str().unwrap()],
    );
    let roots = vec![Certificate::from_der(&std::fs::read(&root_path).unwrap()).unwrap()];
    let mut card = Card::open_exact(&token.reader()).unwrap();
    // The `yubikey` crate backend, as `enroll` and `unlock` use it.
    let mut piv = card.piv().unwrap();

    // Forged attestation: roots of another card do not vouch for this one. Nothing is sealed.
    let other_root = SoftCard::new(Box::new(|| true)).piv_attestation_root();
    let other = vec![Certificate::from_der(&other_root).unwrap()];
    let e = enrol(&mut *piv, &other, 0x83, false, &mut Pins::new(&[PIN], true)).unwrap_err();
    assert!(
        matches!(&e, Error::Attestation(m) if m.contains("no root")),
        "{e}"
    );

    let mut pins = Pins::new(&[PIN], true);
    let vault = enrol(&mut *piv, &roots, 0x82, false, &mut pins).unwrap();
    assert_eq!(
        pins.asked,
        vec![3],
        "one PIN at enrolment, for the ECDH check"
    );

    // Slot occupied: refused without --replace-piv-key.
    let e = enrol(&mut *piv, &roots, 0x82, false, &mut Pins::new(&[PIN], true)).unwrap_err();
    assert!(
        matches!(&e, Error::Occupied { what } if what.contains("slot 82")),
        "{e}"
    );
    open(&vault, &mut *piv, &mut Pins::new(&[PIN], true)).expect("the vault still opens");

    // Wrong PIN: asked again with the tries left; the token's counter goes down.
    let mut pins = Pins::new(&["000000", PIN], true);
    open(&vault, &mut *piv, &mut pins).unwrap();
    assert_eq!(pins.asked, vec![3, 2]);
    assert_eq!(
        piv.pin_retries().unwrap(),
        3,
        "a right PIN resets the counter"
    );

    // Two wrong PINs, then the last try is not made without asking; declined → no try spent.
    let mut pins = Pins::new(&["000000", "111111"], false);
    let e = open(&vault, &mut *piv, &mut pins).unwrap_err();
    assert!(matches!(e, Error::LastTryDeclined { .. }), "{e}");
    assert_eq!(pins.last_try_questions, 1);
    assert_eq!(piv.pin_retries().unwrap(), 1);
    // Confirmed and wrong: blocked.
    let mut pins = Pins::new(&["222222"], true);
    let e = open(&vault, &mut *piv, &mut pins).unwrap_err();
    assert!(matches!(e, Error::PinBlocked { .. }), "{e}");
    assert!(e.to_string().contains("blocked"), "{e}");
    // Blocked: refused without asking for a PIN.
    let mut pins = Pins::new(&[PIN], true);
    let e = open(&vault, &mut *piv, &mut pins).unwrap_err();
    assert!(matches!(e, Error::PinBlocked { .. }), "{e}");
    assert!(pins.asked.is_empty());
    drop(piv);

    // The PUK runbook: unblock with the yubikey crate (as `ykman piv access unblock-pin`).
    {
        let mut ctx = yubikey::reader::Context::open().unwrap();
        let readers: Vec<_> = ctx.iter().unwrap().collect();
        let reader = readers.iter().find(|r| r.name() == token.reader()).unwrap();
        let mut yk = reader.open().unwrap();
        yk.unblock_pin(b"12345678", PIN.as_bytes()).unwrap();
    }
    let mut piv = card.piv().unwrap();
    open(&vault, &mut *piv, &mut Pins::new(&[PIN], true)).expect("opens after the PUK");

    // Another token (another serial): not enrolled, and its PIN is never asked.
    let mut soft = SoftCard::new(Box::new(|| true));
    let mut other_piv = soft.piv().unwrap();
    let mut pins = Pins::new(&[PIN], true);
    let e = open(&vault, &mut *other_piv, &mut pins).unwrap_err();
    assert!(matches!(e, Error::NotEnrolled { .. }), "{e}");
    assert!(pins.asked.is_empty());

    // The same token in a second slot (key in 83), then the key in 82 replaced: slot 0 is
    // dead, and the token opens the vault through its live slot, not stopping at the dead one.
    let opened = {
        let mut pins = Pins::new(&[PIN], true);
        let mut f = PivFactor::new(&mut *piv, &mut pins);
        vault.open(&passphrase(), &mut f).unwrap()
    };
    let (two_slots, id) = {
        let mut pins = Pins::new(&[PIN], true);
        let mut f = PivFactor::for_enrolment(
            &mut *piv,
            &mut pins,
            PivEnrolment {
                slot: 0x83,
                replace: true,
                roots: &roots,
                now: unix_now(),
            },
        );
        opened
            .add_slot(
                &mut f,
                "second",
                "arn:aws:iam::123456789012:mfa/second",
                &SystemRandom::new(),
            )
            .unwrap()
    };
    let _new = enrol(&mut *piv, &roots, 0x82, true, &mut Pins::new(&[PIN], true)).unwrap();
    let e = open(&vault, &mut *piv, &mut Pins::new(&[PIN], true)).unwrap_err();
    assert!(
        matches!(e, Error::NotEnrolled { .. }),
        "the one-slot vault is dead: {e}"
    );
    let mut pins = Pins::new(&[PIN], true);
    let mut f = PivFactor::new(&mut *piv, &mut pins);
    let reopened = two_slots.open(&passphrase(), &mut f).unwrap();
    assert_eq!(reopened.slot_id, id, "opened through the live slot 83");
}
