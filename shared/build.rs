//! Writes Mozilla's root certificates (the `webpki-root-certs` crate) as PEM
//! bundles that `kiln::tls` compiles in: all of them
//! (`$OUT_DIR/mozilla-roots.pem`), and the five Amazon Trust Services roots
//! AWS's service endpoints chain to (`$OUT_DIR/amazon-roots.pem`).
//!
//! The AWS SDK's HTTP client takes trust anchors only as PEM; encoding them
//! here keeps that work out of every cold start.

use std::fmt::Write as _;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The subject names of Amazon Trust Services' roots: Amazon Root CA 1 to 4,
/// and the Starfield Services root that cross-signs them for older clients.
const AMAZON_ROOTS: [&str; 5] = [
    "Amazon Root CA 1",
    "Amazon Root CA 2",
    "Amazon Root CA 3",
    "Amazon Root CA 4",
    "Starfield Services Root Certificate Authority - G2",
];

fn main() {
    let all = webpki_root_certs::TLS_SERVER_ROOT_CERTS;
    write_pem("mozilla-roots.pem", all.iter().map(|c| c.as_ref()));

    // A root is self-signed, so its subject's common name appears in its DER
    // bytes (as subject and issuer); no other root carries these names.
    let amazon: Vec<&[u8]> = all
        .iter()
        .map(|c| c.as_ref())
        .filter(|der| {
            AMAZON_ROOTS
                .iter()
                .any(|name| contains_name(der, name.as_bytes()))
        })
        .collect();
    let found = AMAZON_ROOTS
        .iter()
        .filter(|name| amazon.iter().any(|der| contains_name(der, name.as_bytes())))
        .count();
    if found != AMAZON_ROOTS.len() || amazon.len() != AMAZON_ROOTS.len() {
        panic!(
            "webpki-root-certs no longer holds exactly the Amazon Trust Services roots {AMAZON_ROOTS:?} \
             ({} certificates matched): review kiln::tls before upgrading it",
            amazon.len()
        );
    }
    write_pem("amazon-roots.pem", amazon.into_iter());
    println!("cargo::rerun-if-changed=build.rs");
}

/// Whether `der` holds `name` as a complete string value: the name's bytes
/// preceded by their one-byte DER length, so "Amazon Root CA 1" does not
/// also match a longer name that starts with it.
fn contains_name(der: &[u8], name: &[u8]) -> bool {
    der.windows(name.len() + 1)
        .any(|w| usize::from(w[0]) == name.len() && &w[1..] == name)
}

fn write_pem<'a>(file: &str, certificates: impl Iterator<Item = &'a [u8]>) {
    let mut pem = String::new();
    for certificate in certificates {
        let encoded = STANDARD.encode(certificate);
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in encoded.as_bytes().chunks(64) {
            // base64 output is ASCII, so every chunk is valid UTF-8.
            let line = String::from_utf8_lossy(line);
            let _ = writeln!(pem, "{line}");
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    if let Err(err) = std::fs::write(out_dir.join(file), pem) {
        panic!("cannot write {file} to {}: {err}", out_dir.display());
    }
}
