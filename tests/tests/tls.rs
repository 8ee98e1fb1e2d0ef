//! The trust store, over real TLS: a local HTTPS server whose certificate a
//! private CA signed (`fixtures/tls/`, made for these tests). The AWS SDK
//! client kiln builds and the GitHub/Slack HTTP client must both refuse it
//! with kiln's default roots (proof that neither falls back to the system's
//! store) and accept it once the CA is added through `EXTRA_CA_CERTS_FILE`.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_sns::config::{Credentials, Region};
use kiln::Env;
use kiln::aws::LazySdkConfig;
use kiln::tls::{AwsRoots, EXTRA_CA_CERTS_FILE, TrustedRoots};
use kiln_tests::fixtures::{fixture_bytes, fixtures_dir};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const PUBLISH_RESPONSE: &str = r#"<PublishResponse xmlns="https://sns.amazonaws.com/doc/2010-03-31/">
  <PublishResult><MessageId>9b3b5c0e-0000-4000-8000-000000000001</MessageId></PublishResult>
  <ResponseMetadata><RequestId>f187a3c1-0000-4000-8000-000000000002</RequestId></ResponseMetadata>
</PublishResponse>"#;

/// An HTTPS server on 127.0.0.1 that answers every request with an SNS
/// Publish response, counting the requests that got past the handshake.
struct PrivateCaServer {
    url: String,
    served: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PrivateCaServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn private_ca_server() -> PrivateCaServer {
    let certificates = vec![
        CertificateDer::from_pem_slice(&fixture_bytes("tls/server.pem")).unwrap(),
        CertificateDer::from_pem_slice(&fixture_bytes("tls/ca.pem")).unwrap(),
    ];
    let key = PrivateKeyDer::from_pem_slice(&fixture_bytes("tls/server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .unwrap();
    let url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let served = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&served);
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                // A refused handshake ends here: the client hung up.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                // Headers, then as much body as Content-Length says.
                loop {
                    let Ok(n) = tls.read(&mut buffer).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buffer[..n]);
                    if let Some(end) = find(&request, b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{PUBLISH_RESPONSE}",
                    PUBLISH_RESPONSE.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    PrivateCaServer { url, served, task }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Roots with the private CA added the way a deployment adds it.
fn roots_with_private_ca() -> TrustedRoots {
    let path = fixtures_dir().join("tls/ca.pem");
    let env = Env::from_pairs([(EXTRA_CA_CERTS_FILE, path.to_str().unwrap())]);
    let roots = TrustedRoots::from_env(&env).unwrap();
    assert_eq!(roots.extra_count(), 1);
    roots
}

/// Publishes once through an SNS client built from kiln's lazy SDK
/// configuration, against `server`.
async fn publish_through_sdk(
    roots: &TrustedRoots,
    aws: AwsRoots,
    server: &PrivateCaServer,
) -> Result<String, String> {
    let sdk = LazySdkConfig::new(roots, aws).unwrap();
    let config = aws_sdk_sns::config::Builder::from(sdk.get().await)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::for_tests())
        .endpoint_url(&server.url)
        // A refused certificate is retried as a dispatch failure; once is
        // enough here.
        .retry_config(aws_sdk_sns::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_sns::Client::from_conf(config)
        .publish()
        .topic_arn("arn:aws:sns:us-east-1:123456789012:kiln-tls-test")
        .message("hello")
        .send()
        .await
        .map(|output| output.message_id.unwrap_or_default())
        .map_err(|err| kiln::aws::error_chain(&err))
}

#[tokio::test]
async fn the_sdk_refuses_a_private_ca_with_the_compiled_in_roots() {
    let server = private_ca_server().await;
    for aws in [AwsRoots::Amazon, AwsRoots::Mozilla] {
        let error = publish_through_sdk(&TrustedRoots::mozilla(), aws, &server)
            .await
            .unwrap_err();
        assert!(
            error.contains("invalid peer certificate: UnknownIssuer"),
            "{aws:?}: {error}"
        );
    }
    assert_eq!(server.served.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_sdk_trusts_the_ca_in_extra_ca_certs_file() {
    let server = private_ca_server().await;
    let message_id = publish_through_sdk(&roots_with_private_ca(), AwsRoots::Amazon, &server)
        .await
        .unwrap();
    assert_eq!(message_id, "9b3b5c0e-0000-4000-8000-000000000001");
    assert_eq!(server.served.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_http_client_refuses_a_private_ca_then_trusts_it_when_added() {
    let server = private_ca_server().await;
    let client = kiln::http::client_builder(&TrustedRoots::mozilla())
        .unwrap()
        .build()
        .unwrap();
    let error = client.get(&server.url).send().await.unwrap_err();
    let chain = kiln::aws::error_chain(&error);
    assert!(
        chain.contains("invalid peer certificate: UnknownIssuer"),
        "{chain}"
    );
    assert_eq!(server.served.load(Ordering::SeqCst), 0);

    let client = kiln::http::client_builder(&roots_with_private_ca())
        .unwrap()
        .build()
        .unwrap();
    let response = client.get(&server.url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("<MessageId>"));
    assert_eq!(server.served.load(Ordering::SeqCst), 1);
}
