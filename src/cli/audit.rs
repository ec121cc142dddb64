//! `breakglass audit verify`: check the audit log's hash chain.

use super::error::{exit, CliError};

pub fn verify_cmd() -> Result<(), CliError> {
    let paths = breakglass::config::Paths::from_env()?;
    let path = paths.audit_log();
    let n = breakglass::audit::verify(&path).map_err(|e| {
        CliError::new(
            e.to_string(),
            "treat the log as tampered: keep a copy, compare with your off-machine copies, tell the security team",
            exit::FAILURE,
        )
    })?;
    outln!("{}: {n} records, hash chain intact", path.display())?;
    Ok(())
}
