//! Stateless authorisation of in-dialog requests. The edge's Record-Route URI carries a token:
//! an HMAC over the dialog's Call-ID and the caller's tag, keyed by a secret all replicas share
//! (configuration, never a cluster protocol). An in-dialog request is routed only when the
//! top Route it carries holds a token that verifies. So no replica keeps dialog state, any
//! replica can route any dialog (no session affinity behind the load balancers), and a forged
//! Route opens nothing through the edge.
//!
//! This module must never log or expose the keys, and compares tags in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The Record-Route URI parameter that carries the token: `<sip:edge;lr;wt=1a2b...>`.
pub const TOKEN_PARAM: &str = "wt";
/// Truncated HMAC length: 96 bits, as RFC 2104 allows and IPsec uses for HMAC-SHA-256-96.
const TAG_BYTES: usize = 12;
/// The token's format version, its first character; a later format gets another.
const VERSION: u8 = b'1';
/// Shortest key accepted: 128 bits.
pub const MIN_KEY_BYTES: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("dialog key too short: {len} bytes, at least {MIN_KEY_BYTES} needed")]
    TooShort { len: usize },
}

/// The token text: a version character and 24 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token([u8; 1 + 2 * TAG_BYTES]);

impl Token {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits and the version character are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// The signing key, and the previous one during a rotation: tokens are signed with the
/// current key and accepted under either, so dialogs set up before a rotation keep working.
#[derive(Clone)]
pub struct DialogKeys {
    current: Hmac<Sha256>,
    previous: Option<Hmac<Sha256>>,
}

impl std::fmt::Debug for DialogKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DialogKeys(..)")
    }
}

fn keyed(key: &[u8]) -> Result<Hmac<Sha256>, KeyError> {
    if key.len() < MIN_KEY_BYTES {
        return Err(KeyError::TooShort { len: key.len() });
    }
    // HMAC accepts keys of any length; the length check above is ours.
    Hmac::<Sha256>::new_from_slice(key).map_err(|_| KeyError::TooShort { len: key.len() })
}

