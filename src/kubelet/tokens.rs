//! The kubelet's service-account tokens for projected volumes, as upstream's token manager
//! keeps them: one TokenRequest per pod, account, audience and lifetime, bound to the pod,
//! reused until it is within 20 % of its lifetime of expiring or is a day old, then
//! requested again. The volume's next refresh writes the new token in place.

use std::collections::HashMap;
use std::sync::Mutex;

/// Upstream renews a token that is older than a day, whatever its lifetime.
const MAX_TTL_SECONDS: i64 = 24 * 60 * 60;

/// What a token is for: namespace, service account, pod uid, audience (empty: the API
/// server's own) and lifetime in seconds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenFor {
    pub namespace: String,
    pub service_account: String,
    pub pod_uid: String,
    pub audience: String,
    pub lifetime: i64,
}

/// A token and when it expires (unix seconds), as the TokenRequest's status says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    pub token: String,
    pub expires: i64,
}

/// Whether a token of `lifetime` seconds that expires at `expires` is due for renewal at
/// `now` (unix seconds): within the last 20 % of its lifetime, or issued over a day ago.
pub fn needs_renewal(issued: &Issued, lifetime: i64, now: i64) -> bool {
    let issued_at = issued.expires - lifetime;
    now >= issued_at + MAX_TTL_SECONDS || now >= issued.expires - lifetime * 20 / 100
}

/// The tokens held for the node's pods.
#[derive(Default)]
pub struct TokenCache {
    held: Mutex<HashMap<TokenFor, Issued>>,
}

impl TokenCache {
    /// The held token for `key` if it is not due for renewal at `now`. Expired tokens are
    /// forgotten on the way (those of pods that are gone).
    pub fn fresh(&self, key: &TokenFor, now: i64) -> Option<String> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.retain(|_, t| t.expires > now);
        held.get(key).filter(|t| !needs_renewal(t, key.lifetime, now)).map(|t| t.token.clone())
    }

    /// Keeps a newly issued token.
    pub fn keep(&self, key: TokenFor, issued: Issued) {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).insert(key, issued);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(lifetime: i64) -> TokenFor {
        TokenFor {
            namespace: "ns".into(),
            service_account: "default".into(),
            pod_uid: "u1".into(),
            audience: String::new(),
            lifetime,
        }
    }

    #[test]
    fn renews_in_the_last_fifth_of_the_lifetime() {
        // An hour-long token issued at t=0.
        let t = Issued { token: "a".into(), expires: 3600 };
        assert!(!needs_renewal(&t, 3600, 0));
        assert!(!needs_renewal(&t, 3600, 2879));
        assert!(needs_renewal(&t, 3600, 2880));
        // The pod's API access token: renewed after 80 % of 3607 s.
        let t = Issued { token: "b".into(), expires: 3607 };
        assert!(!needs_renewal(&t, 3607, 2885));
        assert!(needs_renewal(&t, 3607, 2886));
    }

    #[test]
    fn renews_a_long_token_after_a_day() {
        let week = 7 * 24 * 3600;
        let t = Issued { token: "a".into(), expires: week };
        assert!(!needs_renewal(&t, week, MAX_TTL_SECONDS - 1));
        assert!(needs_renewal(&t, week, MAX_TTL_SECONDS));
    }

    #[test]
    fn holds_tokens_per_key_until_due_and_forgets_expired_ones() {
        let cache = TokenCache::default();
        assert_eq!(cache.fresh(&key(3600), 0), None);
        cache.keep(key(3600), Issued { token: "t1".into(), expires: 3600 });
        assert_eq!(cache.fresh(&key(3600), 100).as_deref(), Some("t1"));
        // Another lifetime is another token.
        assert_eq!(cache.fresh(&key(7200), 100), None);
        // Due: the caller asks for a new one.
        assert_eq!(cache.fresh(&key(3600), 3000), None);
        // Expired entries go.
        cache.keep(key(7200), Issued { token: "t2".into(), expires: 7200 });
        assert_eq!(cache.fresh(&key(7200), 3700).as_deref(), Some("t2"));
        assert_eq!(cache.held.lock().unwrap().len(), 1);
        assert_eq!(cache.fresh(&key(7200), 7200), None);
        assert!(cache.held.lock().unwrap().is_empty());
    }
}
