//! The deployment's private PKI: a CA (ECDSA P-256) and the certificates of the two gateways,
//! made with rcgen so a deployment needs no other tool (`sgw pki init DIR`), or made in memory
//! for the built-in demo ([`ephemeral_pki`]). Also loads PEM files into rustls types for the
//! tunnel ([`TlsIdentity`]).
//!
//! GW2's certificate is valid for server and client authentication and names GW2 as GW1 dials
//! it (DNS names or IP addresses); GW1's is for client authentication only. Private keys are
//! written with mode 0600, and nothing is overwritten unless asked.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// File names `sgw pki init` writes, in the order it writes them.
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca.key";
pub const GW2_CERT_FILE: &str = "gw2.pem";
pub const GW2_KEY_FILE: &str = "gw2.key";
pub const GW1_CERT_FILE: &str = "gw1.pem";
pub const GW1_KEY_FILE: &str = "gw1.key";

/// Names GW2's certificate carries when none are given: what GW1 dials on one machine.
pub const DEFAULT_GW2_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// The DNS name in GW1's certificate (GW2 does not check it; it identifies the role in logs).
pub const GW1_NAME: &str = "gw1.sgw.invalid";
/// Validity of the CA certificate.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// Validity of the gateways' certificates.
pub const LEAF_VALIDITY_DAYS: i64 = 825;
/// Most SANs in GW2's certificate.
pub const MAX_GW2_NAMES: usize = 64;

/// Why the PKI could not be made, written or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("invalid GW2 name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("{count} GW2 names, more than the limit of {MAX_GW2_NAMES}")]
    TooManyNames { count: usize },
    #[error("refusing to overwrite {} (use --force)", list_paths(.0))]
    Exists(Vec<PathBuf>),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Pem {
        what: String,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{what}: no certificate found")]
    NoCertificate { what: String },
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One certificate and its private key, PEM-encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A complete deployment PKI, in PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pki {
    pub ca: Identity,
    pub gw2: Identity,
    pub gw1: Identity,
}

/// What `sgw pki init` makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiOptions {
    /// DNS names and IP addresses in GW2's certificate: what GW1's configuration dials.
    pub gw2_names: Vec<String>,
}

impl Default for PkiOptions {
    fn default() -> Self {
        PkiOptions {
            gw2_names: DEFAULT_GW2_NAMES.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    // An hour of slack for clocks that are slightly behind.
    let start = now.saturating_sub(3600);
    let end = now.saturating_add(days.saturating_mul(86_400));
    if let (Ok(a), Ok(b)) = (
        time::OffsetDateTime::from_unix_timestamp(start),
        time::OffsetDateTime::from_unix_timestamp(end),
    ) {
        params.not_before = a;
        params.not_after = b;
    }
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "sgw");
    dn.push(DnType::CommonName, cn);
    dn
}

fn san(name: &str) -> Result<SanType, PkiError> {
    let invalid = |reason: &str| PkiError::InvalidName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let valid_dns = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*')
        });
    if !valid_dns {
        return Err(invalid("not an IP address or a DNS name"));
    }
    name.try_into()
        .map(SanType::DnsName)
        .map_err(|e| invalid(&e.to_string()))
}

fn key() -> Result<KeyPair, PkiError> {
    Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?)
}

