//! The built-in sandbox: an STS/IAM emulator and the soft token, for `demo` and tests.
//!
//! [`sts::Sts`] is a strict, in-memory STS + IAM endpoint on loopback that the real AWS SDKs
//! and the AWS CLI talk to; its module doc says what is emulated strictly and what is not. The
//! same server answers the AWS sign-in (federation) endpoint and a stand-in console page.

mod auth;
pub(crate) mod http;
mod iam_api;
mod model;
mod org_api;
mod signin;
pub(crate) mod sigv4;
mod sts_api;
mod wire;

pub mod scripted;
pub mod sts;

pub use scripted::Scripted;
