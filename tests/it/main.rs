//! The integration tests, in one binary (one link of the library instead of one per file).
//! Each module is one area; `common` is the shared rig: the breakglass binary, the soft token
//! in pcscd's vpcd reader, temporary homes, the moto and emulator helpers.

mod common;

mod agent;
mod assume_role;
mod audit_log;
mod aws_errors;
mod ceremony_pty;
mod closed_pipe;
mod console;
mod custodian_ceremony;
mod custodians;
mod demo;
mod drill;
mod endpoint_policy;
mod faults;
mod fido2_factor;
mod fuzz_corpora;
mod guardrails;
mod hardening;
mod holder_names;
mod mfa_retry;
mod mixed_slots;
mod notify;
mod piv_attestation;
mod piv_factor;
mod promises;
mod rotation;
mod sandbox_signin;
mod sandbox_sts;
mod shell_env;
mod soft_oath;
mod soft_piv;
mod token_cli;
mod unlock_faults;
mod vault;
mod ykman_interop;
