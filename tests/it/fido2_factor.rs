//! The FIDO2 hmac-secret factor against the software authenticator: enrolment and unlock, the
//! UV requirement, PIN retries (power cycle, last try, blocked), another or a reset key, damaged
//! parameters. One test runs on a real key when `BREAKGLASS_FIDO2_DEVICE` names it.

use crate::common;

use std::collections::VecDeque;
use std::io::Write;

use secrecy::SecretString;

use breakglass::secure::{Key32, Random, SystemRandom};
use breakglass::token::fido2::hid::{HidAuthenticator, DEVICE_ENV};
use breakglass::token::fido2::soft::{SoftFido2, AAGUID};
use breakglass::token::fido2::DeviceError;
use breakglass::vault::fido2::{Authenticator, Fido2Factor, Fido2Params, Fido2Problem, RP_ID};
use breakglass::vault::{
    Error, FactorKind, KdfParams, Opened, Payload, PinEntry, SealFactor, SlotInfo, Vault,
};

const PIN: &str = "123456";
const PASSPHRASE: &str = "correct horse battery staple";

/// A holder at the PIN prompt: types the queued PINs in order, answers the last-try question
/// with `confirm`, and records what the prompt showed.
struct Holder {
    pins: VecDeque<String>,
    confirm: bool,
    /// `tries_left` shown with each PIN asked.
    shown: Vec<u8>,
    confirms_asked: u32,
    touches: u32,
    touching: bool,
}

impl Holder {
    fn typing(pins: &[&str]) -> Self {
        Self {
            pins: pins.iter().map(|p| (*p).to_owned()).collect(),
            confirm: true,
            shown: Vec::new(),
            confirms_asked: 0,
            touches: 0,
            touching: false,
        }
    }

    fn declining_last_try(pins: &[&str]) -> Self {
        Self {
            confirm: false,
            ..Self::typing(pins)
        }
    }
}

/// A FIDO2 error of the test's own fakes.
fn other(what: &str) -> Error {
    Error::Fido2(Fido2Problem::Device(DeviceError::Other(what.into())))
}

impl PinEntry for Holder {
    fn pin(&mut self, what: &str, tries_left: u8) -> Result<SecretString, Error> {
        assert_eq!(what, "FIDO2");
        self.shown.push(tries_left);
        self.pins
            .pop_front()
            .map(SecretString::from)
            .ok_or_else(|| other("test holder: no PIN left to type"))
    }

    fn confirm_last_try(&mut self, what: &str) -> bool {
        assert_eq!(what, "FIDO2");
        self.confirms_asked += 1;
        self.confirm
    }

    fn touch_start(&mut self, _why: &str) {
        assert!(!self.touching, "touch_start twice");
        self.touching = true;
        self.touches += 1;
    }

    fn touch_end(&mut self) {
        assert!(self.touching, "touch_end without touch_start");
        self.touching = false;
    }
}

fn payload() -> Payload {
    common::sample_payload()
}

fn pass(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

fn create(key: &mut dyn Authenticator, holder: &mut Holder) -> Result<Vault, Error> {
    let mut f = Fido2Factor::new(key, holder);
    Vault::create(
        &pass(PASSPHRASE),
        KdfParams::LIGHT,
        &mut f,
        "primary",
        &payload(),
        &SystemRandom::new(),
        1_700_000_000,
    )
}

fn enrolled() -> (SoftFido2, Vault) {
    let mut key = SoftFido2::with_pin(PIN);
    let v = create(&mut key, &mut Holder::typing(&[PIN])).expect("enrol");
    (key, v)
}

fn open(v: &Vault, key: &mut dyn Authenticator, holder: &mut Holder) -> Result<Opened, Error> {
    v.open(&pass(PASSPHRASE), &mut Fido2Factor::new(key, holder))
}

fn slot(v: &Vault) -> SlotInfo {
    v.slots().next().expect("a slot").clone()
}

/// Three wrong PINs: the key's tries go down by 3 and it wants a power cycle, which it gets.
fn spend_three(v: &Vault, key: &mut SoftFido2) {
    let before = key.pin_retries().unwrap();
    let r = open(v, key, &mut Holder::typing(&["0000", "1111", "2222"]));
    assert!(
        matches!(r, Err(Error::WrongPin { what: "FIDO2", tries_left }) if tries_left == before - 3),
        "{:?}",
        r.err()
    );
    key.power_cycle();
}

/// A factor that hands the slot's `hmac-secret` output straight to the vault, with or without
/// the PIN: shows which output the slot was sealed with.
struct RawOutput<'a> {
    key: &'a mut dyn Authenticator,
    pin: Option<SecretString>,
}