/// The MAC input: each field length-prefixed, so no two (Call-ID, tag) pairs collide.
fn mac_over(keyed: &Hmac<Sha256>, call_id: &[u8], caller_tag: &[u8]) -> Hmac<Sha256> {
    let mut mac = keyed.clone();
    for field in [call_id, caller_tag] {
        mac.update(&(field.len() as u32).to_be_bytes());
        mac.update(field);
    }
    mac
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl DialogKeys {
    pub fn new(current: &[u8], previous: Option<&[u8]>) -> Result<DialogKeys, KeyError> {
        Ok(DialogKeys {
            current: keyed(current)?,
            previous: previous.map(keyed).transpose()?,
        })
    }

    /// The token for a dialog set up by an INVITE with this Call-ID and From-tag.
    pub fn token(&self, call_id: &[u8], caller_tag: &[u8]) -> Token {
        let tag = mac_over(&self.current, call_id, caller_tag)
            .finalize()
            .into_bytes();
        let mut text = [VERSION; 1 + 2 * TAG_BYTES];
        for (i, byte) in tag.iter().take(TAG_BYTES).enumerate() {
            text[1 + 2 * i] = b"0123456789abcdef"[usize::from(byte >> 4)];
            text[2 + 2 * i] = b"0123456789abcdef"[usize::from(byte & 0xf)];
        }
        Token(text)
    }

    /// Whether `token` was issued for this dialog. `tags` are the request's From-tag and
    /// To-tag: a request from the callee carries the caller's tag as its To-tag, so either may
    /// be the one that was signed.
    pub fn verify(&self, token: &[u8], call_id: &[u8], tags: [&[u8]; 2]) -> bool {
        let [VERSION, hex @ ..] = token else {
            return false;
        };
        if hex.len() != 2 * TAG_BYTES {
            return false;
        }
        let mut tag = [0u8; TAG_BYTES];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            match (hex_value(pair[0]), hex_value(pair[1])) {
                (Some(high), Some(low)) => tag[i] = high << 4 | low,
                _ => return false,
            }
        }
        // Each comparison is constant-time, so the MAC cannot be guessed byte by byte. The
        // search stops at the first match: which tag or key matched is no secret (the tags
        // are on the wire, and success shows in the answer anyway).
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .any(|key| {
                tags.iter().any(|caller_tag| {
                    mac_over(key, call_id, caller_tag)
                        .verify_truncated_left(&tag)
                        .is_ok()
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef-shared-by-replicas";
    const OLD: &[u8] = b"the-key-before-the-rotation!";

    fn keys() -> DialogKeys {
        DialogKeys::new(KEY, Some(OLD)).unwrap()
    }

    #[test]
    fn token_verifies_for_its_dialog_from_either_side() {
        let k = keys();
        let t = k.token(b"a84b4c76e66710@pbx", b"caller-tag");
        assert_eq!(t.as_bytes().len(), 25);
        assert!(t.as_str().starts_with('1'));
        // The caller's BYE: From-tag is the caller's.
        assert!(k.verify(
            t.as_bytes(),
            b"a84b4c76e66710@pbx",
            [b"caller-tag", b"callee-tag"]
        ));
        // The vendor's BYE: From and To swapped.
        assert!(k.verify(
            t.as_bytes(),
            b"a84b4c76e66710@pbx",
            [b"callee-tag", b"caller-tag"]
        ));
        // Another replica with the same key agrees: no state involved.
        assert!(DialogKeys::new(KEY, None).unwrap().verify(
            t.as_bytes(),
            b"a84b4c76e66710@pbx",
            [b"x", b"caller-tag"]
        ));
    }

    #[test]
    fn forged_or_replayed_tokens_fail() {
        let k = keys();
        let t = k.token(b"call-1", b"tag-1");
        assert!(
            !k.verify(t.as_bytes(), b"call-2", [b"tag-1", b"x"]),
            "another dialog"
        );
        assert!(
            !k.verify(t.as_bytes(), b"call-1", [b"tag-2", b"x"]),
            "another tag"
        );
        // Length-prefixing: moving bytes between Call-ID and tag changes the MAC.
        assert!(!k.verify(t.as_bytes(), b"call-1t", [b"ag-1", b"x"]));
        let mut tampered = t.as_bytes().to_vec();
        tampered[5] = if tampered[5] == b'0' { b'1' } else { b'0' };
        assert!(!k.verify(&tampered, b"call-1", [b"tag-1", b"x"]));
        for bad in [
            &b""[..],
            b"1",
            b"2abcdefabcdefabcdefabcdef",
            b"1ABCDEFABCDEFABCDEFABCDEF",
            b"1zz",
        ] {
            assert!(!k.verify(bad, b"call-1", [b"tag-1", b"x"]), "{bad:?}");
        }
        let other = DialogKeys::new(b"an-attacker-guessed-this-key", None).unwrap();
        assert!(!k.verify(
            other.token(b"call-1", b"tag-1").as_bytes(),
            b"call-1",
            [b"tag-1", b"x"]
        ));
    }

    #[test]
    fn rotation_accepts_tokens_of_the_previous_key() {
        let before = DialogKeys::new(OLD, None).unwrap();
        let t = before.token(b"call-1", b"tag-1");
        assert!(keys().verify(t.as_bytes(), b"call-1", [b"tag-1", b""]));
        assert!(!DialogKeys::new(KEY, None).unwrap().verify(
            t.as_bytes(),
            b"call-1",
            [b"tag-1", b""]
        ));
    }

    #[test]
    fn short_keys_are_refused_and_keys_never_printed() {
        assert_eq!(
            DialogKeys::new(b"short", None).unwrap_err(),
            KeyError::TooShort { len: 5 }
        );
        assert!(DialogKeys::new(KEY, Some(b"short")).is_err());
        assert_eq!(format!("{:?}", keys()), "DialogKeys(..)");
    }
}
