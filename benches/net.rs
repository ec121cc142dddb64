//! `cargo bench --bench net`: how long GetSessionToken takes to fail against a refused and a
//! hung STS endpoint with the default deadlines and retries (connect 3 s, call 10 s, 3
//! attempts), and how long the probe takes. Figures printed, never asserted.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use secrecy::SecretString;

use breakglass::aws::{probe, sts, Endpoint, Error, Signer};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn summary(v: &mut [Duration]) -> String {
    v.sort();
    format!(
        "min {:.2} s, median {:.2} s, max {:.2} s ({} runs)",
        v[0].as_secs_f64(),
        v[v.len() / 2].as_secs_f64(),
        v[v.len() - 1].as_secs_f64(),
        v.len()
    )
}

/// Time from the call to its error, and the error's text.
fn time_failure(rt: &tokio::runtime::Runtime, endpoint: &Endpoint) -> (Duration, String) {
    let secret = SecretString::from("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned());
    let signer = Signer {
        access_key_id: "AKIAIOSFODNN7EXAMPLE",
        secret_access_key: &secret,
        session_token: None,
    };
    let started = Instant::now();
    let r = rt.block_on(sts::get_session_token(
        endpoint,
        &signer,
        "arn:aws:iam::123456789012:mfa/breakglass",
        "123456",
        3600,
        0,
    ));
    let took = started.elapsed();
    match r {
        Err(e @ Error::Unreachable { .. }) => (took, e.to_string()),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("a session from nowhere"),
    }
}

fn main() {
    let rt = rt();
    // Refused: a port bound, then closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let refused = Endpoint::new("us-east-1", Some(format!("http://127.0.0.1:{port}")));
    let mut times = Vec::new();
    let mut text = String::new();
    for _ in 0..10 {
        let (t, e) = time_failure(&rt, &refused);
        times.push(t);
        text = e;
    }
    println!("refused STS -> error: {}", summary(&mut times));
    println!("  {text}");

    // Hung: accepts, reads, never answers.
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let hung = Endpoint::new(
        "us-east-1",
        Some(format!("http://{}", listener.local_addr().expect("addr"))),
    );
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    let mut times = Vec::new();
    for _ in 0..2 {
        let (t, e) = time_failure(&rt, &hung);
        times.push(t);
        text = e;
    }
    println!("hung STS -> error: {}", summary(&mut times));
    println!("  {text}");

    // The probe against both.
    let mut times = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        let r = rt.block_on(probe::probe(&refused));
        times.push(started.elapsed());
        assert!(r.is_err());
    }
    println!("probe of the refused STS: {}", summary(&mut times));
    let started = Instant::now();
    let r = rt.block_on(probe::probe(&hung));
    println!(
        "probe of the hung STS (TCP connects: passes): {:.3} s, {}",
        started.elapsed().as_secs_f64(),
        if r.is_ok() { "ok" } else { "error" }
    );
}