impl SealFactor for RawOutput<'_> {
    fn kind(&self) -> FactorKind {
        FactorKind::Fido2HmacSecret
    }

    fn enroll(&mut self, _rng: &dyn Random) -> Result<(Vec<u8>, Key32), Error> {
        Err(other("RawOutput does not enrol"))
    }

    fn matches(&mut self, _slot: &SlotInfo) -> Result<bool, Error> {
        Ok(true)
    }

    fn respond(&mut self, slot: &SlotInfo) -> Result<Key32, Error> {
        let p = Fido2Params::decode(&slot.params)?;
        let out = self
            .key
            .hmac_secret(&p.rp_id, &p.credential_id, &p.salt, self.pin.as_ref())
            .map_err(|e| Error::Fido2(Fido2Problem::Device(e)))?;
        Ok(Key32::new(*out))
    }
}

#[test]
fn enrol_and_open_with_the_pin() {
    let mut key = SoftFido2::with_pin(PIN);
    let mut holder = Holder::typing(&[PIN]);
    let v = create(&mut key, &mut holder).unwrap();
    assert_eq!(
        holder.shown,
        [8],
        "the PIN asked once, for both enrolment requests"
    );
    assert_eq!(key.touches(), 2, "make credential, then hmac-secret");
    assert_eq!(key.credential_count(), 1);

    let s = slot(&v);
    assert_eq!(s.kind, FactorKind::Fido2HmacSecret);
    let p = Fido2Params::decode(&s.params).unwrap();
    assert_eq!(p.rp_id, RP_ID);
    assert_eq!(p.aaguid, AAGUID);
    assert!(!p.credential_id.is_empty() && p.credential_id.len() <= 1023);

    // Through the file bytes, as unlock reads it.
    let v = Vault::from_bytes(&v.to_bytes()).unwrap();
    let mut holder = Holder::typing(&[PIN]);
    let opened = open(&v, &mut key, &mut holder).unwrap();
    assert_eq!(opened.payload.access_key_id, "AKIAIOSFODNN7EXAMPLE");
    assert_eq!(holder.shown, [8]);
    assert_eq!(holder.touches, 1);
    assert_eq!(key.touches(), 3, "finding the key asked no touch");

    // A second key in another slot; each opens with its own PIN.
    let mut second = SoftFido2::with_pin("7777");
    let mut second_holder = Holder::typing(&["7777"]);
    let mut f = Fido2Factor::new(&mut second, &mut second_holder);
    let (v2, id) = opened
        .add_slot(
            &mut f,
            "backup",
            "arn:aws:iam::123456789012:mfa/backup",
            &SystemRandom::new(),
        )
        .unwrap();
    assert_eq!(
        open(&v2, &mut second, &mut Holder::typing(&["7777"]))
            .unwrap()
            .slot_id,
        id
    );
    assert_eq!(
        open(&v2, &mut key, &mut Holder::typing(&[PIN]))
            .unwrap()
            .slot_id,
        s.id
    );
}

