//! The built-in sandbox: an STS/IAM emulator and the soft token, for `demo` and tests.
//!
//! [`sts::Sts`] is a strict, in-memory STS + IAM endpoint on loopback that the real AWS SDKs
//! and the AWS CLI talk to; its module doc says what is emulated strictly and what is not.

mod auth;
mod http;
mod iam_api;
mod model;
mod sigv4;
mod sts_api;
mod wire;

pub mod sts;
