//! Writes Mozilla's root certificates (the `webpki-root-certs` crate) as one
//! PEM bundle, `$OUT_DIR/mozilla-roots.pem`, which `kiln::tls` compiles in.
//!
//! The AWS SDK's HTTP client takes extra trust anchors only as PEM; encoding
//! them here keeps that work out of every cold start.

use std::fmt::Write as _;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

fn main() {
    let mut pem = String::new();
    for certificate in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        let encoded = STANDARD.encode(certificate.as_ref());
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in encoded.as_bytes().chunks(64) {
            // base64 output is ASCII, so every chunk is valid UTF-8.
            let line = String::from_utf8_lossy(line);
            let _ = writeln!(pem, "{line}");
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    if let Err(err) = std::fs::write(out_dir.join("mozilla-roots.pem"), pem) {
        panic!(
            "cannot write mozilla-roots.pem to {}: {err}",
            out_dir.display()
        );
    }
    println!("cargo::rerun-if-changed=build.rs");
}