/// A key that cannot be asked silently (`alwaysUv`, or a CTAP 2.0 key refusing `up = false`)
/// is asked with its PIN, slot by slot, until one is its own: the PIN once (a typo asked again),
/// one touch per slot tried, and the output found while matching opens the vault.
#[test]
fn a_key_that_cannot_be_probed_silently_finds_its_own_slot() {
    let (mut first, v) = enrolled();
    let mut quiet = SoftFido2::with_pin("7777").always_uv();
    let opened = open(&v, &mut first, &mut Holder::typing(&[PIN])).unwrap();
    let mut holder = Holder::typing(&["7777"]);
    let (v, quiet_slot) = opened
        .add_slot(
            &mut Fido2Factor::new(&mut quiet, &mut holder),
            "backup",
            "arn:aws:iam::123456789012:mfa/backup",
            &SystemRandom::new(),
        )
        .unwrap();
    assert_eq!(holder.shown, [8]);
    let enrol_touches = quiet.touches();
    let first_slot = slot(&v).id;
    assert_ne!(first_slot, quiet_slot, "the first key's slot comes first");

    // The first slot is not this key's: its verified request says so (after the PIN and a
    // touch); the second is, and its output opens the vault without asking again.
    let mut holder = Holder::typing(&["0000", "7777"]);
    let opened = open(&v, &mut quiet, &mut holder).unwrap();
    assert_eq!(opened.slot_id, quiet_slot);
    assert_eq!(
        holder.shown,
        [8, 7],
        "a typo, then the PIN once for both slots"
    );
    assert_eq!(holder.touches, 3, "the typo, the first slot, its own slot");
    assert_eq!(quiet.touches() - enrol_touches, 2);
    assert_eq!(
        quiet.pin_retries().unwrap(),
        8,
        "the right PIN reset the count"
    );

    // The other key is still found silently, and is never asked about the quiet key's slot.
    let mut holder = Holder::typing(&[PIN]);
    assert_eq!(
        open(&v, &mut first, &mut holder).unwrap().slot_id,
        first_slot
    );
    assert_eq!(holder.shown, [8]);

    // A quiet key that holds none of the slots: "not enrolled", with every slot named.
    let mut stranger = SoftFido2::with_pin("5555").always_uv();
    stranger
        .make_credential(RP_ID, &[3; 32], &pass("5555"))
        .unwrap();
    let mut holder = Holder::typing(&["5555"]);
    match open(&v, &mut stranger, &mut holder) {
        Err(Error::NotEnrolled { slots }) => assert_eq!(slots.len(), 2, "{slots:?}"),
        other => panic!("expected NotEnrolled, got {:?}", other.err()),
    }
    assert_eq!(holder.shown, [8], "the PIN asked once for both slots");
}

#[test]
fn uv_and_no_uv_outputs_differ_and_only_uv_opens() {
    let (mut key, v) = enrolled();
    let p = Fido2Params::decode(&slot(&v).params).unwrap();
    let uv = key
        .hmac_secret(&p.rp_id, &p.credential_id, &p.salt, Some(&pass(PIN)))
        .unwrap();
    let no_uv = key
        .hmac_secret(&p.rp_id, &p.credential_id, &p.salt, None)
        .unwrap();
    assert_ne!(*uv, *no_uv, "hmac-secret without UV is another secret");

    let mut without = RawOutput {
        key: &mut key,
        pin: None,
    };
    assert!(matches!(
        v.open(&pass(PASSPHRASE), &mut without),
        Err(Error::NotOpened)
    ));
    let mut with = RawOutput {
        key: &mut key,
        pin: Some(pass(PIN)),
    };
    v.open(&pass(PASSPHRASE), &mut with)
        .expect("the UV output is T");
}

#[test]
fn a_wrong_pin_is_asked_again_with_the_tries_left() {
    let (mut key, v) = enrolled();
    let mut holder = Holder::typing(&["0000", PIN]);
    open(&v, &mut key, &mut holder).unwrap();
    assert_eq!(holder.shown, [8, 7]);
    assert_eq!(
        key.pin_retries().unwrap(),
        8,
        "a right PIN restores the tries"
    );
}

#[test]
fn three_wrong_pins_report_the_tries_left_and_want_a_power_cycle() {
    let (mut key, v) = enrolled();
    let mut holder = Holder::typing(&["0000", "1111", "2222", PIN]);
    let r = open(&v, &mut key, &mut holder);
    assert!(
        matches!(
            r,
            Err(Error::WrongPin {
                what: "FIDO2",
                tries_left: 5
            })
        ),
        "{:?}",
        r.err()
    );
    assert_eq!(
        holder.shown,
        [8, 7, 6],
        "asked again while the key took tries"
    );
    assert_eq!(
        r.err().map(|e| e.to_string()).unwrap_or_default(),
        "the FIDO2 PIN is wrong: 5 tries left before it blocks"
    );

    // Not unplugged: even the right PIN is refused, and no try is spent.
    let r = open(&v, &mut key, &mut Holder::typing(&[PIN]));
    match r {
        Err(e @ Error::Fido2(Fido2Problem::PowerCycle { tries_left: 5 })) => {
            let m = e.to_string();
            assert!(m.contains("unplugged and plugged in again"), "{m}");
            assert!(m.contains("5 tries left"), "{m}");
        }
        other => panic!("expected the power-cycle error, got {:?}", other.err()),
    }
    assert_eq!(key.pin_retries().unwrap(), 5);

    key.power_cycle();
    let mut holder = Holder::typing(&[PIN]);
    open(&v, &mut key, &mut holder).unwrap();
    assert_eq!(holder.shown, [5]);
}

