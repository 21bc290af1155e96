//! SIP over TLS on GW2's outside (RFC 3261 section 26.3.1, the paper's confidentiality level 2):
//! the server configuration of the `sip_tls` listeners, and the client configuration GW2 uses
//! toward `outside_next_hop` with `outside_transport = "tls"`.
//!
//! SIP peers still speak TLS 1.2, so both 1.2 and 1.3 are offered here, with rustls' default
//! cipher suites (AEAD only, forward secrecy only). The GW1-GW2 tunnel stays TLS 1.3 only
//! (`live::tunnel`). GW2 presents the certificate chain and key of `sip_tls_cert` and
//! `sip_tls_key`; it asks no client certificate.

use anyhow::{anyhow, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::Path;
use std::sync::Arc;

fn certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("{}: no certificate", path.display()));
    }
    Ok(certs)
}

fn key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| anyhow!("{}: {e}", path.display()))
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The server configuration of GW2's SIP TLS listeners, from PEM files.
pub fn server_config(cert: &Path, key_file: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .with_no_client_auth()
        .with_single_cert(certs(cert)?, key(key_file)?)
        .map_err(|e| anyhow!("{} and {}: {e}", cert.display(), key_file.display()))?;
    Ok(Arc::new(cfg))
}

/// The client configuration toward the outside next hop: its certificate verified against
/// the CAs of `ca` (and the name the connection asks for), with a client certificate when
/// `identity` names one (mutual TLS with a provider).
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for c in certs(ca)? {
        roots.add(c).map_err(|e| anyhow!("{}: {e}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .with_root_certificates(roots);
    let cfg = match identity {
        Some((cert, key_file)) => builder
            .with_client_auth_cert(certs(cert)?, key(key_file)?)
            .map_err(|e| anyhow!("{} and {}: {e}", cert.display(), key_file.display()))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn loads_a_pki_certificate_and_refuses_a_mismatched_key() {
        let dir = std::env::temp_dir().join(format!("sgw-sip-tls-{}", std::process::id()));
        crate::pki::ephemeral_pki()
            .unwrap()
            .write_dir(&dir, true)
            .unwrap();
        let cfg = server_config(&dir.join("gw2.pem"), &dir.join("gw2.key")).unwrap();
        assert!(cfg.alpn_protocols.is_empty());
        let err = server_config(&dir.join("gw2.pem"), &dir.join("gw1.key")).unwrap_err();
        assert!(err.to_string().contains("gw1.key"), "{err}");
        let err = server_config(&dir.join("ca.key"), &dir.join("gw2.key")).unwrap_err();
        assert!(err.to_string().contains("no certificate"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
