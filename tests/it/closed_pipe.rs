//! Commands whose standard output is closed early (`breakglass status | head -1`): a quiet
//! exit 0, as ripgrep does, never a panic. `token list` is in `token_cli` (it needs the soft
//! token). Needs no pcscd.

use crate::common;

use common::home::*;
use common::*;

#[test]
fn status_and_completions_into_a_closed_pipe_end_quietly() {
    // `breakglass status | head -1` used to panic ("failed printing to stdout: Broken pipe",
    // status 101).
    let home = Home::new();
    let aws_config = home.dir.path().join("aws-config");
    std::fs::write(
        &aws_config,
        "[profile bg]\ncredential_process = breakglass credential-process prod\n",
    )
    .unwrap();
    let mut status = home.command(&["status"]);
    status.env("AWS_CONFIG_FILE", &aws_config);
    ends_quietly(&with_stdout_closed(status), "status");
    ends_quietly(
        &with_stdout_closed(home.command(&["status", "--json"])),
        "status --json",
    );
    ends_quietly(
        &with_stdout_closed(home.command(&["completions", "bash"])),
        "completions",
    );
    // With a reader, the same commands print in full.
    let mut status = home.command(&["status"]);
    status.env("AWS_CONFIG_FILE", &aws_config);
    let out = ok(status.output().unwrap());
    assert!(
        out.contains("profile \"bg\"") && out.contains("not running"),
        "{out}"
    );
}
