//! Service-account tokens: JSON Web Tokens signed with ES256 (ECDSA P-256, SHA-256) by the
//! service-account key, in the two shapes Kubernetes uses: bound tokens (issuer
//! `https://kubernetes.default.svc.<cluster-domain>`, audiences, expiry, a `kubernetes.io`
//! claim naming the account and the pod or secret the token is bound to) and legacy
//! secret-based tokens (issuer `kubernetes/serviceaccount`, no expiry).
//!
//! Signing and checking use ring directly; a JWT has three base64url parts and one
//! signature, which is not worth a dependency. [`ServiceAccountTokens::verify`] checks what
//! the token itself can prove (signature, issuer, audience, times, a consistent subject);
//! whether the account and the bound object still exist is the API server's to check.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rcgen::PublicKeyData;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde::{Deserialize, Deserializer, Serialize};
use time::{Duration, OffsetDateTime};

use super::UserInfo;

/// The issuer of legacy (secret-based) service-account tokens.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";
/// Longer tokens are refused before any decoding: real ones are around a kilobyte.
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Tolerated clock difference on `exp`, `nbf` and `iat`, as upstream allows.
const LEEWAY_SECONDS: i64 = 60;
const ALGORITHM: &str = "ES256";

/// The issuer of bound tokens in a cluster with this domain.
pub fn issuer_for(cluster_domain: &str) -> String {
    format!("https://kubernetes.default.svc.{cluster_domain}")
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("cannot load the service-account key: {0}")]
    LoadKey(String),
    #[error("cannot sign the token: {0}")]
    Sign(String),
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token algorithm {0:?} is not accepted (only ES256)")]
    UnsupportedAlgorithm(String),
    #[error("token was signed by an unknown key (kid {0:?})")]
    UnknownKey(String),
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token issuer {0:?} is not accepted")]
    WrongIssuer(String),
    #[error("token audiences {0:?} include none of the accepted ones")]
    WrongAudience(Vec<String>),
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token claims are invalid: {0}")]
    InvalidClaims(String),
}

/// An object a token names: the service account, or the pod, secret or node it is bound to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub name: String,
    pub uid: String,
}

impl ObjectRef {
    pub fn new(name: impl Into<String>, uid: impl Into<String>) -> ObjectRef {
        ObjectRef { name: name.into(), uid: uid.into() }
    }
}

/// The `kubernetes.io` claim of a bound token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    pub namespace: String,
    pub serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
    /// Unix time after which a client should get a new token (for tokens issued longer
    /// than asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnafter: Option<i64>,
}

/// The claims of a service-account token, either shape; field names are the JSON ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    pub iss: String,
    /// `system:serviceaccount:<namespace>:<name>`.
    pub sub: String,
    /// Empty in legacy tokens. A single string is read as a one-item list.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    /// Unix times. Bound tokens carry all three; legacy tokens none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// A unique id (upstream puts a UUID here), for audit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(rename = "kubernetes.io", default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesClaims>,
    #[serde(rename = "kubernetes.io/serviceaccount/namespace", default, skip_serializing_if = "Option::is_none")]
    pub legacy_namespace: Option<String>,
    #[serde(rename = "kubernetes.io/serviceaccount/secret.name", default, skip_serializing_if = "Option::is_none")]
    pub legacy_secret_name: Option<String>,
    #[serde(
        rename = "kubernetes.io/serviceaccount/service-account.name",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub legacy_service_account_name: Option<String>,
    #[serde(
        rename = "kubernetes.io/serviceaccount/service-account.uid",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub legacy_service_account_uid: Option<String>,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// The user name of a service account.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

impl TokenClaims {
    /// The claims of a legacy token kept in a `kubernetes.io/service-account-token` secret.
    pub fn legacy(namespace: &str, service_account: ObjectRef, secret_name: &str) -> TokenClaims {
        TokenClaims {
            iss: LEGACY_ISSUER.to_string(),
            sub: service_account_user(namespace, &service_account.name),
            aud: Vec::new(),
            exp: None,
            iat: None,
            nbf: None,
            jti: None,
            kubernetes: None,
            legacy_namespace: Some(namespace.to_string()),
            legacy_secret_name: Some(secret_name.to_string()),
            legacy_service_account_name: Some(service_account.name),
            legacy_service_account_uid: Some(service_account.uid),
        }
    }

    /// Binds a bound token to a pod.
    pub fn with_pod(mut self, pod: ObjectRef) -> TokenClaims {
        if let Some(k) = self.kubernetes.as_mut() {
            k.pod = Some(pod);
        }
        self
    }