/// Makes a fresh CA and the two gateways' certificates.
pub fn generate(opts: &PkiOptions) -> Result<Pki, PkiError> {
    if opts.gw2_names.len() > MAX_GW2_NAMES {
        return Err(PkiError::TooManyNames {
            count: opts.gw2_names.len(),
        });
    }
    let gw2_sans = opts
        .gw2_names
        .iter()
        .map(|n| san(n))
        .collect::<Result<Vec<_>, _>>()?;

    let ca_key = key()?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = name("sgw tunnel CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca, CA_VALIDITY_DAYS);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, &ca_key);

    let leaf = |cn: &str, sans: Vec<SanType>, ekus: Vec<ExtendedKeyUsagePurpose>| {
        let k = key()?;
        let mut p = CertificateParams::default();
        p.distinguished_name = name(cn);
        p.subject_alt_names = sans;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = ekus;
        p.use_authority_key_identifier_extension = true;
        validity(&mut p, LEAF_VALIDITY_DAYS);
        let cert = p.signed_by(&k, &issuer)?;
        Ok::<_, PkiError>(Identity {
            cert_pem: cert.pem(),
            key_pem: k.serialize_pem(),
        })
    };
    let gw2 = leaf(
        "sgw gw2",
        gw2_sans,
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    )?;
    let gw1 = leaf(
        "sgw gw1",
        vec![san(GW1_NAME)?],
        vec![ExtendedKeyUsagePurpose::ClientAuth],
    )?;
    Ok(Pki {
        ca: Identity {
            cert_pem: ca_cert.pem(),
            key_pem: ca_key.serialize_pem(),
        },
        gw2,
        gw1,
    })
}

/// An in-memory PKI for the built-in demo (`sgw run` with no arguments): GW2 named
/// `localhost`, `127.0.0.1` and `::1`. Nothing is written to disk.
pub fn ephemeral_pki() -> Result<Pki, PkiError> {
    generate(&PkiOptions::default())
}

impl Pki {
    /// The six files and their contents, keys marked.
    fn files(&self) -> [(&'static str, &str, bool); 6] {
        [
            (CA_CERT_FILE, &self.ca.cert_pem, false),
            (CA_KEY_FILE, &self.ca.key_pem, true),
            (GW2_CERT_FILE, &self.gw2.cert_pem, false),
            (GW2_KEY_FILE, &self.gw2.key_pem, true),
            (GW1_CERT_FILE, &self.gw1.cert_pem, false),
            (GW1_KEY_FILE, &self.gw1.key_pem, true),
        ]
    }

    /// Writes the PEM files into `dir` (created if missing). Without `force`, fails before
    /// writing anything if any of the files exists. Keys get mode 0600.
    pub fn write_dir(&self, dir: &Path, force: bool) -> Result<Vec<PathBuf>, PkiError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| PkiError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let files = self.files();
        if !force {
            let existing: Vec<PathBuf> = files
                .iter()
                .map(|(n, _, _)| dir.join(n))
                .filter(|p| p.symlink_metadata().is_ok())
                .collect();
            if !existing.is_empty() {
                return Err(PkiError::Exists(existing));
            }
        }
        let mut written = Vec::new();
        for (file, contents, secret) in files {
            let path = dir.join(file);
            write_file(&path, contents.as_bytes(), secret, force).map_err(io(&path))?;
            written.push(path);
        }
        Ok(written)
    }

    /// GW2's TLS identity (server and client auth), trusting this PKI's CA.
    pub fn gw2_tls(&self) -> Result<TlsIdentity, PkiError> {
        TlsIdentity::from_pem(&self.ca.cert_pem, &self.gw2.cert_pem, &self.gw2.key_pem)
    }

    /// GW1's TLS identity (client auth), trusting this PKI's CA.
    pub fn gw1_tls(&self) -> Result<TlsIdentity, PkiError> {
        TlsIdentity::from_pem(&self.ca.cert_pem, &self.gw1.cert_pem, &self.gw1.key_pem)
    }
}

fn write_file(path: &Path, contents: &[u8], secret: bool, force: bool) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut f = opts.open(path)?;
    // The mode above applies only to new files; an overwritten key is tightened too.
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(contents)?;
    f.sync_all()
}

/// `sgw pki init DIR`: generates and writes the PKI, returning the files written.
pub fn init(dir: &Path, opts: &PkiOptions, force: bool) -> Result<Vec<PathBuf>, PkiError> {
    // Check before spending time on key generation.
    if !force {
        let existing: Vec<PathBuf> = [
            CA_CERT_FILE,
            CA_KEY_FILE,
            GW2_CERT_FILE,
            GW2_KEY_FILE,
            GW1_CERT_FILE,
            GW1_KEY_FILE,
        ]
        .iter()
        .chain(crate::cdr::key_files().iter())
        .map(|n| dir.join(n))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect();
        if !existing.is_empty() {
            return Err(PkiError::Exists(existing));
        }
    }
    let mut written = generate(opts)?.write_dir(dir, force)?;
    // Each half's Ed25519 key for signing its call records (crate::cdr).
    let write =
        |path: &Path, contents: &[u8], secret: bool| write_file(path, contents, secret, force);
    written.extend(
        crate::cdr::write_keys(dir, &write).map_err(|e| PkiError::Io {
            path: dir.to_owned(),
            source: std::io::Error::other(e),
        })?,
    );
    Ok(written)
}

/// What one gateway needs for the tunnel's mutual TLS: the CA it trusts, its certificate chain
/// and its private key, as rustls types.
#[derive(Debug)]
pub struct TlsIdentity {
    pub ca: Vec<CertificateDer<'static>>,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        TlsIdentity {
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

fn certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| PkiError::Pem {
            what: what.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(PkiError::NoCertificate {
            what: what.to_owned(),
        });
    }
    Ok(certs)
}

