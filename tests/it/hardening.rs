//! What another process of the same user can no longer do: read a secret out of the memory of
//! the breakglass process that holds it. Runs as an unprivileged user (root would read any
//! memory): the ceremony, its agent and the attacker all run as `nobody`.

use crate::common;

use std::net::SocketAddr;

use breakglass::sandbox::sts::Sts;
use common::faults;
use common::home::*;
use common::*;

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0
}

/// Whether this test can run its ceremony as another user (it needs root); says SKIPPED
/// otherwise, and fails where every test must run (`BREAKGLASS_REQUIRE_ALL=1`).
fn runs_as_another_user(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        !crate::common::require_all(),
        "BREAKGLASS_REQUIRE_ALL=1 but {test} needs root (to run as another user)"
    );
    eprintln!("SKIPPED {test}: needs root to run the ceremony as an unprivileged user");
    false
}

/// The probe works: the home's user opens the memory of a dumpable process of its own.
fn probe_reads_a_dumpable_process(home: &Home) {
    let mut sleeper = home.run_as("sleep", &["60"]).spawn().unwrap();
    let (opened, why) = can_open_memory(home, u64::from(sleeper.id()));
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(opened, "the probe cannot read a dumpable process: {why}");
}

/// Opens `/proc/PID/mem` as the home's user: whether that user may read the process's memory.
fn can_open_memory(home: &Home, pid: u64) -> (bool, String) {
    let o = home
        .run_as(
            "python3",
            &["-c", &format!("open('/proc/{pid}/mem', 'rb').close()")],
        )
        .output()
        .unwrap();
    (o.status.success(), stderr(&o))
}

#[test]
fn a_process_of_the_same_user_cannot_read_a_ceremony_leaders_memory() {
    let test = "a_process_of_the_same_user_cannot_read_a_ceremony_leaders_memory";
    if !pcsc_ready(test) {
        return;
    }
    if !runs_as_another_user(test) {
        return;
    }
    let token = SoftToken::approve(0);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::of_user(NOBODY);
    enrol_at_emulator(&home, &sts, "prod", &r);

    // STS takes the request and never answers: the leader holds the long-term key meanwhile.
    let hung = faults::Proxy::start(None, faults::Fault::Hang);
    let hung_url = hung.url();
    let config = std::fs::read_to_string(home.config_file()).unwrap();
    std::fs::write(
        home.config_file(),
        config.replace(&sts.endpoint(), &hung_url) + "call_timeout_secs = 300\n",
    )
    .unwrap();

    // credential-process leads the ceremony in place, as the README recommends.
    let mut p = pty(home.command(&["credential-process", "prod"]), 30_000);
    answer_ceremony(&mut p, Some("memory drill"));
    p.exp_string("Calling STS GetSessionToken").unwrap();
    hung.wait_for_requests(1);
    let started = home.audit_with("\"event\":\"activation started\"");
    let leader: serde_json::Value = serde_json::from_str(
        started
            .lines()
            .find(|l| l.contains("\"event\":\"activation started\""))
            .unwrap(),
    )
    .unwrap();
    let pid = leader["pid"].as_u64().unwrap();
    assert!(
        leader["command"].as_str().unwrap().contains("requested by"),
        "{leader}"
    );

    // The probe works: it opens the memory of a dumpable process of the same user.
    probe_reads_a_dumpable_process(&home);
    // The leader, holding the long-term key, is out of its reach.
    let (opened, why) = can_open_memory(&home, pid);
    assert!(
        !opened,
        "a process of the same user opened the ceremony leader's memory"
    );
    assert!(
        why.contains("PermissionError") || why.contains("Permission denied"),
        "{why}"
    );
    p.process_mut()
        .kill(rexpect::process::Signal::SIGKILL)
        .unwrap();
}

/// A rotation holds the old key and the new key's secret while IAM propagates the new key:
/// another process of the same user cannot read its memory then.
#[test]
fn a_process_of_the_same_user_cannot_read_a_rotation_holding_the_new_key() {
    let test = "a_process_of_the_same_user_cannot_read_a_rotation_holding_the_new_key";
    if !pcsc_ready(test) {
        return;
    }
    if !runs_as_another_user(test) {
        return;
    }
    let token = SoftToken::approve(1);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::of_user(NOBODY);
    enrol_at_emulator(&home, &sts, "prod", &r);
    // The new key never works while the test looks: the rotation waits, holding its secret.
    sts.set_key_propagation(3_600);
    let mut p = pty(
        home.command(&[
            "rotate",
            "prod",
            "--reason",
            "memory drill",
            "--reader",
            &r,
            "--propagation-timeout",
            "60",
        ]),
        30_000,
    );
    answer_ceremony(&mut p, None);
    p.exp_string("The new key does not work yet").unwrap();
    let started = home.audit_with("\"event\":\"activation started\"");
    let leader: serde_json::Value = serde_json::from_str(
        started
            .lines()
            .find(|l| l.contains("\"command\":\"breakglass rotate\""))
            .unwrap(),
    )
    .unwrap();
    let pid = leader["pid"].as_u64().unwrap();
    probe_reads_a_dumpable_process(&home);
    let (opened, why) = can_open_memory(&home, pid);
    assert!(
        !opened,
        "a process of the same user opened the rotation's memory"
    );
    assert!(
        why.contains("PermissionError") || why.contains("Permission denied"),
        "{why}"
    );
    p.process_mut()
        .kill(rexpect::process::Signal::SIGKILL)
        .unwrap();
}
