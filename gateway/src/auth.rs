//! API keys → tenants. Keys are only ever held as sha256 digests; the extractors
//! [`Caller`] and [`Admin`] reject a missing or unknown key with OpenAI's 401.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Lower-case hex sha256 of a key's UTF-8 bytes.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

#[derive(Debug, Clone, Default)]
pub struct Auth {
    tenants: HashMap<String, String>,
    admins: HashSet<String>,
}

impl Auth {
    pub fn new(tenants: &[crate::config::TenantConfig], admin_hashes: &[String]) -> Auth {
        let mut map = HashMap::new();
        for t in tenants {
            for h in &t.api_key_hashes {
                map.insert(h.clone(), t.name.clone());
            }
        }
        Auth {
            tenants: map,
            admins: admin_hashes.iter().cloned().collect(),
        }
    }

    pub fn tenant_for(&self, key: &str) -> Option<Caller> {
        let h = hash_key(key);
        self.tenants.get(&h).map(|t| Caller {
            tenant: t.clone(),
            key_hash: h,
        })
    }

    pub fn is_admin(&self, key: &str) -> bool {
        self.admins.contains(&hash_key(key))
    }
}

/// The authenticated tenant of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: String,
    /// sha256 of the key used (dedupe scope; never the key itself).
    pub key_hash: String,
}

/// An authenticated operator (admin key).
#[derive(Debug, Clone)]
pub struct Admin;

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::unauthorized(
                "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        })?;
    let key = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::unauthorized("Authorization header must be `Bearer <key>`."))?;
    Ok(key)
}

/// "sk-abc...wxyz" style redaction, as OpenAI's error message shows it.
fn redact(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "****".to_string();
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}****{tail}")
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = bearer(parts)?;
        state.auth.tenant_for(key).ok_or_else(|| {
            ApiError::unauthorized(format!("Incorrect API key provided: {}.", redact(key)))
        })
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = bearer(parts)?;
        if state.auth.is_admin(key) {
            Ok(Admin)
        } else if state.auth.tenant_for(key).is_some() {
            Err(ApiError::forbidden("This endpoint needs an admin key."))
        } else {
            Err(ApiError::unauthorized(format!(
                "Incorrect API key provided: {}.",
                redact(key)
            )))
        }
    }
}

/// Reads the demo tenant key from `data_dir/demo_api_key`, creating it once (atomically).
pub fn demo_key(data_dir: &Path) -> std::io::Result<String> {
    persisted(data_dir, "demo_api_key", crate::ids::new_secret)
}

/// This replica's name, made once and kept in `data_dir/replica_id`: its runner's drive
/// leases are its own again after a restart.
pub fn replica_id(data_dir: &Path) -> std::io::Result<String> {
    persisted(data_dir, "replica_id", || {
        crate::ids::new_id(crate::ids::IdKind::Replica)
    })
}

/// The value kept in `data_dir/name`, made by `make` and written durably the first time.
fn persisted(
    data_dir: &Path,
    name: &str,
    make: impl FnOnce() -> String,
) -> std::io::Result<String> {
    let path = data_dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(k) if !k.trim().is_empty() => return Ok(k.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(data_dir)?;
    let value = make();
    let tmp = data_dir.join(format!("{name}.tmp"));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(value.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(data_dir)?.sync_all()?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_tenants_by_hash() {
        let t = crate::config::TenantConfig {
            name: "acme".into(),
            api_key_hashes: vec![hash_key("sk-acme")],
        };
        let auth = Auth::new(&[t], &[hash_key("sk-admin")]);
        assert_eq!(auth.tenant_for("sk-acme").unwrap().tenant, "acme");
        assert!(auth.tenant_for("sk-other").is_none());
        assert!(auth.is_admin("sk-admin"));
        assert!(!auth.is_admin("sk-acme"));
        assert_eq!(
            hash_key("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        assert_eq!(redact("sk-1234567890"), "sk-****7890");
    }

    #[test]
    fn demo_key_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = demo_key(dir.path()).unwrap();
        let b = demo_key(dir.path()).unwrap();
        assert_eq!(a, b);
        assert!(a.starts_with("sk-tg-"));
    }
}