impl TlsIdentity {
    /// From PEM text: CA certificate(s), the gateway's certificate chain (leaf first), its key.
    pub fn from_pem(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        Ok(TlsIdentity {
            ca: certs(ca_pem.as_bytes(), "CA certificate")?,
            chain: certs(cert_pem.as_bytes(), "certificate")?,
            key: PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|source| {
                PkiError::Pem {
                    what: "private key".to_owned(),
                    source,
                }
            })?,
        })
    }

    /// From PEM files, as named in the `[pki]` section of the configuration.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Self, PkiError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| PkiError::Io {
                path: p.to_owned(),
                source,
            })
        };
        let (ca_pem, cert_pem, key_pem) = (read(ca)?, read(cert)?, read(key)?);
        let with_path = |e: PkiError, p: &Path| match e {
            PkiError::Pem { what, source } => PkiError::Pem {
                what: format!("{} ({what})", p.display()),
                source,
            },
            PkiError::NoCertificate { what } => PkiError::NoCertificate {
                what: format!("{} ({what})", p.display()),
            },
            other => other,
        };
        Ok(TlsIdentity {
            ca: certs(ca_pem.as_bytes(), "CA certificate").map_err(|e| with_path(e, ca))?,
            chain: certs(cert_pem.as_bytes(), "certificate").map_err(|e| with_path(e, cert))?,
            key: PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|source| {
                PkiError::Pem {
                    what: format!("{} (private key)", key.display()),
                    source,
                }
            })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "sgw-pki-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn ephemeral_pki_loads_into_rustls_types() {
        let pki = ephemeral_pki().unwrap();
        assert!(pki.ca.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pki.gw2.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let gw2 = pki.gw2_tls().unwrap();
        let gw1 = pki.gw1_tls().unwrap();
        assert_eq!(gw2.ca, gw1.ca);
        assert_eq!(gw2.chain.len(), 1);
        assert_ne!(gw2.chain, gw1.chain);
        assert!(!format!("{:?}", pki.gw1).contains("PRIVATE KEY"));
    }

    #[test]
    fn invalid_gw2_names_are_refused() {
        for bad in ["", "a b", "x..y", "exa_mple.com", "gw2.example.net."] {
            let r = generate(&PkiOptions {
                gw2_names: vec![bad.to_owned()],
            });
            assert!(
                matches!(&r, Err(PkiError::InvalidName { name, .. }) if name == bad),
                "{bad:?}: {r:?}"
            );
        }
        let many = PkiOptions {
            gw2_names: (0..=MAX_GW2_NAMES).map(|i| format!("h{i}")).collect(),
        };
        assert!(matches!(
            generate(&many),
            Err(PkiError::TooManyNames { count: 65 })
        ));
    }

    #[test]
    fn init_writes_ten_files_keys_private_and_refuses_overwrite() {
        let dir = tmpdir("init");
        let opts = PkiOptions {
            gw2_names: vec!["gw2.example.net".into(), "192.0.2.7".into()],
        };
        let written = init(&dir, &opts, false).unwrap();
        // Six PEM files for the tunnel, and each half's record key pair (crate::cdr).
        assert_eq!(written.len(), 10);
        for half in [crate::cdr::GW2_KEY_FILE, crate::cdr::GW1_KEY_FILE] {
            crate::cdr::load_key(&dir.join(half)).unwrap();
        }
        for public in [crate::cdr::GW2_PUB_FILE, crate::cdr::GW1_PUB_FILE] {
            crate::cdr::load_public_key(&dir.join(public)).unwrap();
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in [
                CA_KEY_FILE,
                GW2_KEY_FILE,
                GW1_KEY_FILE,
                crate::cdr::GW2_KEY_FILE,
                crate::cdr::GW1_KEY_FILE,
            ] {
                let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{f}");
            }
        }
        let before = std::fs::read(dir.join(CA_CERT_FILE)).unwrap();
        match init(&dir, &opts, false) {
            Err(PkiError::Exists(paths)) => assert_eq!(paths.len(), 10),
            other => panic!("expected Exists, got {other:?}"),
        }
        assert_eq!(std::fs::read(dir.join(CA_CERT_FILE)).unwrap(), before);
        // One leftover file is enough to refuse.
        std::fs::remove_file(dir.join(CA_CERT_FILE)).unwrap();
        assert!(matches!(init(&dir, &opts, false), Err(PkiError::Exists(p)) if p.len() == 9));
        init(&dir, &opts, true).unwrap();
        assert_ne!(std::fs::read(dir.join(CA_CERT_FILE)).unwrap(), before);
        let id = TlsIdentity::load(
            &dir.join(CA_CERT_FILE),
            &dir.join(GW2_CERT_FILE),
            &dir.join(GW2_KEY_FILE),
        )
        .unwrap();
        assert_eq!(id.chain.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = tmpdir("load");
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let missing = dir.join("missing.pem");
        let e = TlsIdentity::load(&empty, &empty, &empty).unwrap_err();
        assert!(e.to_string().contains("empty.pem"), "{e}");
        let e = TlsIdentity::load(&missing, &empty, &empty).unwrap_err();
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
