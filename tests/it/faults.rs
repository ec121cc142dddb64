//! GetSessionToken through the fault rig: every network fault ends within the deadlines the
//! test sets, as a one-line typed error that says whether the request may have reached STS;
//! retries are counted; implausible answers are refused; the probe tells reachable from not.

use std::time::{Duration, Instant};

use breakglass::aws::sts::{self, Session};
use breakglass::aws::{probe, AnswerProblem, Deadlines, Endpoint, Error, Failure, Retries};
use breakglass::token::otp::{self, Algorithm};

use crate::common::emulator::{steady_now, unix_now, Rig};
use crate::common::faults::{addr_of, session_xml, BlackHole, ClosedPort, Fault, Proxy};

/// The deadlines of these tests: 0.5 s to connect, 1 s per call, 3 attempts 10 ms apart.
fn endpoint(url: String) -> Endpoint {
    Endpoint {
        deadlines: Deadlines {
            connect: Duration::from_millis(500),
            call: Duration::from_secs(1),
        },
        retries: Retries {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
        },
        ..Endpoint::new("us-east-1", Some(url))
    }
}

/// GetSessionToken with the current code, as `unlock` sends it.
async fn get_session(rig: &Rig, endpoint: &Endpoint) -> Result<Session, Error> {
    let t = steady_now(&rig.sts);
    let code = otp::totp(Algorithm::Sha1, &rig.seed, t, 30, 6);
    sts::get_session_token(endpoint, &rig.key(), &rig.serial, &code, 900, t).await
}

/// The time an `Unreachable` took, by its own account (from the start of the call: a wait
/// for a fresh TOTP window before it is not counted).
fn elapsed(e: &Error) -> Duration {
    match e {
        Error::Unreachable { elapsed, .. } => *elapsed,
        other => panic!("not Unreachable: {other}"),
    }
}

/// The failure, `may_have_arrived` and attempts of an `Unreachable`; its text is one line
/// without the SDK's debug chain.
fn unreachable(e: &Error) -> (Failure, bool, u32) {
    let text = e.to_string();
    eprintln!("{text}");
    assert!(!text.contains('\n'), "{text}");
    for debug in [
        "DispatchFailure",
        "ConnectorError",
        "hyper",
        "Custom {",
        "kind:",
    ] {
        assert!(!text.contains(debug), "{text}");
    }
    match e {
        Error::Unreachable {
            failure,
            may_have_arrived,
            attempts,
            ..
        } => (failure.clone(), *may_have_arrived, *attempts),
        other => panic!("not Unreachable: {other}"),
    }
}

#[tokio::test]
async fn a_deadline_that_cuts_the_backoff_after_refusals_reports_the_refusal() {
    let rig = Rig::new();
    let port = ClosedPort::new();
    // The first attempt is refused at once; the wait before the next one (up to 20 s with
    // jitter) outlasts the 1 s call deadline, or the next attempt is refused too.
    let e = get_session(
        &rig,
        &Endpoint {
            retries: Retries {
                max_attempts: 3,
                initial_backoff: Duration::from_secs(20),
            },
            ..endpoint(port.url())
        },
    )
    .await
    .err()
    .unwrap();
    let (failure, arrived, _) = unreachable(&e);
    assert_eq!(failure, Failure::Refused, "{e}");
    assert!(!arrived);
    assert!(e.to_string().contains("connection refused"), "{e}");
}

#[tokio::test]
async fn refused_sts_is_unreachable_and_nothing_was_sent() {
    let rig = Rig::new();
    let port = ClosedPort::new();
    let url = port.url();
    let e = get_session(&rig, &endpoint(url.clone()))
        .await
        .err()
        .unwrap();
    let (failure, arrived, attempts) = unreachable(&e);
    assert_eq!(failure, Failure::Refused);
    assert!(!arrived, "a refused connection sent nothing");
    assert_eq!(attempts, 3, "connection errors are retried");
    let text = e.to_string();
    let host = url.trim_start_matches("http://");
    assert!(
        text.starts_with(&format!(
            "cannot reach AWS STS at {host}: connection refused ("
        )),
        "{text}"
    );
    assert!(elapsed(&e) < Duration::from_secs(1), "{text}");
    assert_eq!(rig.sts.counts().get_session_token, 0);
}

#[tokio::test]
async fn hung_sts_ends_at_the_call_deadline() {
    let rig = Rig::new();
    let proxy = Proxy::start(Some(addr_of(&rig.sts.endpoint())), Fault::Hang);
    let started = Instant::now();
    let e = get_session(&rig, &endpoint(proxy.url()))
        .await
        .err()
        .unwrap();
    let took = started.elapsed();
    let (failure, arrived, attempts) = unreachable(&e);
    assert_eq!(
        failure,
        Failure::CallTimeout {
            limit: Duration::from_secs(1)
        }
    );
    assert!(arrived, "the request was read: it may have been acted on");
    assert_eq!((attempts, proxy.requests()), (1, 1));
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(
        e.to_string()
            .contains("no answer within the 1.0 s call deadline"),
        "{e}"
    );
}

