//! TLS options made into what makes connections: the PEM files read and
//! checked (each problem an [`Error::Tls`] naming the file), and the
//! rustls client configuration.

use std::{path::Path, sync::Arc};

use lapin::tcp::{RustlsConnector, RustlsConnectorConfig};
use rustls::{
    ClientConfig, RootCertStore,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
};

use super::{Tls, tls_error, tls_error_with};
use crate::Error;

impl Tls {
    /// Reads the files and builds what makes TLS connections: done when a
    /// client connects or a server binds (to fail before any connection),
    /// and again for every connection (to pick up renewed files).
    ///
    /// # Errors
    /// [`Error::Tls`] naming the file and what is wrong with it: missing,
    /// unreadable, not PEM, holding no certificate or no key, an encrypted
    /// key, a key that is not the certificate's.
    pub(crate) fn connector(&self) -> Result<RustlsConnector, Error> {
        let identity = match (&self.options.cert_file, &self.options.key_file) {
            (Some(cert), Some(key)) => Some(identity(cert, key)?),
            _ => None,
        };
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|error| tls_error_with(format!("{error}"), error))?;
        let builder = if self.skips_verification() {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
        } else if let Some(ca_file) = &self.options.ca_file {
            builder.with_root_certificates(roots(ca_file)?)
        } else {
            // The system's trusted CAs, as lapin does by default.
            let config = RustlsConnectorConfig::new_with_platform_verifier();
            let connector = match identity {
                Some((certs, key)) => config.connector_with_single_cert(certs, key),
                None => config.connector_with_no_client_auth(),
            };
            return connector.map_err(|error| {
                tls_error_with(
                    format!("cannot use the system's trusted CAs: {error}"),
                    error,
                )
            });
        };
        let config = match identity {
            Some((certs, key)) => builder
                .with_client_auth_cert(certs, key)
                .map_err(|error| tls_error_with(format!("{error}"), error))?,
            None => builder.with_no_client_auth(),
        };
        Ok(RustlsConnector::from(config))
    }
}

/// The crypto provider: the process's default if one is installed, else
/// the one lapin's TLS is built with.
fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// The CAs of `ca_file`.
fn roots(ca_file: &Path) -> Result<RootCertStore, Error> {
    let certs = certificates("cacertfile", ca_file)?;
    let mut roots = RootCertStore::empty();
    let (_, ignored) = roots.add_parsable_certificates(certs);
    if roots.is_empty() {
        return Err(tls_error(format!(
            "cacertfile '{}': no certificate in it can be a CA (they do not parse)",
            ca_file.display()
        )));
    }
    if ignored > 0 {
        tracing::warn!(
            "cacertfile '{}': {ignored} certificate(s) in it do not parse and are ignored",
            ca_file.display()
        );
    }
    Ok(roots)
}

/// The client certificate chain of `cert` and its key from `key`, checked
/// to belong together.
fn identity(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
    let certs = certificates("certfile", cert)?;
    let bytes = read("keyfile", key)?;
    let labels = pem_labels(&bytes);
    let private_key = match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(private_key) => private_key,
        Err(_) if labels.is_empty() => return Err(not_pem("keyfile", key)),
        Err(_) if labels.iter().any(|label| label == "ENCRYPTED PRIVATE KEY") => {
            return Err(tls_error(format!(
                "keyfile '{}': the key is encrypted; give it unencrypted (openssl pkey -in {0} \
                 -out PLAIN.key), readable only by this service",
                key.display()
            )));
        }
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            return Err(tls_error(format!(
                "keyfile '{}': no private key in it (it holds: {})",
                key.display(),
                labels.join(", ")
            )));
        }
        Err(error) => {
            return Err(tls_error_with(
                format!(
                    "keyfile '{}': the key does not decode: {error}",
                    key.display()
                ),
                error,
            ));
        }
    };
    match rustls::sign::CertifiedKey::from_der(certs.clone(), private_key.clone_key(), &provider())
    {
        Ok(_) => Ok((certs, private_key)),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(tls_error(format!(
                "keyfile '{}' is not the key of the certificate in certfile '{}'",
                key.display(),
                cert.display()
            )))
        }
        Err(rustls::Error::InvalidCertificate(problem)) => Err(tls_error(format!(
            "certfile '{}': the certificate does not parse ({problem:?})",
            cert.display()
        ))),
        Err(error) => Err(tls_error_with(
            format!("keyfile '{}': {error}", key.display()),
            error,
        )),
    }
}