#[test]
fn the_last_try_needs_confirmation() {
    let (mut key, v) = enrolled();
    spend_three(&v, &mut key);
    spend_three(&v, &mut key);
    assert_eq!(key.pin_retries().unwrap(), 2);

    // One more wrong PIN leaves one try: the holder is asked first and declines.
    let mut holder = Holder::declining_last_try(&["0000", PIN]);
    let r = open(&v, &mut key, &mut holder);
    assert!(
        matches!(r, Err(Error::LastTryDeclined { what: "FIDO2" })),
        "{:?}",
        r.err()
    );
    assert_eq!(holder.shown, [2], "the PIN was not asked for the last try");
    assert_eq!(holder.confirms_asked, 1);
    assert_eq!(key.pin_retries().unwrap(), 1, "declining spends no try");

    let mut holder = Holder::typing(&[PIN]);
    open(&v, &mut key, &mut holder).unwrap();
    assert_eq!(holder.confirms_asked, 1);
    assert_eq!(holder.shown, [1]);
    assert_eq!(key.pin_retries().unwrap(), 8);
}

#[test]
fn a_blocked_pin_is_refused() {
    let (mut key, v) = enrolled();
    spend_three(&v, &mut key);
    spend_three(&v, &mut key);
    let mut holder = Holder::typing(&["0000", "1111", PIN]);
    let r = open(&v, &mut key, &mut holder);
    assert!(
        matches!(r, Err(Error::PinBlocked { what: "FIDO2" })),
        "{:?}",
        r.err()
    );
    assert_eq!(holder.shown, [2, 1]);
    assert_eq!(key.pin_retries().unwrap(), 0);

    let mut holder = Holder::typing(&[PIN]);
    let r = open(&v, &mut key, &mut holder);
    assert!(
        matches!(r, Err(Error::PinBlocked { what: "FIDO2" })),
        "{:?}",
        r.err()
    );
    assert!(holder.shown.is_empty(), "no PIN asked of a blocked key");
}

#[test]
fn another_key_or_passphrase_does_not_open() {
    let (mut key, v) = enrolled();
    let mut other = SoftFido2::with_pin(PIN);
    let mut holder = Holder::typing(&[PIN]);
    match open(&v, &mut other, &mut holder) {
        Err(Error::NotEnrolled { slots }) => {
            assert_eq!(slots, ["0 \"primary\" (fido2)"]);
        }
        r => panic!("expected NotEnrolled, got {:?}", r.err()),
    }
    assert!(
        holder.shown.is_empty(),
        "no PIN asked of a key not enrolled"
    );
    assert_eq!(other.touches(), 0);

    let r = v.open(
        &pass("wrong passphrase"),
        &mut Fido2Factor::new(&mut key, &mut Holder::typing(&[PIN])),
    );
    assert!(matches!(r, Err(Error::NotOpened)), "{:?}", r.err());
}

#[test]
fn keys_that_cannot_verify_the_user_are_refused_at_enrolment() {
    // The `next:` of each (`ykman fido access change-pin` for a key without a PIN) is the
    // binary's: src/cli/error.rs tests it.
    let cases: [(SoftFido2, Fido2Problem, &str); 3] = [
        (
            SoftFido2::without_uv(),
            Fido2Problem::NoPinSupport,
            "no FIDO2 PIN support",
        ),
        (
            SoftFido2::without_pin(),
            Fido2Problem::NoPinSet,
            "has no FIDO2 PIN",
        ),
        (
            SoftFido2::with_pin(PIN).without_hmac_secret(),
            Fido2Problem::NoHmacSecret,
            "hmac-secret extension",
        ),
    ];
    for (mut key, problem, expect) in cases {
        let mut holder = Holder::typing(&[PIN]);
        match create(&mut key, &mut holder) {
            Err(Error::Fido2(p)) => {
                assert_eq!(p, problem);
                let m = p.to_string();
                assert!(m.contains(expect), "{m:?} lacks {expect:?}");
            }
            r => panic!("expected a FIDO2 error ({expect}), got {:?}", r.err()),
        }
        assert!(holder.shown.is_empty(), "refused before asking a PIN");
        assert_eq!(key.credential_count(), 0);
    }
}