#[tokio::test]
async fn dripping_sts_ends_at_the_call_deadline() {
    let rig = Rig::new();
    let proxy = Proxy::start(
        Some(addr_of(&rig.sts.endpoint())),
        Fault::Drip(Duration::from_millis(100)),
    );
    let e = get_session(&rig, &endpoint(proxy.url()))
        .await
        .err()
        .unwrap();
    let (failure, arrived, _) = unreachable(&e);
    assert!(matches!(failure, Failure::CallTimeout { .. }), "{e}");
    assert!(arrived);
    assert_eq!(proxy.forwarded(), 1);
}

#[tokio::test]
async fn an_answer_cut_by_a_reset_is_retried_then_reported() {
    let rig = Rig::new();
    let proxy = Proxy::start(Some(addr_of(&rig.sts.endpoint())), Fault::ResetAfter(20));
    let e = get_session(&rig, &endpoint(proxy.url()))
        .await
        .err()
        .unwrap();
    let (failure, arrived, attempts) = unreachable(&e);
    assert_eq!(failure, Failure::Reset, "{e}");
    assert!(arrived, "STS answered: the code may be spent");
    assert_eq!((attempts, proxy.requests(), proxy.forwarded()), (3, 3, 3));
}

#[tokio::test]
async fn a_black_hole_times_out_connecting_and_nothing_was_sent() {
    let rig = Rig::new();
    let hole = BlackHole::new();
    let mut ep = endpoint(hole.url());
    ep.deadlines = Deadlines {
        connect: Duration::from_millis(200),
        call: Duration::from_secs(2),
    };
    let e = get_session(&rig, &ep).await.err().unwrap();
    let (failure, arrived, attempts) = unreachable(&e);
    assert_eq!(
        failure,
        Failure::ConnectTimeout {
            limit: Duration::from_millis(200)
        },
        "{e}"
    );
    assert!(!arrived, "no connection was made");
    assert_eq!(attempts, 3);
}

#[tokio::test]
async fn the_call_deadline_cutting_a_connect_still_knows_nothing_was_sent() {
    let rig = Rig::new();
    let hole = BlackHole::new();
    let mut ep = endpoint(hole.url());
    // The call deadline strikes while the first attempt is still connecting.
    ep.deadlines = Deadlines {
        connect: Duration::from_secs(1),
        call: Duration::from_millis(300),
    };
    let e = get_session(&rig, &ep).await.err().unwrap();
    let (failure, arrived, _) = unreachable(&e);
    assert!(matches!(failure, Failure::CallTimeout { .. }), "{e}");
    assert!(!arrived, "the connection was never made");
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let rig = Rig::new();
    let proxy = Proxy::start(Some(addr_of(&rig.sts.endpoint())), Fault::Status(503));
    let e = get_session(&rig, &endpoint(proxy.url()))
        .await
        .err()
        .unwrap();
    let (failure, arrived, attempts) = unreachable(&e);
    assert_eq!(failure, Failure::ServerError { status: 503 });
    assert!(arrived);
    assert_eq!((attempts, proxy.requests()), (3, 3));
    let text = e.to_string();
    assert!(
        text.contains("AWS answered HTTP 503 (3 attempts, "),
        "{text}"
    );
}

#[tokio::test]
async fn two_server_errors_then_an_answer_is_a_session() {
    let rig = Rig::new();
    let proxy = Proxy::start(Some(addr_of(&rig.sts.endpoint())), Fault::Pass)
        .then(Fault::Status(503))
        .then(Fault::Status(500));
    let s = get_session(&rig, &endpoint(proxy.url())).await.unwrap();
    assert!(s.access_key_id.starts_with("ASIA"));
    assert_eq!((proxy.requests(), proxy.forwarded()), (3, 1));
    assert_eq!(rig.sts.counts().get_session_token, 1);
}

#[tokio::test]
async fn throttling_every_time_is_told_apart() {
    let rig = Rig::new();
    let proxy = Proxy::start(None, Fault::Throttle);
    let e = get_session(&rig, &endpoint(proxy.url()))
        .await
        .err()
        .unwrap();
    match &e {
        Error::Throttled { code, attempts, .. } => {
            assert_eq!((code.as_str(), *attempts), ("Throttling", 3));
        }
        other => panic!("not Throttled: {other}"),
    }
    assert_eq!(proxy.requests(), 3);
    assert!(!e.to_string().contains('\n'));
}

#[tokio::test]
async fn an_answer_that_is_not_http_is_not_retried() {
    let rig = Rig::new();
    let proxy = Proxy::start(None, Fault::Garbage);
    let e = get_session(&rig, &endpoint(proxy.url()))
        .await
        .err()
        .unwrap();
    let (failure, arrived, attempts) = unreachable(&e);
    assert_eq!(failure, Failure::NotHttp, "{e}");
    assert!(arrived);
    assert_eq!((attempts, proxy.requests()), (1, 1));
}

