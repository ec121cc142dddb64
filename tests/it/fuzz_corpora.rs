//! The fuzzers' kept inputs, replayed without cargo-fuzz: every file of `fuzz/corpus/<target>/`
//! and `fuzz/regressions/<target>/` goes through the function its target calls
//! (`breakglass::fuzzing::<target>`), which must not panic. Also writes the seed corpora
//! (`write_seed_corpora`, ignored: `BREAKGLASS_WRITE_FUZZ_SEEDS=1 cargo test --test it
//! fuzz_corpora -- --ignored`).

use std::path::{Path, PathBuf};

use breakglass::fuzzing;

/// The targets of `fuzz/Cargo.toml`, each with its entry function.
/// A fuzz target's entry function.
type Entry = fn(&[u8]);

const TARGETS: &[(&str, Entry)] = &[
    ("apdu", fuzzing::apdu),
    ("oath", fuzzing::oath),
    ("piv", fuzzing::piv),
    ("vault", fuzzing::vault),
    ("agent", fuzzing::agent),
    ("config", fuzzing::config),
    ("aws_config", fuzzing::aws_config),
    ("audit", fuzzing::audit),
    ("attest", fuzzing::attest),
    ("sts_answer", fuzzing::sts_answer),
    ("sandbox_http", fuzzing::sandbox_http),
    ("sigv4", fuzzing::sigv4),
    ("soft_card", fuzzing::soft_card),
    ("vpcd", fuzzing::vpcd),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn every_kept_fuzz_input_is_handled_without_a_panic() {
    let mut failed = Vec::new();
    let mut replayed = 0;
    for kind in ["corpus", "regressions"] {
        let root = fuzz_dir().join(kind);
        for dir in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let name = dir.file_name().to_string_lossy().into_owned();
            let Some((_, run)) = TARGETS.iter().find(|(t, _)| *t == name) else {
                failed.push(format!("{kind}/{name}: no such fuzz target"));
                continue;
            };
            for file in files_in(&dir.path()) {
                let data = std::fs::read(&file).expect("a kept fuzz input");
                replayed += 1;
                if std::panic::catch_unwind(|| run(&data)).is_err() {
                    failed.push(file.display().to_string());
                }
            }
        }
    }
    for (target, _) in TARGETS {
        let seeds = files_in(&fuzz_dir().join("corpus").join(target));
        assert!(!seeds.is_empty(), "fuzz/corpus/{target} has no seed");
    }
    assert!(failed.is_empty(), "these inputs panicked: {failed:#?}");
    eprintln!("replayed {replayed} fuzz inputs");
}

// ---- seed corpora ----

use breakglass::token::apdu::{tlv, Command, Response, StatusWord};
use breakglass::token::oath::{self, Kind, NewAccount, Seed};
use breakglass::token::otp::Algorithm;
use breakglass::token::soft::SoftCard;
use zeroize::Zeroizing;

