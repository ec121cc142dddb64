//! A webhook receiver for the notice tests: HTTPS on loopback with a certificate from a CA
//! made for the test (its PEM written where a webhook's `ca_file` can name it), answering each
//! request with the next status of a script, and keeping every body it got.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A running receiver; it stops with the test process.
pub struct Receiver {
    /// `https://127.0.0.1:PORT/hook/SECRET-PATH`.
    pub url: String,
    /// The test CA's certificate (PEM).
    pub ca_file: PathBuf,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Receiver {
    /// The config's table of this receiver as profile `profile`'s webhook `secteam`, trusted
    /// through its `ca_file`; appended after the profile's own keys.
    pub fn webhook_table(&self, profile: &str) -> String {
        format!(
            "[[profiles.{profile}.notify.webhooks]]\nname = \"secteam\"\nurl = \"{}\"\nca_file = \"{}\"\n",
            self.url,
            self.ca_file.display()
        )
    }

    /// Starts a receiver whose certificate is signed by a new CA written to `dir/ca.pem`;
    /// the n-th request gets `statuses[n]` (the last one repeated).
    pub fn start(dir: &Path, statuses: &[u16]) -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "breakglass test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        let statuses = statuses.to_vec();
        std::thread::spawn(move || {
            let mut n = 0usize;
            for stream in listener.incoming() {
                let Ok(tcp) = stream else { continue };
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                // A client that refused the certificate ends the handshake: no request.
                let Some(body) = read_request(&mut tls) else {
                    continue;
                };
                let status = statuses[n.min(statuses.len() - 1)];
                n += 1;
                if let Ok(v) = serde_json::from_slice(&body) {
                    kept.lock().unwrap().push(v);
                }
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                );
                let _ = tls.write_all(reply.as_bytes());
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        });
        Self {
            url: format!("https://127.0.0.1:{port}/hook/T000-SECRET-PATH"),
            ca_file,
            bodies,
        }
    }

    /// The JSON bodies received so far, in order.
    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().unwrap().clone()
    }
}

/// One request's body (by its content-length), or `None` when the connection ended first.
fn read_request(stream: &mut impl Read) -> Option<Vec<u8>> {
    let mut reader = BufReader::new(stream);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}
