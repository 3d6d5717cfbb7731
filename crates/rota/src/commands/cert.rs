//! `rota cert`: a private CA and node certificates for a test cluster.
//!
//! `rota cert ca --dir DIR` writes `ca.pem` and `ca-key.pem`; `rota cert node
//! --dir DIR --name NAME` writes `NAME.pem` and `NAME-key.pem`, signed by the CA
//! in `DIR`, good as a server certificate and as a client certificate. Keys are
//! PKCS#8 PEM files readable by their owner only. The CA is rebuilt from its key
//! and its fixed name on every `node` call, so no state but the two files is kept.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use base64::Engine as _;
use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// The subject of every CA `rota cert ca` makes.
const CA_NAME: &str = "rota test cluster CA";

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Create a CA (`ca.pem`, `ca-key.pem`) in a directory.
    Ca {
        /// Where to write the files; created if missing.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Create a node certificate (`NAME.pem`, `NAME-key.pem`) signed by the CA in
    /// the directory, for both serving and calling peers.
    Node(NodeArgs),
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The directory of the CA; the node's files are written there too.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The file name of the certificate and its common name.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// A host name or IP address the certificate is valid for (repeatable)
    /// [default: 127.0.0.1 and localhost].
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
}

pub fn run(cmd: CertCommand) -> anyhow::Result<()> {
    match cmd {
        CertCommand::Ca { dir } => {
            let written = create_ca(&dir)?;
            for path in written {
                println!("{}", path.display());
            }
        }
        CertCommand::Node(args) => {
            let hosts = if args.hosts.is_empty() {
                vec!["127.0.0.1".to_string(), "localhost".to_string()]
            } else {
                args.hosts
            };
            for path in create_node(&args.dir, &args.name, &hosts)? {
                println!("{}", path.display());
            }
        }
    }
    Ok(())
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// Writes `dir/ca.pem` and `dir/ca-key.pem`; answers their paths.
pub fn create_ca(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cert_path = dir.join("ca.pem");
    let key_path = dir.join("ca-key.pem");
    for path in [&cert_path, &key_path] {
        if path.exists() {
            bail!(
                "{} exists already; remove it to make a new CA",
                path.display()
            );
        }
    }
    let key = KeyPair::generate().context("cannot generate the CA key")?;
    let cert = ca_params()
        .self_signed(&key)
        .context("cannot sign the CA certificate")?;
    write_private(&key_path, &pem("PRIVATE KEY", &key.serialize_der()))?;
    write_public(&cert_path, &pem("CERTIFICATE", cert.der()))?;
    Ok(vec![cert_path, key_path])
}

/// Writes `dir/NAME.pem` and `dir/NAME-key.pem`, signed by the CA in `dir`;
/// answers their paths.
pub fn create_node(dir: &Path, name: &str, hosts: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        || name.starts_with('.')
    {
        bail!("--name {name:?}: use letters, digits, '-', '_' and '.' (it names the files)");
    }
    if name == "ca" {
        bail!("--name ca: taken by the CA's own files");
    }
    let ca_key_path = dir.join("ca-key.pem");
    let ca_der = crate::tls::read_key("the CA key", &ca_key_path)
        .with_context(|| format!("run `rota cert ca --dir {}` first", dir.display()))?;
    let ca_key = KeyPair::try_from(ca_der.secret_der()).with_context(|| {
        format!(
            "{} is not a key `rota cert ca` wrote",
            ca_key_path.display()
        )
    })?;
    let issuer = Issuer::new(ca_params(), ca_key);

    let mut params = CertificateParams::new(hosts.to_vec())
        .with_context(|| format!("--host {hosts:?}: each must be an IP address or a DNS name"))?;
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, name);
    params.distinguished_name = subject;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().context("cannot generate the node key")?;
    let cert = params
        .signed_by(&key, &issuer)
        .context("cannot sign the node certificate")?;
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}-key.pem"));
    write_private(&key_path, &pem("PRIVATE KEY", &key.serialize_der()))?;
    write_public(&cert_path, &pem("CERTIFICATE", cert.der()))?;
    Ok(vec![cert_path, key_path])
}

/// `der` as a PEM block labelled `label`, base64 in lines of 64 characters.
fn pem(label: &str, der: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        // Base64 is ASCII.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn write_public(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes a key readable by its owner only (from its creation on, on Unix).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    fn verify(ca: &Path, cert: &Path, host: &str) -> Result<(), rustls::Error> {
        let roots = crate::tls::roots("ca", ca).expect("roots");
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .expect("verifier");
        let chain: Vec<CertificateDer> = CertificateDer::pem_file_iter(cert)
            .expect("pem")
            .collect::<Result<_, _>>()
            .expect("certs");
        use rustls::client::danger::ServerCertVerifier;
        verifier
            .verify_server_cert(
                &chain[0],
                &chain[1..],
                &ServerName::try_from(host.to_string()).expect("name"),
                &[],
                UnixTime::now(),
            )
            .map(|_| ())
    }

    #[test]
    fn a_node_certificate_chains_to_its_ca_for_its_hosts_only() {
        let dir = tempfile::tempdir().unwrap();
        create_ca(dir.path()).unwrap();
        create_node(dir.path(), "n1", &["127.0.0.1".into(), "localhost".into()]).unwrap();
        let ca = dir.path().join("ca.pem");
        let cert = dir.path().join("n1.pem");
        verify(&ca, &cert, "127.0.0.1").expect("the IP SAN");
        verify(&ca, &cert, "localhost").expect("the DNS SAN");
        assert!(verify(&ca, &cert, "10.0.0.1").is_err());
        crate::tls::read_key("k", &dir.path().join("n1-key.pem")).expect("the key reads back");
    }

    #[test]
    fn a_certificate_of_another_ca_does_not_verify() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        create_ca(one.path()).unwrap();
        create_ca(two.path()).unwrap();
        create_node(two.path(), "n", &["127.0.0.1".into()]).unwrap();
        let err = verify(
            &one.path().join("ca.pem"),
            &two.path().join("n.pem"),
            "127.0.0.1",
        )
        .unwrap_err();
        assert!(err.to_string().contains("certificate"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn keys_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        create_ca(dir.path()).unwrap();
        create_node(dir.path(), "n", &["localhost".into()]).unwrap();
        for key in ["ca-key.pem", "n-key.pem"] {
            let mode = std::fs::metadata(dir.path().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }

    #[test]
    fn errors_name_the_file_and_the_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let err = create_node(dir.path(), "n", &["localhost".into()]).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("ca-key.pem") && text.contains("rota cert ca"),
            "{text}"
        );
        create_ca(dir.path()).unwrap();
        let err = create_ca(dir.path()).unwrap_err().to_string();
        assert!(err.contains("ca.pem") && err.contains("exists"), "{err}");
        let err = create_node(dir.path(), "../x", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--name"), "{err}");
    }

    #[test]
    fn pem_lines_are_64_characters() {
        let text = pem("CERTIFICATE", &[7u8; 100]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines.last(), Some(&"-----END CERTIFICATE-----"));
        let back = CertificateDer::from_pem_slice(text.as_bytes()).unwrap();
        assert_eq!(back.as_ref(), &[7u8; 100]);
    }
}
