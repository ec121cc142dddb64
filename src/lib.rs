//! breakglass: two-person break-glass access to AWS. A sealed IAM access key, a hardware token,
//! short-lived STS sessions. The library holds the protocols and the crypto; `src/main.rs` and
//! `cli` are argument parsing, prompts and printing.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod agent;
pub mod audit;
pub mod aws;
pub mod ceremony;
pub mod clock;
pub mod config;
pub mod files;
#[cfg(feature = "sandbox")]
#[doc(hidden)]
pub mod fuzzing;
pub mod guardrails;
pub mod notify;
#[cfg(feature = "sandbox")]
#[allow(missing_docs)] // documented in the sandbox rewrite
pub mod sandbox;
pub mod secure;
pub mod shell;
pub mod token;
pub mod vault;