/// The certificates of the PEM file `path`, named `param` in messages.
fn certificates(param: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bytes = read(param, path)?;
    let labels = pem_labels(&bytes);
    if labels.is_empty() {
        return Err(not_pem(param, path));
    }
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| {
            tls_error_with(
                format!(
                    "{param} '{}': a PEM block does not decode: {error}",
                    path.display()
                ),
                error,
            )
        })?;
    if certs.is_empty() {
        return Err(tls_error(format!(
            "{param} '{}': no certificate in it (it holds: {})",
            path.display(),
            labels.join(", ")
        )));
    }
    Ok(certs)
}

/// The contents of `path`, named `param` in messages.
fn read(param: &str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|error| {
        let what = match error.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_owned(),
            _ => format!("cannot read it: {error}"),
        };
        tls_error_with(format!("{param} '{}': {what}", path.display()), error)
    })
}

/// The error for a file without a PEM block.
fn not_pem(param: &str, path: &Path) -> Error {
    tls_error(format!(
        "{param} '{}': not PEM (no -----BEGIN line); give it in PEM form (DER converts with \
         openssl x509 -inform der, or openssl pkey -inform der for a key)",
        path.display()
    ))
}

/// The labels of the PEM blocks in `bytes` (`CERTIFICATE`, `PRIVATE
/// KEY`, …), in order.
fn pem_labels(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|line| {
            let label = line.trim().strip_prefix("-----BEGIN ")?;
            Some(label.strip_suffix("-----")?.to_owned())
        })
        .collect()
}

/// `verify=verify_none`: accepts any certificate for any name, but still
/// checks that the broker holds the key of the certificate it presented
/// (the handshake's signatures), so the connection is at least encrypted
/// to whoever answered.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TlsOptions;

    #[test]
    fn pem_labels_say_what_a_file_holds() {
        let text = b"junk\n-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n\
                     -----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n";
        assert_eq!(pem_labels(text), ["CERTIFICATE", "PRIVATE KEY"]);
        assert!(pem_labels(b"\x30\x82\x01").is_empty());
    }

    #[test]
    fn files_are_named_with_what_is_wrong() {
        let dir = std::env::temp_dir().join(format!("rabbit-rpc-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, b"\x30\x82 not pem").unwrap();
        let key_only = dir.join("key-only.pem");
        std::fs::write(
            &key_only,
            b"-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let missing = dir.join("missing.pem");
        for (ca, says) in [
            (&missing, "no such file"),
            (&dir, "cannot read it"),
            (&garbage, "not PEM"),
            (&key_only, "no certificate in it (it holds: PRIVATE KEY)"),
        ] {
            let tls = Tls::resolve(true, "h", &TlsOptions::new().ca_file(ca), None)
                .unwrap()
                .unwrap();
            let error = tls.connector().unwrap_err().to_string();
            assert!(
                error.contains(&format!("cacertfile '{}': {says}", ca.display())),
                "{error}"
            );
        }
        // An encrypted key is named as such (the certificate is only
        // decoded from PEM before the key is read).
        let cert = dir.join("cert.pem");
        std::fs::write(
            &cert,
            b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let encrypted = dir.join("encrypted.key");
        std::fs::write(
            &encrypted,
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAA==\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap();
        let options = TlsOptions::new().client_cert(&cert, &encrypted);
        let tls = Tls::resolve(true, "h", &options, None).unwrap().unwrap();
        let error = tls.connector().unwrap_err().to_string();
        assert!(
            error.contains(&format!(
                "keyfile '{}': the key is encrypted; give it unencrypted",
                encrypted.display()
            )),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
