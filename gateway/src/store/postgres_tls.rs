//! TLS to PostgreSQL, on the rustls (ring) the gateway's own listener uses — no OpenSSL.
//!
//! When it is on, and what it checks (`sslmode` in the connection URL, plus
//! `[storage] postgres_ca_file`):
//! - `sslmode=disable`: plaintext (a CA file with it is a configuration error).
//! - `sslmode=require`: TLS or no connection, and the server's certificate is **verified**
//!   against `postgres_ca_file` when set, else the public web roots (`webpki-roots`), host name
//!   or IP included. This is stricter than libpq's `require` (which encrypts without checking
//!   who answers): it is libpq's `verify-full`, which the `postgres` crate cannot spell.
//! - `sslmode=prefer` (the default when the URL says nothing): with `postgres_ca_file`, as
//!   `require` — TLS verified against it, or no connection (a "preferred" TLS would fall back
//!   to plaintext whenever someone in the path answers that the server has none); without
//!   one, plaintext, as before this existed — an unverified TLS would only look safe.

use super::{StoreError, StoreResult};
use ::postgres::config::SslMode;
use ::postgres::Config;
use std::path::Path;
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How the pool's connections are made.
#[derive(Clone)]
pub enum PgTls {
    Off,
    /// Verified TLS; `roots` says against what (for error messages).
    On {
        connect: MakeRustlsConnect,
        roots: String,
    },
}

impl PgTls {
    /// What an error should say about the TLS in use.
    pub fn describe(&self) -> String {
        match self {
            PgTls::Off => "plaintext".into(),
            PgTls::On { roots, .. } => {
                format!("TLS, the server's certificate checked against {roots}")
            }
        }
    }
}

fn config_error(message: String) -> StoreError {
    StoreError::Unavailable(message)
}

/// The TLS `config`'s `sslmode` and `ca_file` ask for (see the module documentation); a CA
/// file makes TLS required in `config`.
pub fn for_config(config: &mut Config, ca_file: Option<&Path>) -> StoreResult<PgTls> {
    let wanted = match config.get_ssl_mode() {
        SslMode::Disable => {
            if let Some(p) = ca_file {
                return Err(config_error(format!(
                    "storage.postgres_ca_file ({}) is set but the connection URL says sslmode=disable",
                    p.display()
                )));
            }
            false
        }
        SslMode::Require => true,
        _ => ca_file.is_some(),
    };
    if !wanted {
        return Ok(PgTls::Off);
    }
    config.ssl_mode(SslMode::Require);
    let mut store = rustls::RootCertStore::empty();
    let roots = match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                config_error(format!("storage.postgres_ca_file {}: {e}", path.display()))
            })?;
            let mut n = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| {
                    config_error(format!("storage.postgres_ca_file {}: {e}", path.display()))
                })?;
                store.add(cert).map_err(|e| {
                    config_error(format!("storage.postgres_ca_file {}: {e}", path.display()))
                })?;
                n += 1;
            }
            if n == 0 {
                return Err(config_error(format!(
                    "storage.postgres_ca_file {}: no PEM certificate in it",
                    path.display()
                )));
            }
            format!("the CA in {}", path.display())
        }
        None => {
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            "the public web roots (set storage.postgres_ca_file for a private CA)".into()
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(format!("TLS to PostgreSQL: {e}")))?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(PgTls::On {
        connect: MakeRustlsConnect::new(tls),
        roots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn cfg(url: &str) -> Config {
        Config::from_str(url).unwrap()
    }

    #[test]
    fn sslmode_and_the_ca_file_decide() {
        let d = tempfile::tempdir().unwrap();
        let ca = d.path().join("ca.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["db".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(&ca, cert.pem()).unwrap();
        let on = |t: PgTls| matches!(t, PgTls::On { .. });
        assert!(!on(
            for_config(&mut cfg("postgresql://u@h/db"), None).unwrap()
        ));
        // A CA file without sslmode: TLS required (no plaintext fallback to strip TLS with).
        let mut with_ca = cfg("postgresql://u@h/db");
        assert!(on(for_config(&mut with_ca, Some(&ca)).unwrap()));
        assert_eq!(with_ca.get_ssl_mode(), SslMode::Require);
        let req = for_config(&mut cfg("postgresql://u@h/db?sslmode=require"), None).unwrap();
        assert!(
            req.describe().contains("public web roots"),
            "{}",
            req.describe()
        );
        let e = for_config(&mut cfg("postgresql://u@h/db?sslmode=disable"), Some(&ca))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("sslmode=disable") && e.contains("postgres_ca_file"),
            "{e}"
        );
        let empty = d.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        let e = for_config(&mut cfg("postgresql://u@h/db"), Some(&empty))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("no PEM certificate") && e.contains("empty.pem"),
            "{e}"
        );
        let e = for_config(
            &mut cfg("postgresql://u@h/db"),
            Some(&d.path().join("nope.pem")),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("nope.pem"), "{e}");
    }

    /// Whether the store's session is TLS (`pg_stat_ssl`).
    fn encrypted(store: &super::super::PgStore) -> bool {
        store
            .with(|c| {
                c.query_one(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                )
                .map(|r| r.get(0))
                .map_err(|e| StoreError::Unavailable(e.to_string()))
            })
            .unwrap()
    }

    fn open(url: &str, ca_file: Option<std::path::PathBuf>) -> StoreResult<super::super::PgStore> {
        super::super::PgStore::open(&super::super::PgOptions {
            url: url.to_string(),
            pool_size: 1,
            ca_file,
        })
    }

    #[test]
    fn the_store_speaks_verified_tls_to_a_real_server_and_refuses_an_unknown_one() {
        let Some(url) = crate::store::pg_test_server::fresh_database() else {
            return;
        };
        let ca = crate::store::pg_test_server::tls_ca().expect("the test server's CA");
        let tls = format!("{url}?sslmode=require");
        let store = open(&tls, Some(ca.clone())).unwrap();
        let ssl = store
            .with(|c| {
                let row = c
                    .query_one(
                        "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                        &[],
                    )
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                Ok((row.get::<_, bool>(0), row.get::<_, Option<String>>(1)))
            })
            .unwrap();
        assert!(ssl.0, "the session is encrypted");
        assert!(
            ssl.1.as_deref().is_some_and(|v| v.starts_with("TLSv1.")),
            "{ssl:?}"
        );
        // The same server, plaintext, when the URL does not ask and no CA is set.
        let plain = open(&url, None).unwrap();
        let ssl = encrypted(&plain);
        assert!(!ssl);
        // A certificate from another CA is refused, and the error says what was checked.
        let d = tempfile::tempdir().unwrap();
        let other = d.path().join("other-ca.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        std::fs::write(&other, p.self_signed(&key).unwrap().pem()).unwrap();
        let e = open(&tls, Some(other)).err().unwrap().to_string();
        eprintln!("another CA: {e}");
        assert!(
            e.contains("other-ca.pem") && e.contains("UnknownIssuer"),
            "{e}"
        );
        // So is a private CA's certificate checked against the public roots.
        let e = open(&tls, None).err().unwrap().to_string();
        assert!(
            e.contains("public web roots") && e.contains("UnknownIssuer"),
            "{e}"
        );
        // A CA file alone is TLS too (required, not preferred).
        let store = open(&url, Some(ca)).unwrap();
        let ssl = encrypted(&store);
        assert!(ssl);
    }
}