fn write(target: &str, name: &str, bytes: impl AsRef<[u8]>) {
    let dir = fuzz_dir().join("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    std::fs::write(dir.join(name), bytes).expect("corpus file");
}

fn soft() -> SoftCard {
    SoftCard::new(Box::new(|| true))
}

fn account(name: &str, kind: Kind, period: u32, touch: bool) -> NewAccount {
    NewAccount {
        name: name.into(),
        kind,
        algorithm: Algorithm::Sha1,
        digits: 6,
        period,
        touch,
        counter: 0,
        seed: Seed::new(Zeroizing::new(b"12345678901234567890".to_vec())),
    }
}

fn card_with_accounts(code: Option<&[u8]>) -> SoftCard {
    let mut card = soft();
    {
        let mut s = oath::Session::select(&mut card).expect("select");
        s.put(&account("fuzz", Kind::Totp, 30, false)).expect("put");
        s.put(&account("fuzz", Kind::Totp, 60, false)).expect("put");
        s.put(&account("touch", Kind::Totp, 30, true)).expect("put");
        s.put(&account("hotp", Kind::Hotp, 30, false)).expect("put");
        s.put(&account("hmac", Kind::Totp, 30, false)).expect("put");
        if let Some(code) = code {
            s.set_access_code(code, &breakglass::secure::SystemRandom::new())
                .expect("set code");
        }
    }
    card.reset();
    card
}

#[test]
#[ignore = "writes fuzz/corpus; run with BREAKGLASS_WRITE_FUZZ_SEEDS=1"]
fn write_seed_corpora() {
    if std::env::var_os("BREAKGLASS_WRITE_FUZZ_SEEDS").is_none() {
        eprintln!("skipped: set BREAKGLASS_WRITE_FUZZ_SEEDS=1 to rewrite fuzz/corpus");
        return;
    }
    let select_oath = Command::new(0, 0xA4, 4, 0).with_data(vec![0xA0, 0, 0, 5, 0x27, 0x21, 1]);
    write("apdu", "select", select_oath.to_bytes());
    write(
        "apdu",
        "extended",
        Command::new(0, 0x01, 0, 0)
            .with_data(vec![7; 300])
            .with_le(65536)
            .to_bytes(),
    );
    write(
        "apdu",
        "response-tlv",
        Response::new(
            [
                tlv(0x79, &[5, 7, 1]).to_vec(),
                tlv(0x5F_FF01, &[1; 130]).to_vec(),
            ]
            .concat(),
            StatusWord::OK,
        )
        .to_bytes(),
    );

    write(
        "oath",
        "open",
        fuzzing::oath_seed(&mut card_with_accounts(None)),
    );
    write(
        "oath",
        "locked",
        fuzzing::oath_seed(&mut card_with_accounts(Some(b"fuzz"))),
    );
    let mut card = soft();
    write("piv", "blank-card", fuzzing::piv_seed(&mut card));
    write("piv", "again", fuzzing::piv_seed(&mut card));

    // The attestation of a slot and the F9 certificate, as the soft token makes them.
    let (leaf, f9) = {
        use breakglass::token::piv::PivCard;
        let mut card = soft();
        let mut piv = breakglass::token::piv::ApduPiv::select(&mut card).expect("select PIV");
        piv.verify_pin(b"123456").expect("pin");
        piv.authenticate_default().expect("mgm");
        piv.generate_p256_always(0x9D).expect("generate");
        (
            piv.attest(0x9D).expect("attest"),
            piv.attestation_certificate().expect("f9"),
        )
    };
    write("attest", "soft-token", fuzzing::script(&[&leaf, &f9]));

    let vector = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/vault-v1-vector.bin");
    write(
        "vault",
        "v1-vector",
        std::fs::read(vector).expect("vault vector"),
    );
    let vector = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/vault-v2-vector.bin");
    write(
        "vault",
        "v2-vector",
        std::fs::read(vector).expect("vault vector"),
    );

    use breakglass::agent::protocol::{Answer, Request, WireCreds};
    let creds = WireCreds {
        access_key_id: "ASIAFUZZFUZZFUZZFUZZ",
        secret_access_key: b"secret",
        session_token: b"token",
        expiration: fuzzing::NOW,
    };
    let requests = [
        Request::Get {
            profile: "prod",
            role_arn: Some("arn:aws:iam::123456789012:role/r"),
            interactive: true,
            fresh: false,
        },
        Request::PutBase {
            creds,
            mfa_serial: "arn:aws:iam::123456789012:mfa/a",
            password_holder: "alice",
            token_holder: "bob",
            identity: "arn:aws:iam::123456789012:user/u",
        },
        Request::Lock { profile: None },
        Request::Status,
    ];
    let mut frames = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        let mut frame = Vec::new();
        r.send(&mut frame).expect("encode request");
        write("agent", &format!("request-{i}"), &frame);
        frames.extend_from_slice(&frame);
    }
    write("agent", "requests", &frames);
    let answers = [
        Answer::LeadCeremony,
        Answer::NoSession { reason: "locked" },
        Answer::Creds {
            creds,
            identity: "arn:aws:sts::123456789012:assumed-role/r/s",
            password_holder: "alice",
            token_holder: "bob",
            base_expiration: fuzzing::NOW,
            what: "role",
        },
    ];
    for (i, a) in answers.iter().enumerate() {
        let mut frame = Vec::new();
        a.send(&mut frame).expect("encode answer");
        write("agent", &format!("answer-{i}"), &frame);
    }

    let paths = breakglass::config::Paths::from_lookup(|k| {
        (k == "HOME").then(|| PathBuf::from("/home/fuzz"))
    })
    .expect("paths");
    let profile = breakglass::config::Profile::defaults("prod", &paths);
    write(
        "config",
        "profile",
        format!("[agent]\nidle_minutes = 15\n\n{}", profile.to_toml()),
    );

    write(
        "aws_config",
        "config",
        "[default]\nregion = eu-west-1\n\n[profile prod]\nmfa_serial = arn:aws:iam::123456789012:mfa/alice\n\
         credential_process = breakglass credential-process --profile prod\nregion=us-east-1 ; comment\n\
         [profile admin]\nrole_arn = arn:aws:iam::123456789012:role/admin\nsource_profile = prod\n\
         [sso-session x]\nsso_region = us-east-1\n# comment\n",
    );

    {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        let path = dir.path().join("audit.log");
        let log = breakglass::audit::log::Log::new(&path);
        for (n, why) in ["locked", "expired", "stopped"].iter().enumerate() {
            let entry = breakglass::audit::Entry {
                time: fuzzing::NOW + n as u64,
                profile: "prod",
                record: breakglass::audit::Record::SessionWiped { why, pid: 42 },
                outcome: breakglass::audit::Outcome::Success,
            };
            log.append(&entry).expect("append");
        }
        let lines = std::fs::read(&path).expect("log");
        write("audit", "three-records", &lines);
        let mut torn = lines.clone();
        torn.extend_from_slice(b"{\"time\":\"2023");
        write("audit", "torn", torn);
    }

    let expiration = (fuzzing::NOW as i64 + 3600).to_be_bytes();
    write(
        "sts_answer",
        "good",
        fuzzing::script(&[
            &b"ASIAFUZZFUZZFUZZFUZZ"[..],
            b"secret",
            b"token",
            &expiration,
        ]),
    );

    write(
        "sandbox_http",
        "get-session-token",
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         X-Amz-Date: 20231114T221320Z\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIAFUZZFUZZFUZZFUZZ/20231114/us-east-1/sts/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date, Signature=0000000000000000000000000000000000000000000000000000000000000000\r\n\
         Content-Length: 43\r\n\r\nAction=GetSessionToken&Version=2011-06-15",
    );
    write(
        "sandbox_http",
        "get",
        "GET /?Action=GetCallerIdentity&Version=2011-06-15 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    // Signed with the sandbox's admin key by the entry point (`S`: STS, `I`: IAM).
    for (name, body) in [
        ("signed-caller-identity", "SAction=GetCallerIdentity&Version=2011-06-15"),
        ("signed-session-token", "SAction=GetSessionToken&Version=2011-06-15&DurationSeconds=900&SerialNumber=arn%3Aaws%3Aiam%3A%3A000000000000%3Amfa%2Fx&TokenCode=123456"),
        ("signed-assume-role", "SAction=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A000000000000%3Arole%2Fr&RoleSessionName=s&DurationSeconds=900&SourceIdentity=a"),
        ("signed-iam-user", "IAction=GetUser&Version=2010-05-08"),
        ("signed-iam-keys", "IAction=ListAccessKeys&Version=2010-05-08&UserName=admin"),
    ] {
        write("sandbox_http", name, body);
    }
    write(
        "sigv4",
        "signed",
        "POST /?a=b%20c\nhost: sts.amazonaws.com\nx-amz-date: 20231114T221320Z\ncontent-type: application/x-www-form-urlencoded\n\
         authorization: AWS4-HMAC-SHA256 Credential=AKIAFUZZFUZZFUZZFUZZ/20231114/us-east-1/sts/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date, Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n\n\
         Action=GetSessionToken&Version=2011-06-15&DurationSeconds=3600",
    );

    let apdus: Vec<Vec<u8>> = vec![
        select_oath.to_bytes().to_vec(),
        Command::new(0, 0xA1, 0, 0).to_bytes().to_vec(),
        Command::new(0, 0xA4, 0, 1)
            .with_data(tlv(0x74, &[0; 8]).to_vec())
            .to_bytes()
            .to_vec(),
        Command::new(0, 0xA4, 4, 0)
            .with_data(vec![0xA0, 0, 0, 3, 8])
            .to_bytes()
            .to_vec(),
        Command::new(0, 0x20, 0, 0x80)
            .with_data(b"123456\xff\xff".to_vec())
            .to_bytes()
            .to_vec(),
        Command::new(0, 0xF8, 0, 0).to_bytes().to_vec(),
        Command::new(0, 0xCB, 0x3F, 0xFF)
            .with_data(vec![0x5C, 3, 0x5F, 0xFF, 0x01])
            .with_le(0)
            .to_bytes()
            .to_vec(),
        Command::new(0, 0xC0, 0, 0).to_bytes().to_vec(),
    ];
    write("soft_card", "oath-and-piv", fuzzing::script(&apdus));
    let mut vpcd = vec![vec![1u8], vec![4u8]];
    vpcd.extend(apdus);
    vpcd.push(vec![2u8]);
    vpcd.push(vec![0u8]);
    write("vpcd", "session", fuzzing::script(&vpcd));
}
