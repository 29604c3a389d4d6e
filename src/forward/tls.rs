//! rustls client configuration for SIEM connections: `siem.tls_ca` (PEM) or the webpki roots;
//! `siem.insecure_skip_verify` encrypts without authenticating the server. Builds configuration
//! only; connects nowhere.

use crate::config::siem::SiemCommon;
use crate::error::{Error, Result};
use std::sync::Arc;

pub fn client_config(siem: &SiemCommon) -> Result<Arc<rustls::ClientConfig>> {
    let provider = crate::tls::provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::failed(format!("TLS setup: {e}")))?;
    let config = if siem.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(crate::tls::no_verify(provider))
            .with_no_client_auth()
    } else {
        let roots = crate::tls::roots(siem.tls_ca.as_deref(), "siem.tls_ca")?;
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}
