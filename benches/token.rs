//! `cargo bench --bench token`: latency figures of the token path, printed, never asserted.
//!
//! - whole-process `breakglass token code` through pcscd + vpcd + the soft token (median of 20);
//! - one SELECT + CALCULATE exchange through pcscd, in-process (median of 200);
//! - the same exchange against the in-process soft token (no PC/SC), for reference.
//!
//! Needs pcscd with the vpcd reader (see .ci/run); prints a SKIPPED line otherwise.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use breakglass::token::oath::{Kind, NewAccount, Seed, Session};
use breakglass::token::otp::Algorithm;
use breakglass::token::pcsc::{self, Card};
use breakglass::token::piv::PinCheck;
use breakglass::token::soft::{SimulatedTouch, SoftCard, TouchPolicy};
use breakglass::token::Token;

const BIN: &str = env!("CARGO_BIN_EXE_breakglass");
const READER: &str = "Virtual PCD 00 00";

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn card_present() -> bool {
    pcsc::list_readers()
        .map(|rs| rs.iter().any(|r| r.name == READER && r.card_present))
        .unwrap_or(false)
}

fn wait(present: bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while card_present() != present {
        assert!(Instant::now() < deadline, "soft token did not (dis)appear");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn account() -> NewAccount {
    NewAccount {
        name: "bench".into(),
        kind: Kind::Totp,
        algorithm: Algorithm::Sha1,
        digits: 6,
        period: 30,
        touch: false,
        counter: 0,
        seed: Seed::new(Zeroizing::new(b"12345678901234567890".to_vec())),
    }
}

fn in_process() -> Duration {
    let mut card = SoftCard::new(Box::new(SimulatedTouch::new(
        TouchPolicy::Approve,
        Duration::ZERO,
    )));
    Session::select(&mut card).unwrap().put(&account()).unwrap();
    let runs = (0..2000)
        .map(|i| {
            let t = Instant::now();
            let mut s = Session::select(&mut card).unwrap();
            s.totp("bench", 30, i).unwrap();
            t.elapsed()
        })
        .collect();
    median(runs)
}

/// The PIV factor's unlock step on `token`: open the PIV application, VERIFY PIN, ECDH with a
/// key generated in slot 82 beforehand (median of `runs`).
fn piv_unlock_step(token: &mut dyn Token, runs: usize) -> Duration {
    let point = {
        let mut piv = token.piv().unwrap();
        piv.authenticate_default().unwrap();
        piv.generate_p256_always(0x82).unwrap()
    };
    let times = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let mut piv = token.piv().unwrap();
            assert_eq!(piv.verify_pin(b"123456").unwrap(), PinCheck::Verified);
            piv.ecdh(0x82, &point).unwrap();
            t.elapsed()
        })
        .collect();
    median(times)
}

fn main() {
    println!(
        "in-process soft token, SELECT + CALCULATE: median {:?} (2000 runs)",
        in_process()
    );
    println!(
        "in-process soft token, PIV SELECT + VERIFY PIN + ECDH: median {:?} (200 runs)",
        piv_unlock_step(
            &mut SoftCard::new(Box::new(SimulatedTouch::new(
                TouchPolicy::Approve,
                Duration::ZERO
            ))),
            200
        )
    );
    let lock_path = std::env::temp_dir().join("breakglass-test-vpcd-slot-0.lock");
    let lock = std::fs::File::create(lock_path).unwrap();
    lock.lock().unwrap();
    if !pcsc::list_readers()
        .map(|rs| rs.iter().any(|r| r.name == READER))
        .unwrap_or(false)
    {
        println!("SKIPPED pcscd figures: pcscd with the vpcd reader is not running (see .ci/run)");
        return;
    }
    wait(false);
    let mut child = Command::new(BIN)
        .args(["sandbox", "card", "--vpcd", "127.0.0.1:35963"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait(true);
    {
        let mut card = Card::open_exact(READER).unwrap();
        let mut tx = card.transaction().unwrap();
        Session::select(&mut tx).unwrap().put(&account()).unwrap();
        let runs = (0..200)
            .map(|i| {
                let t = Instant::now();
                let mut s = Session::select(&mut tx).unwrap();
                s.totp("bench", 30, i).unwrap();
                t.elapsed()
            })
            .collect();
        println!(
            "through pcscd + vpcd, SELECT + CALCULATE (2 APDUs): median {:?} (200 runs)",
            median(runs)
        );
    }
    // The PIV factor's unlock step with the `yubikey` crate, as `unlock` does it.
    println!(
        "through pcscd + vpcd, PIV open + VERIFY PIN + ECDH with the yubikey crate: median {:?} (50 runs)",
        piv_unlock_step(&mut Card::open_exact(READER).unwrap(), 50)
    );
    let runs: Vec<Duration> = (0..20)
        .map(|_| {
            let t = Instant::now();
            let out = Command::new(BIN)
                .args(["token", "code", "bench", "--reader", READER])
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(out.status.success());
            t.elapsed()
        })
        .collect();
    let (min, max) = (*runs.iter().min().unwrap(), *runs.iter().max().unwrap());
    println!(
        "`breakglass token code` whole process through pcscd: median {:?} (20 runs, min {min:?}, max {max:?})",
        median(runs)
    );
    let _ = child.kill();
    let _ = child.wait();
    wait(false);
}
