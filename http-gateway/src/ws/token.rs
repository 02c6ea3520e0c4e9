//! WebSocket tokens (`GET /api/latest/system/wstoken`): 32 random bytes as hex, good for
//! one socket within [`LIFETIME`]. The gateway keeps only their SHA-256 hashes, in memory,
//! and compares a presented token's hash with every held one in constant time, so neither
//! a memory dump nor the timing of a refusal gives a token away.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How long a token may wait for its socket.
pub const LIFETIME: Duration = Duration::from_secs(60);
/// Most tokens held at once; past it the oldest goes.
const MAX_HELD: usize = 1024;

struct Held {
    hash: [u8; 32],
    expires: Instant,
}

#[derive(Default)]
pub struct Tokens {
    held: Mutex<Vec<Held>>,
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// A new token.
    pub fn issue(&self) -> String {
        self.issue_at(Instant::now())
    }

    /// Whether `token` is held and unexpired; it is used up either way.
    pub fn redeem(&self, token: &str) -> bool {
        self.redeem_at(token, Instant::now())
    }

    fn issue_at(&self, now: Instant) -> String {
        let bytes: [u8; 32] = rand::random();
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.retain(|h| h.expires > now);
        if held.len() >= MAX_HELD {
            held.remove(0);
        }
        held.push(Held {
            hash: hash(&token),
            expires: now + LIFETIME,
        });
        token
    }

    fn redeem_at(&self, token: &str, now: Instant) -> bool {
        let presented = hash(token);
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        // Every held hash is compared, found or not.
        let mut found = None;
        for (i, h) in held.iter().enumerate() {
            if bool::from(h.hash.ct_eq(&presented)) {
                found = Some(i);
            }
        }
        let valid = match found {
            Some(i) => held.remove(i).expires > now,
            None => false,
        };
        held.retain(|h| h.expires > now);
        valid
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.held.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_one_socket() {
        let tokens = Tokens::default();
        let token = tokens.issue();
        assert_eq!(token.len(), 64);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(tokens.issue(), token, "random");
        assert!(!tokens.redeem("nope"));
        assert!(!tokens.redeem(&token.to_uppercase()));
        assert!(tokens.redeem(&token));
        assert!(!tokens.redeem(&token), "single use");
    }

    #[test]
    fn tokens_expire() {
        let tokens = Tokens::default();
        let start = Instant::now();
        let token = tokens.issue_at(start);
        let late = tokens.issue_at(start);
        assert!(tokens.redeem_at(&token, start + LIFETIME - Duration::from_millis(1)));
        assert!(!tokens.redeem_at(&late, start + LIFETIME));
        // Expired ones are dropped as new ones come.
        tokens.issue_at(start);
        tokens.issue_at(start + LIFETIME * 2);
        assert_eq!(tokens.len(), 1);
    }

    #[test]
    fn the_store_is_bounded_and_keeps_only_hashes() {
        let tokens = Tokens::default();
        let first = tokens.issue();
        for _ in 0..MAX_HELD {
            tokens.issue();
        }
        assert_eq!(tokens.len(), MAX_HELD);
        assert!(!tokens.redeem(&first), "the oldest went");
        let token = tokens.issue();
        let held = tokens.held.lock().unwrap();
        assert!(held.iter().any(|h| h.hash == hash(&token)));
    }
}
