//! Sign-in links, sessions and CSRF for the web admin (rules in the parent module).
use axum::http::{header, HeaderMap};
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{AdminSession, Store, StoreResult};

/// The session cookie's name.
pub const COOKIE: &str = "hearth_admin";
/// How long a sign-in link works (issue 11: 10 minutes).
pub const LINK_TTL: Duration = Duration::minutes(10);
/// How long a session lasts (issue 11: 7 days).
pub const SESSION_TTL: Duration = Duration::days(7);

/// 32 random bytes from the OS-seeded generator, as 64 hex characters (URL-safe).
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// SHA-256 of `token`, hex: what the database keeps instead of a link or cookie value.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Create a sign-in link for `user_id` at `now`; returns the token (only its hash is stored).
///
/// Errors: storage failures.
pub async fn issue_link(store: &Store, now: DateTime<Utc>, user_id: i64) -> StoreResult<String> {
    let token = random_token();
    store
        .create_admin_link(&hash(&token), user_id, now, now + LINK_TTL)
        .await?;
    Ok(token)
}

/// Use the link `token` at `now` and open a session: the cookie value, or `None` when the link
/// is unknown, used or expired.
///
/// Errors: storage failures.
pub async fn open_session(
    store: &Store,
    now: DateTime<Utc>,
    token: &str,
) -> StoreResult<Option<String>> {
    if token.len() != 64 || !token.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let Some(user_id) = store.consume_admin_link(&hash(token), now).await? else {
        return Ok(None);
    };
    let id = random_token();
    store
        .create_admin_session(&hash(&id), user_id, &random_token(), now, now + SESSION_TTL)
        .await?;
    Ok(Some(id))
}

/// The session cookie's value in `headers`, if any.
pub fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// The live session of the request at `now` (`None`: no cookie, unknown, revoked or expired).
///
/// Errors: storage failures.
pub async fn session(
    store: &Store,
    now: DateTime<Utc>,
    headers: &HeaderMap,
) -> StoreResult<Option<(String, AdminSession)>> {
    let Some(id) = cookie_value(headers) else {
        return Ok(None);
    };
    Ok(store.admin_session(&hash(&id), now).await?.map(|s| (id, s)))
}

/// `Set-Cookie` value opening a session (`Secure` when `secure`).
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/admin; Max-Age={}{}",
        SESSION_TTL.num_seconds(),
        if secure { "; Secure" } else { "" }
    )
}

/// `Set-Cookie` value clearing the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/admin; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// True when `sent` is the session's CSRF token (constant-time comparison).
pub fn csrf_ok(session: &AdminSession, sent: Option<&str>) -> bool {
    match sent {
        Some(s) if s.len() == session.csrf.len() => {
            bool::from(s.as_bytes().ct_eq(session.csrf.as_bytes()))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex_and_hash_is_sha256_hex() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; hearth_admin=xyz; b=2".parse().unwrap(),
        );
        assert_eq!(cookie_value(&h).as_deref(), Some("xyz"));
    }
}