#[tokio::test]
async fn tls_to_a_port_that_is_not_tls_fails_the_handshake_before_any_request() {
    let rig = Rig::new();
    let proxy = Proxy::start(None, Fault::Garbage);
    let e = get_session(&rig, &endpoint(proxy.https_url()))
        .await
        .err()
        .unwrap();
    let (failure, arrived, _) = unreachable(&e);
    assert!(matches!(failure, Failure::Tls { .. }), "{e}");
    assert!(
        !arrived,
        "no request is written before the handshake completes"
    );
}

/// GetSessionToken answered by `body` (HTTP 200); the problem it is refused for.
async fn refused_answer(body: String) -> (AnswerProblem, String) {
    let rig = Rig::new();
    let proxy = Proxy::start(None, Fault::Canned(body));
    let now = unix_now();
    let e = sts::get_session_token(
        &endpoint(proxy.url()),
        &rig.key(),
        &rig.serial,
        "123456",
        900,
        now,
    )
    .await
    .err()
    .unwrap();
    let text = e.to_string();
    match e {
        Error::BadAnswer { problem, .. } => (problem, text),
        other => panic!("not BadAnswer: {other}"),
    }
}

#[tokio::test]
async fn implausible_sts_answers_are_refused_without_echoing_secrets() {
    let key = Some("ASIAQWERTYUIOPASDFGH");
    let secret = Some("SECRETwJalrXUtnFEMIK7MDENG");
    let token = Some("TOKENFwoGZXIvYXdzEJr");
    let later = |secs: u64| breakglass::audit::rfc3339(unix_now() + secs);
    let soon = later(600);
    let cases = [
        (
            session_xml(key, secret, token, Some("1970-01-02T00:00:00Z")),
            "Expired",
        ),
        (session_xml(key, secret, token, None), "NoExpiration"),
        (
            session_xml(key, secret, token, Some(&later(10 * 86_400))),
            "TooLate",
        ),
        (
            session_xml(Some("ASIA&#9;WERTYUIOPASDFGH"), secret, token, Some(&soon)),
            "BadAccessKeyId",
        ),
        (
            session_xml(Some("AROAQWERTYUIOPASDFGH"), secret, token, Some(&soon)),
            "BadAccessKeyId",
        ),
        (
            session_xml(key, Some(""), token, Some(&soon)),
            "EmptySecret",
        ),
        (session_xml(key, secret, None, Some(&soon)), "EmptyToken"),
        (
            session_xml(None, secret, token, Some(&soon)),
            "NoAccessKeyId",
        ),
        ("<html>a captive portal</html>".to_owned(), "Unreadable"),
    ];
    for (body, want) in cases {
        let (problem, text) = refused_answer(body).await;
        assert!(
            format!("{problem:?}").starts_with(want),
            "{want}: {problem:?}"
        );
        assert!(
            !text.contains("SECRET") && !text.contains("TOKEN"),
            "{text}"
        );
        assert!(!text.contains('\t') && !text.contains('\n'), "{text}");
    }
    // The tab is named as such, not printed.
    let (problem, _) = refused_answer(session_xml(
        Some("ASIA&#9;WERTYUIOPASDFGH"),
        secret,
        token,
        Some(&soon),
    ))
    .await;
    assert!(
        matches!(problem, AnswerProblem::BadAccessKeyId { control: true, .. }),
        "{problem:?}"
    );
}

#[tokio::test]
async fn probe_tells_reachable_from_not_without_sending_a_request() {
    let rig = Rig::new();
    probe::probe(&endpoint(rig.sts.endpoint())).await.unwrap();
    // Accepts and never answers: the TCP probe passes, and sent nothing.
    let hung = Proxy::start(None, Fault::Hang);
    probe::probe(&endpoint(hung.url())).await.unwrap();
    hung.wait_for_connections(1);
    assert_eq!(hung.requests(), 0);
    let e = probe::probe(&endpoint(ClosedPort::new().url()))
        .await
        .err()
        .unwrap();
    let (failure, arrived, _) = unreachable(&e);
    assert_eq!(failure, Failure::Refused);
    assert!(!arrived);
    let garbage = Proxy::start(None, Fault::Garbage);
    let e = probe::probe(&endpoint(garbage.https_url()))
        .await
        .err()
        .unwrap();
    assert!(matches!(unreachable(&e).0, Failure::Tls { .. }), "{e}");
    let hole = BlackHole::new();
    let started = Instant::now();
    let e = probe::probe(&endpoint(hole.url())).await.err().unwrap();
    assert!(
        matches!(unreachable(&e).0, Failure::ConnectTimeout { .. }),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // https: plain http to another host is refused before any lookup (the endpoint policy).
    let e = probe::probe(&endpoint("https://name.invalid:443".into()))
        .await
        .err()
        .unwrap();
    assert_eq!(unreachable(&e).0, Failure::Dns, "{e}");
}
