//! The shared client's TLS set-up: certificates are verified, and TLS secrets go
//! to the file `SSLKEYLOGFILE` names.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::client_builder;

/// An HTTPS server for `localhost` speaking only TLS `version`, with a fresh
/// self-signed certificate, answering every connection's first request with
/// `200 ok`. Returns its port and the certificate, for the client to trust.
async fn https_server(
    version: &'static rustls::SupportedProtocolVersion,
) -> (u16, CertificateDer<'static>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("a certificate");
    let cert = generated.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        generated.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_protocol_versions(&[version])
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("a server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, cert)
}

#[tokio::test]
async fn sslkeylogfile_gets_the_secrets_and_certificates_are_still_verified() {
    let (port, cert) = https_server(&rustls::version::TLS13).await;
    let (port_12, cert_12) = https_server(&rustls::version::TLS12).await;
    let url = format!("https://localhost:{port}/");

    // Without the certificate among the roots the server is refused: logging keys
    // changes nothing about verification.
    let untrusting = client_builder().build().expect("a client");
    assert!(untrusting.get(&url).send().await.is_err());

    let dir = tempfile::tempdir().expect("a temp dir");
    let log = dir.path().join("keys.log");
    // The variable is read when the client is built. Other tests of this process
    // do not read it (the shared client may be built at any time, and would at
    // worst log into this file too).
    std::env::set_var("SSLKEYLOGFILE", &log);
    let built = client_builder()
        .tls_certs_merge(
            [&cert, &cert_12].map(|c| reqwest::Certificate::from_der(c).expect("a certificate")),
        )
        .build();
    std::env::remove_var("SSLKEYLOGFILE");
    let client = built.expect("a client");
    let response = client.get(&url).send().await.expect("an answer");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().await.expect("a body"), "ok");
    let url_12 = format!("https://localhost:{port_12}/");
    let response = client.get(&url_12).send().await.expect("an answer");
    assert_eq!(response.status().as_u16(), 200);

    let written = std::fs::read_to_string(&log).expect("the key log was written");
    // TLS 1.3 secrets, one line per secret.
    assert!(
        written
            .lines()
            .any(|l| l.starts_with("CLIENT_HANDSHAKE_TRAFFIC_SECRET ")),
        "{written}"
    );
    assert!(
        written
            .lines()
            .any(|l| l.starts_with("CLIENT_TRAFFIC_SECRET_0 ")),
        "{written}"
    );
    // TLS 1.2 secrets are logged as CLIENT_RANDOM lines.
    assert!(
        written.lines().any(|l| l.starts_with("CLIENT_RANDOM ")),
        "{written}"
    );
}