#[test]
fn a_reset_key_gives_a_clear_error() {
    let (mut key, v) = enrolled();
    key.reset();
    key.set_pin(PIN).unwrap();
    let r = open(&v, &mut key, &mut Holder::typing(&[PIN]));
    assert!(matches!(r, Err(Error::NotEnrolled { .. })), "{:?}", r.err());

    // Asked directly for that slot (as `unlock --slot` would): the message says reset.
    let mut holder = Holder::typing(&[PIN]);
    let r = Fido2Factor::new(&mut key, &mut holder).respond(&slot(&v));
    match r {
        Err(e @ Error::Fido2(Fido2Problem::NotHeld { .. })) => {
            let m = e.to_string();
            assert!(m.contains("reset"), "{m}")
        }
        other => panic!("expected a FIDO2 error, got {:?}", other.err()),
    }
    assert!(holder.shown.is_empty());
}

#[test]
fn damaged_parameters_are_damage() {
    let (mut key, v) = enrolled();
    let good = slot(&v);
    let mut holder = Holder::typing(&[PIN]);
    let mut f = Fido2Factor::new(&mut key, &mut holder);
    let mut bad = good.clone();
    for params in [
        vec![],
        vec![2],
        good.params[..good.params.len() - 1].to_vec(),
        [good.params.as_slice(), &[0]].concat(),
    ] {
        bad.params = params;
        assert!(matches!(f.matches(&bad), Err(Error::Damaged)));
        assert!(matches!(f.respond(&bad), Err(Error::Damaged)));
    }
    assert!(f.matches(&good).unwrap());
    assert!(holder.shown.is_empty(), "no PIN asked");
}

/// On a real key: `BREAKGLASS_FIDO2_DEVICE=/dev/hidrawN BREAKGLASS_FIDO2_PIN=… cargo test
/// --test it fido2_factor::hardware -- --nocapture`; touch the key when it blinks (three times).
/// Makes one non-discoverable credential for `breakglass` (nothing stored on the key).
#[test]
fn hardware_key_enrols_and_opens() {
    let (Some(path), Some(pin)) = (
        std::env::var_os(DEVICE_ENV),
        std::env::var("BREAKGLASS_FIDO2_PIN").ok(),
    ) else {
        // Written to the real stderr, not the captured one: the skip must be visible.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED fido2 hardware: set {DEVICE_ENV}=/dev/hidrawN and BREAKGLASS_FIDO2_PIN to \
             run it against a real FIDO2 key"
        );
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let mut key = HidAuthenticator::open(Some(&path)).expect("open the FIDO2 key");
    eprintln!("fido2 hardware: using {}", key.path());
    // One PIN per step: a wrong PIN in the environment spends one try, not all.
    let v = create(&mut key, &mut Holder::typing(&[pin.as_str()])).expect("enrol on the key");
    let mut holder = Holder::typing(&[pin.as_str()]);
    open(&v, &mut key, &mut holder).expect("open with the key");

    let p = Fido2Params::decode(&slot(&v).params).unwrap();
    let no_uv = key
        .hmac_secret(&p.rp_id, &p.credential_id, &p.salt, None)
        .expect("hmac-secret without UV");
    let uv = key
        .hmac_secret(&p.rp_id, &p.credential_id, &p.salt, Some(&pass(&pin)))
        .expect("hmac-secret with UV");
    assert_ne!(*uv, *no_uv);
    let mut without = RawOutput {
        key: &mut key,
        pin: None,
    };
    assert!(matches!(
        v.open(&pass(PASSPHRASE), &mut without),
        Err(Error::NotOpened)
    ));
}
