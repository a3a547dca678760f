//! Bearer-token authentication: service-account JWTs signed with the cluster's key. A token
//! whose account (or the pod or secret it is bound to) is gone, or has another uid, is
//! refused, as upstream refuses it.

use serde_json::Value;

use super::{ApiServer, Identity};
use crate::pki::TokenClaims;

impl ApiServer {
    /// Who a bearer token stands for, or `None` (answered 401).
    pub async fn authenticate_token(&self, token: &str) -> Option<Identity> {
        self.authenticate_token_for(token, None).await.map(|(id, _)| id)
    }

    /// [`ApiServer::authenticate_token`] with the audiences the token names, for a TokenReview:
    /// the token is checked for `audiences` (none: the API server's own).
    pub async fn authenticate_token_for(
        &self,
        token: &str,
        audiences: Option<&[String]>,
    ) -> Option<(Identity, Vec<String>)> {
        let tokens = self.opts.tokens.as_ref()?;
        let verified = match audiences {
            Some(a) => tokens.verify_for(token, a),
            None => tokens.verify(token),
        };
        let claims = match verified {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "bearer token refused");
                return None;
            }
        };
        let ns = claims.namespace()?.to_string();
        let name = claims.service_account_name()?.to_string();
        let sa = self.object_uid("", "serviceaccounts", &ns, &name).await?;
        if let Some(uid) = claims.service_account_uid().filter(|u| !u.is_empty()) {
            if sa != uid {
                return None;
            }
        }
        if !self.bound_object_exists(&claims, &ns).await {
            return None;
        }
        let user = claims.user_info()?;
        let mut groups = user.groups;
        groups.push("system:authenticated".into());
        let mut extra = std::collections::BTreeMap::new();
        if let Some(pod) = claims.kubernetes.as_ref().and_then(|k| k.pod.as_ref()) {
            extra.insert("authentication.kubernetes.io/pod-name".to_string(), vec![pod.name.clone()]);
            extra.insert("authentication.kubernetes.io/pod-uid".to_string(), vec![pod.uid.clone()]);
        }
        if let Some(jti) = claims.jti.as_deref().filter(|j| !j.is_empty()) {
            extra.insert("authentication.kubernetes.io/credential-id".to_string(), vec![format!("JTI={jti}")]);
        }
        let audiences = claims.aud.clone();
        Some((Identity { user: user.name, groups, uid: sa, extra }, audiences))
    }

    async fn object_uid(&self, group: &str, plural: &str, ns: &str, name: &str) -> Option<String> {
        let rt = self.resource_type(group, "v1", plural)?;
        let obj = self.registry.get(&rt, Some(ns), name).await.ok()?;
        obj.pointer("/metadata/uid").and_then(Value::as_str).map(str::to_string)
    }

    async fn bound_object_exists(&self, claims: &TokenClaims, ns: &str) -> bool {
        let Some(k) = claims.kubernetes.as_ref() else {
            // A legacy token lives as long as its secret.
            return match claims.legacy_secret_name.as_deref() {
                Some(secret) => self.object_uid("", "secrets", ns, secret).await.is_some(),
                None => true,
            };
        };
        for (plural, bound) in [("pods", &k.pod), ("secrets", &k.secret)] {
            if let Some(b) = bound {
                match self.object_uid("", plural, ns, &b.name).await {
                    Some(uid) if b.uid.is_empty() || uid == b.uid => {}
                    _ => return false,
                }
            }
        }
        true
    }
}