    /// Binds a bound token to a secret.
    pub fn with_secret(mut self, secret: ObjectRef) -> TokenClaims {
        if let Some(k) = self.kubernetes.as_mut() {
            k.secret = Some(secret);
        }
        self
    }

    /// Names the node of the pod a bound token is bound to.
    pub fn with_node(mut self, node: ObjectRef) -> TokenClaims {
        if let Some(k) = self.kubernetes.as_mut() {
            k.node = Some(node);
        }
        self
    }

    pub fn is_legacy(&self) -> bool {
        self.kubernetes.is_none()
    }

    /// The service account's namespace, from either shape.
    pub fn namespace(&self) -> Option<&str> {
        match &self.kubernetes {
            Some(k) => Some(&k.namespace),
            None => self.legacy_namespace.as_deref(),
        }
    }

    /// The service account's name, from either shape.
    pub fn service_account_name(&self) -> Option<&str> {
        match &self.kubernetes {
            Some(k) => Some(&k.serviceaccount.name),
            None => self.legacy_service_account_name.as_deref(),
        }
    }

    /// The service account's uid, from either shape.
    pub fn service_account_uid(&self) -> Option<&str> {
        match &self.kubernetes {
            Some(k) => Some(&k.serviceaccount.uid),
            None => self.legacy_service_account_uid.as_deref(),
        }
    }

    /// Who the token authenticates as: the account's user name and its groups
    /// (`system:serviceaccounts`, `system:serviceaccounts:<namespace>`).
    pub fn user_info(&self) -> Option<UserInfo> {
        let namespace = self.namespace()?;
        let name = self.service_account_name()?;
        Some(UserInfo {
            name: service_account_user(namespace, name),
            groups: vec!["system:serviceaccounts".to_string(), format!("system:serviceaccounts:{namespace}")],
        })
    }

    /// The checks that need no key and no clock: the shape matches the issuer, and the
    /// subject names the account the other claims name.
    fn check_shape(&self, issuer: &str) -> Result<(), TokenError> {
        let invalid = |m: &str| Err(TokenError::InvalidClaims(m.to_string()));
        if self.iss == LEGACY_ISSUER {
            if self.kubernetes.is_some() {
                return invalid("a legacy token with a kubernetes.io claim");
            }
        } else if self.iss == issuer {
            if self.kubernetes.is_none() {
                return invalid("no kubernetes.io claim");
            }
            if self.exp.is_none() {
                return invalid("no exp claim");
            }
        } else {
            return Err(TokenError::WrongIssuer(self.iss.clone()));
        }
        let (Some(namespace), Some(name)) = (self.namespace(), self.service_account_name()) else {
            return invalid("no service account namespace and name");
        };
        if namespace.is_empty() || name.is_empty() {
            return invalid("empty service account namespace or name");
        }
        if self.sub != service_account_user(namespace, name) {
            return invalid("sub does not name the service account");
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
}

/// Issues and verifies service-account tokens with one ECDSA P-256 key. Cheap to clone.
#[derive(Clone)]
pub struct ServiceAccountTokens {
    inner: Arc<Inner>,
}

struct Inner {
    key: EcdsaKeyPair,
    spki_der: Vec<u8>,
    public_key_pem: String,
    key_id: String,
    issuer: String,
    audiences: Vec<String>,
    rng: SystemRandom,
}

impl std::fmt::Debug for ServiceAccountTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountTokens")
            .field("key_id", &self.inner.key_id)
            .field("issuer", &self.inner.issuer)
            .field("audiences", &self.inner.audiences)
            .finish_non_exhaustive()
    }
}

