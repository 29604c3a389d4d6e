//! rustls pieces every client of kasm-db shares (PostgreSQL, SIEM sinks): the crypto provider,
//! root certificate stores (a PEM file, else the webpki roots), and the "encrypt but do not
//! authenticate" verifier behind libpq's `require` and the SIEM's `insecure_skip_verify` — it
//! still checks handshake signatures. Builds configuration only; connects nowhere.

use crate::error::{Error, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The certificates of the PEM file at `pem` (the config key `what` names it in errors), or the
/// webpki roots when no file is given.
pub fn roots(pem: Option<&Path>, what: &str) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    match pem {
        Some(path) => {
            let bad =
                |e: &dyn std::fmt::Display| Error::usage(format!("{what} {}: {e}", path.display()));
            let text = std::fs::read(path)
                .map_err(|e| Error::usage(format!("cannot read {what} {}: {e}", path.display())))?;
            for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&text) {
                let cert: CertificateDer<'static> = cert.map_err(|e| bad(&e))?;
                roots.add(cert).map_err(|e| bad(&e))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(roots)
}

/// A verifier that accepts any certificate (encrypted, not authenticated).
pub fn no_verify(provider: Arc<CryptoProvider>) -> Arc<dyn ServerCertVerifier> {
    Arc::new(NoVerify(provider))
}

/// Encrypted, not authenticated. Handshake signatures are still checked.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
