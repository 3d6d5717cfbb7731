//! TLS of a node's port and of the clients that call it.
//!
//! With `tls_cert` and `tls_key` a node serves HTTPS only: [`TlsListener`] accepts
//! TCP connections and runs each handshake in a task of its own (bounded by
//! [`HANDSHAKE_TIMEOUT`]), so a slow or silent client holds up nobody else. With
//! `tls_ca` the node's peer client, and its `--join` request, trust that CA (and
//! nothing else). With all three (peer mTLS) the listener also asks for an
//! optional client certificate of that CA, the peer client presents the node's
//! own, and a request over a verified connection counts as a peer's
//! ([`client_verified`]). The CLI's `--ca-cert` trusts a CA for the client side.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections whose handshake is done, waiting for the HTTP server to take them.
const ACCEPTED_QUEUE: usize = 64;

/// Reads the certificates of the PEM file `path`, given as the setting `setting`.
pub fn read_certs(setting: &str, path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| {
            format!(
                "{setting}: cannot read certificates from {}",
                path.display()
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!(
            "{setting}: {} holds no certificate (expected PEM blocks `BEGIN CERTIFICATE`)",
            path.display()
        );
    }
    Ok(certs)
}

/// Reads the private key of the PEM file `path`, given as the setting `setting`.
pub fn read_key(setting: &str, path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).with_context(|| {
        format!(
            "{setting}: cannot read a private key (PEM `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`) from {}",
            path.display()
        )
    })
}

/// The roots of a client that trusts only the CA certificates of `path`.
pub fn roots(setting: &str, path: &Path) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(setting, path)? {
        roots.add(cert).with_context(|| {
            format!(
                "{setting}: {} is not a usable CA certificate",
                path.display()
            )
        })?;
    }
    Ok(roots)
}

/// The server side: this node's certificate chain and key; with `client_ca`, a
/// client may present a certificate, which must then chain to that CA (peer
/// mTLS); clients without one (the CLI, browsers) are still served.
pub fn acceptor(cert: &Path, key: &Path, client_ca: Option<&Path>) -> anyhow::Result<TlsAcceptor> {
    let chain = read_certs("tls_cert", cert)?;
    let private = read_key("tls_key", key)?;
    let builder = rustls::ServerConfig::builder();
    let builder = match client_ca {
        Some(ca) => {
            let verifier =
                rustls::server::WebPkiClientVerifier::builder(Arc::new(roots("tls_ca", ca)?))
                    .allow_unauthenticated()
                    .build()
                    .with_context(|| {
                        format!("tls_ca: {} cannot verify client certificates", ca.display())
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, private).with_context(|| {
        format!(
            "tls_cert {} and tls_key {} do not make a usable pair",
            cert.display(),
            key.display()
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A client configuration that trusts only the CA certificates of `ca`.
pub fn client_config(setting: &str, ca: &Path) -> anyhow::Result<rustls::ClientConfig> {
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots(setting, ca)?)
        .with_no_client_auth())
}

/// The client configuration of calls to peers: trusts only `ca` and presents
/// this node's certificate (`cert`, `key`) as its client certificate.
pub fn peer_client_config(
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> anyhow::Result<rustls::ClientConfig> {
    rustls::ClientConfig::builder()
        .with_root_certificates(roots("tls_ca", ca)?)
        .with_client_auth_cert(read_certs("tls_cert", cert)?, read_key("tls_key", key)?)
        .with_context(|| {
            format!(
                "tls_cert {} and tls_key {} do not make a usable client certificate",
                cert.display(),
                key.display()
            )
        })
}

/// Whether the client of `stream` presented a certificate (which the verifier
/// checked during the handshake, or the handshake would have failed).
pub fn client_verified(stream: &TlsStream<TcpStream>) -> bool {
    stream.get_ref().1.peer_certificates().is_some()
}

/// A listener that hands out TLS streams whose handshake is done.
pub struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `tcp` and shakes hands with `acceptor`, until the listener is
    /// dropped.
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, accepted) = mpsc::channel(ACCEPTED_QUEUE);
        tokio::spawn(accept_loop(tcp, acceptor, tx));
        Ok(TlsListener { accepted, local })
    }
}

/// Accepts connections and starts a handshake task for each; ends when the
/// [`TlsListener`] is dropped.
async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let accepted = tokio::select! {
            _ = tx.closed() => return,
            accepted = tcp.accept() => accepted,
        };
        let (socket, remote) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Out of file descriptors and the like: as axum's own listener does,
                // wait a little rather than spin.
                warn!(error = %err, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = socket.set_nodelay(true);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                Ok(Ok(stream)) => {
                    let _ = tx.send((stream, remote)).await;
                }
                Ok(Err(err)) => {
                    debug!(client = %remote, error = %err, "TLS handshake failed")
                }
                Err(_) => debug!(client = %remote, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(pair) => pair,
            // The accept loop ends only once this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