impl ServiceAccountTokens {
    /// From the PKCS#8 PEM of an ECDSA P-256 key. Bound tokens get `issuer`, and must name
    /// one of `audiences` to be accepted (upstream's default audience is the issuer).
    pub fn from_pem(key_pem: &str, issuer: impl Into<String>, audiences: Vec<String>) -> Result<Self, TokenError> {
        let pair = rcgen::KeyPair::from_pem(key_pem).map_err(|e| TokenError::LoadKey(e.to_string()))?;
        if pair.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(TokenError::LoadKey("not an ECDSA P-256 key".into()));
        }
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pair.serialized_der(), &rng)
            .map_err(|e| TokenError::LoadKey(e.to_string()))?;
        let spki_der = pair.subject_public_key_info();
        // As upstream does, so tokens name their key the way other tools expect.
        let key_id = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, &spki_der));
        Ok(ServiceAccountTokens {
            inner: Arc::new(Inner {
                key,
                spki_der,
                public_key_pem: pair.public_key_pem(),
                key_id,
                issuer: issuer.into(),
                audiences,
                rng,
            }),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The audiences a bound token must name one of.
    pub fn audiences(&self) -> &[String] {
        &self.inner.audiences
    }

    /// The `kid` of issued tokens: base64url of the SHA-256 of the public key's DER.
    pub fn key_id(&self) -> &str {
        &self.inner.key_id
    }

    /// The public key, PEM (`BEGIN PUBLIC KEY`).
    pub fn public_key_pem(&self) -> &str {
        &self.inner.public_key_pem
    }

    /// The public key, DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> &[u8] {
        &self.inner.spki_der
    }

    /// The public key as a JWK, for `/openid/v1/jwks`.
    pub fn jwk(&self) -> serde_json::Value {
        // An uncompressed P-256 point: 0x04, then 32 bytes of x and 32 of y.
        let point = self.inner.key.public_key().as_ref();
        let (x, y) = point.get(1..).unwrap_or_default().split_at(point.len().saturating_sub(1) / 2);
        serde_json::json!({
            "use": "sig",
            "kty": "EC",
            "kid": self.inner.key_id,
            "crv": "P-256",
            "alg": ALGORITHM,
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
        })
    }

    /// The claims of a bound token for a service account, valid from `now` for `lifetime`,
    /// for this issuer's audiences (set `aud` to change them; bind with
    /// [`TokenClaims::with_pod`] or [`TokenClaims::with_secret`]).
    pub fn bound_claims(
        &self,
        namespace: &str,
        service_account: ObjectRef,
        now: OffsetDateTime,
        lifetime: Duration,
    ) -> TokenClaims {
        let now = now.unix_timestamp();
        TokenClaims {
            iss: self.inner.issuer.clone(),
            sub: service_account_user(namespace, &service_account.name),
            aud: self.inner.audiences.clone(),
            exp: Some(now.saturating_add(lifetime.whole_seconds())),
            iat: Some(now),
            nbf: Some(now),
            jti: None,
            kubernetes: Some(KubernetesClaims {
                namespace: namespace.to_string(),
                serviceaccount: service_account,
                pod: None,
                secret: None,
                node: None,
                warnafter: None,
            }),
            legacy_namespace: None,
            legacy_secret_name: None,
            legacy_service_account_name: None,
            legacy_service_account_uid: None,
        }
    }

    /// Signs `claims` into a compact JWT.
    pub fn issue(&self, claims: &TokenClaims) -> Result<String, TokenError> {
        let header = Header { alg: ALGORITHM.into(), kid: Some(self.inner.key_id.clone()), typ: None };
        let header = serde_json::to_vec(&header).map_err(|e| TokenError::Sign(e.to_string()))?;
        let payload = serde_json::to_vec(claims).map_err(|e| TokenError::Sign(e.to_string()))?;
        let mut token = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
        let signature = self
            .inner
            .key
            .sign(&self.inner.rng, token.as_bytes())
            .map_err(|_| TokenError::Sign("ECDSA signing failed".into()))?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature.as_ref()));
        Ok(token)
    }

    /// Checks a token now; see [`ServiceAccountTokens::verify_at`].
    pub fn verify(&self, token: &str) -> Result<TokenClaims, TokenError> {
        self.verify_at(token, OffsetDateTime::now_utc())
    }

    /// Checks a token's signature, its shape and issuer (this issuer, or the legacy one),
    /// its audience (bound tokens) and its times against `now`, and returns its claims.
    pub fn verify_at(&self, token: &str, now: OffsetDateTime) -> Result<TokenClaims, TokenError> {
        self.verify_for_at(token, &self.inner.audiences, now)
    }

    /// Checks a token now as [`ServiceAccountTokens::verify_at`] does, for other audiences
    /// than the API server's (a TokenReview names those it checks for).
    pub fn verify_for(&self, token: &str, audiences: &[String]) -> Result<TokenClaims, TokenError> {
        self.verify_for_at(token, audiences, OffsetDateTime::now_utc())
    }

    fn verify_for_at(&self, token: &str, audiences: &[String], now: OffsetDateTime) -> Result<TokenClaims, TokenError> {
        let malformed = |m: &str| TokenError::Malformed(m.to_string());
        if token.len() > MAX_TOKEN_LEN {
            return Err(malformed("too long"));
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("not three dot-separated parts"));
        };
        let decode = |part: &str, what: &str| {
            URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenError::Malformed(format!("{what} is not base64url")))
        };
        let header: Header = serde_json::from_slice(&decode(header_b64, "header")?)
            .map_err(|e| TokenError::Malformed(format!("header: {e}")))?;
        if header.alg != ALGORITHM {
            return Err(TokenError::UnsupportedAlgorithm(header.alg));
        }
        if let Some(kid) = header.kid.filter(|k| k != &self.inner.key_id) {
            return Err(TokenError::UnknownKey(kid));
        }
        let signature = decode(signature_b64, "signature")?;
        let signed_len = header_b64.len() + 1 + payload_b64.len();
        let signed = token.get(..signed_len).ok_or_else(|| malformed("truncated"))?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.inner.key.public_key().as_ref())
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| TokenError::BadSignature)?;
        let claims: TokenClaims = serde_json::from_slice(&decode(payload_b64, "payload")?)
            .map_err(|e| TokenError::Malformed(format!("claims: {e}")))?;
        claims.check_shape(&self.inner.issuer)?;
        if !claims.is_legacy() && !claims.aud.iter().any(|a| audiences.contains(a)) {
            return Err(TokenError::WrongAudience(claims.aud));
        }
        let now = now.unix_timestamp();
        if claims.exp.is_some_and(|exp| now > exp.saturating_add(LEEWAY_SECONDS)) {
            return Err(TokenError::Expired);
        }
        let future = |t: Option<i64>| t.is_some_and(|t| now.saturating_add(LEEWAY_SECONDS) < t);
        if future(claims.nbf) || future(claims.iat) {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_pem() -> String {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap().serialize_pem()
    }

    fn tokens() -> ServiceAccountTokens {
        let issuer = issuer_for("cluster.local");
        ServiceAccountTokens::from_pem(&key_pem(), issuer.clone(), vec![issuer]).unwrap()
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn sa() -> ObjectRef {
        ObjectRef::new("builder", "0b6f7a52-3c1d-4d0e-9a55-1f2e3d4c5b6a")
    }

    #[test]
    fn a_bound_token_round_trips_in_the_upstream_shape() {
        let t = tokens();
        let claims = t
            .bound_claims("ci", sa(), now(), Duration::hours(1))
            .with_pod(ObjectRef::new("runner-0", "9d1c6c2e-0000-4000-8000-000000000001"));
        let token = t.issue(&claims).unwrap();
        let got = t.verify_at(&token, now() + Duration::minutes(59)).unwrap();
        assert_eq!(got, claims);
        assert_eq!(got.user_info().unwrap().name, "system:serviceaccount:ci:builder");
        assert_eq!(got.user_info().unwrap().groups, ["system:serviceaccounts", "system:serviceaccounts:ci"]);

        // The JSON is what Kubernetes clients and other validators expect.
        let parts: Vec<&str> = token.split('.').collect();
        let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], t.key_id());
        let payload: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(payload["iss"], "https://kubernetes.default.svc.cluster.local");
        assert_eq!(payload["aud"], serde_json::json!(["https://kubernetes.default.svc.cluster.local"]));
        assert_eq!(payload["sub"], "system:serviceaccount:ci:builder");
        assert_eq!(payload["kubernetes.io"]["namespace"], "ci");
        assert_eq!(payload["kubernetes.io"]["serviceaccount"]["name"], "builder");
        assert_eq!(payload["kubernetes.io"]["pod"]["name"], "runner-0");
        assert_eq!(payload["exp"], 1_800_003_600);
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), 64);
    }

    #[test]
    fn the_key_id_is_the_hash_of_the_public_key() {
        let pem = key_pem();
        let a = ServiceAccountTokens::from_pem(&pem, "i", vec![]).unwrap();
        let b = ServiceAccountTokens::from_pem(&pem, "j", vec![]).unwrap();
        assert_eq!(a.key_id(), b.key_id());
        assert_ne!(a.key_id(), tokens().key_id());
        let digest = ring::digest::digest(&ring::digest::SHA256, a.public_key_der());
        assert_eq!(a.key_id(), URL_SAFE_NO_PAD.encode(digest));
        let jwk = a.jwk();
        assert_eq!(jwk["kid"], a.key_id());
        assert_eq!(URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap().len(), 32);
        assert_eq!(URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap().len(), 32);
    }

    #[test]
    fn legacy_tokens_have_no_expiry_and_no_audience() {
        let t = tokens();
        let claims = TokenClaims::legacy("kube-system", sa(), "builder-token-x7k2p");
        let token = t.issue(&claims).unwrap();
        let payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!(payload["iss"], "kubernetes/serviceaccount");
        assert_eq!(payload["kubernetes.io/serviceaccount/secret.name"], "builder-token-x7k2p");
        assert_eq!(payload["kubernetes.io/serviceaccount/service-account.uid"], sa().uid);
        assert!(payload.get("exp").is_none() && payload.get("aud").is_none());
        let got = t.verify_at(&token, now() + Duration::days(3650)).unwrap();
        assert!(got.is_legacy());
        assert_eq!(got.namespace(), Some("kube-system"));
        assert_eq!(got.service_account_name(), Some("builder"));
        assert_eq!(got.service_account_uid(), Some(sa().uid.as_str()));
    }

    #[test]
    fn times_are_checked_with_a_minute_of_leeway() {
        let t = tokens();
        let token = t.issue(&t.bound_claims("ci", sa(), now(), Duration::hours(1))).unwrap();
        let exp = now() + Duration::hours(1);
        assert!(t.verify_at(&token, exp + Duration::seconds(60)).is_ok());
        assert_eq!(t.verify_at(&token, exp + Duration::seconds(61)), Err(TokenError::Expired));
        assert!(t.verify_at(&token, now() - Duration::seconds(60)).is_ok());
        assert_eq!(t.verify_at(&token, now() - Duration::seconds(61)), Err(TokenError::NotYetValid));
    }

    #[test]
    fn issuer_and_audience_must_be_ours() {
        let t = tokens();
        let mut claims = t.bound_claims("ci", sa(), now(), Duration::hours(1));
        claims.aud = vec!["vault".into()];
        let token = t.issue(&claims).unwrap();
        assert_eq!(t.verify_at(&token, now()), Err(TokenError::WrongAudience(vec!["vault".into()])));
        // A token may name several audiences; one accepted is enough.
        claims.aud = vec!["vault".into(), t.issuer().to_string()];
        assert!(t.verify_at(&t.issue(&claims).unwrap(), now()).is_ok());
        claims.iss = "https://kubernetes.default.svc.other.local".into();
        let token = t.issue(&claims).unwrap();
        assert!(matches!(t.verify_at(&token, now()), Err(TokenError::WrongIssuer(_))));
        // A bound token without an expiry, or whose subject names another account.
        let mut claims = t.bound_claims("ci", sa(), now(), Duration::hours(1));
        claims.exp = None;
        assert!(matches!(t.verify_at(&t.issue(&claims).unwrap(), now()), Err(TokenError::InvalidClaims(_))));
        let mut claims = t.bound_claims("ci", sa(), now(), Duration::hours(1));
        claims.sub = "system:serviceaccount:kube-system:builder".into();
        assert!(matches!(t.verify_at(&t.issue(&claims).unwrap(), now()), Err(TokenError::InvalidClaims(_))));
    }

    #[test]
    fn forged_and_foreign_tokens_are_refused() {
        let t = tokens();
        let token = t.issue(&t.bound_claims("ci", sa(), now(), Duration::hours(1))).unwrap();
        // Another key, even with our kid in the header.
        let other = tokens();
        let theirs = other.issue(&other.bound_claims("ci", sa(), now(), Duration::hours(1))).unwrap();
        assert!(matches!(t.verify_at(&theirs, now()), Err(TokenError::UnknownKey(_))));
        let (h, rest) = token.split_once('.').unwrap();
        let (_, their_rest) = theirs.split_once('.').unwrap();
        assert_eq!(t.verify_at(&format!("{h}.{their_rest}"), now()), Err(TokenError::BadSignature));
        // Claims changed after signing.
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims: TokenClaims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims.sub = "system:serviceaccount:ci:admin".into();
        let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        assert_eq!(t.verify_at(&format!("{}.{forged}.{}", parts[0], parts[2]), now()), Err(TokenError::BadSignature));
        // alg=none and other algorithms are refused before the signature is looked at.
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        assert_eq!(
            t.verify_at(&format!("{none}.{}.", parts[1]), now()),
            Err(TokenError::UnsupportedAlgorithm("none".into()))
        );
        let _ = rest;
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let t = tokens();
        for bad in ["", ".", "..", "a.b.c", "a.b.c.d", "e30.e30.", "!!!.e30.e30", &"a".repeat(MAX_TOKEN_LEN + 1)] {
            let e = t.verify_at(bad, now()).unwrap_err();
            assert!(matches!(e, TokenError::Malformed(_) | TokenError::BadSignature), "{bad:?}: {e:?}");
        }
    }

    #[test]
    fn only_p256_keys_are_accepted() {
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap().serialize_pem();
        assert!(matches!(ServiceAccountTokens::from_pem(&p384, "i", vec![]), Err(TokenError::LoadKey(_))));
        assert!(matches!(ServiceAccountTokens::from_pem("junk", "i", vec![]), Err(TokenError::LoadKey(_))));
    }
}
