//! SIP over TLS on GW2's outside (RFC 3261 section 26.3.1, the paper's confidentiality level 2):
//! the server configuration of the `sip_tls` listeners.
//!
//! SIP peers still speak TLS 1.2, so both 1.2 and 1.3 are offered here, with rustls' default
//! cipher suites (AEAD only, forward secrecy only). The GW1-GW2 tunnel stays TLS 1.3 only
//! (`live::tunnel`). GW2 presents the certificate chain and key of `sip_tls_cert` and
//! `sip_tls_key`; it asks no client certificate.

use anyhow::{anyhow, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::path::Path;
use std::sync::Arc;

/// The server configuration of GW2's SIP TLS listeners, from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let cert_pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    let key_pem = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(anyhow!("{}: no certificate", cert.display()));
    }
    let key_der =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| anyhow!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| anyhow!("{} and {}: {e}", cert.display(), key.display()))?;
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
