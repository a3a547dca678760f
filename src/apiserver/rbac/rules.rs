//! RBAC's rule arithmetic on `rbac.authorization.k8s.io/v1` PolicyRules: whether a set of
//! rules covers another (escalation prevention, bootstrap reconciliation), one request-sized
//! piece at a time, as upstream's `Covers` breaks rules down.

use k8s_openapi::api::rbac::v1::PolicyRule;

use crate::apiserver::authz::{NonResourceRule, ResourceRule, Rules};

fn list(v: &Option<Vec<String>>) -> &[String] {
    v.as_deref().unwrap_or(&[])
}

fn has(set: &[String], v: &str) -> bool {
    set.iter().any(|s| s == v)
}

/// The rules of a role as the authorizer evaluates them. A rule with resources is a
/// resource rule; one with only nonResourceURLs a non-resource rule.
pub fn to_rules(policy: &[PolicyRule]) -> Rules {
    let mut out = Rules::default();
    for p in policy {
        let urls = list(&p.non_resource_urls);
        if !urls.is_empty() {
            out.non_resource.push(NonResourceRule { verbs: p.verbs.clone(), urls: urls.to_vec() });
        }
        if !list(&p.resources).is_empty() || !list(&p.api_groups).is_empty() {
            out.resource.push(ResourceRule {
                verbs: p.verbs.clone(),
                api_groups: list(&p.api_groups).to_vec(),
                resources: list(&p.resources).to_vec(),
                resource_names: list(&p.resource_names).to_vec(),
            });
        }
    }
    out
}

/// A PolicyRule from its parts, with `None` for empty lists as the API serializes them.
pub fn policy_rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str], urls: &[&str]) -> PolicyRule {
    let opt = |v: &[&str]| (!v.is_empty()).then(|| v.iter().map(|s| s.to_string()).collect());
    PolicyRule {
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        api_groups: opt(groups),
        resources: opt(resources),
        resource_names: opt(names),
        non_resource_urls: opt(urls),
    }
}

/// `rule` split into rules of one verb, one group, one resource and one resource name
/// (or one verb and one URL), as upstream's `BreakdownRule`.
pub fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    let one = |s: &String| Some(vec![s.clone()]);
    for group in list(&rule.api_groups) {
        for resource in list(&rule.resources) {
            for verb in &rule.verbs {
                if list(&rule.resource_names).is_empty() {
                    out.push(PolicyRule {
                        verbs: vec![verb.clone()],
                        api_groups: one(group),
                        resources: one(resource),
                        ..Default::default()
                    });
                }
                for name in list(&rule.resource_names) {
                    out.push(PolicyRule {
                        verbs: vec![verb.clone()],
                        api_groups: one(group),
                        resources: one(resource),
                        resource_names: one(name),
                        ..Default::default()
                    });
                }
            }
        }
    }
    for url in list(&rule.non_resource_urls) {
        for verb in &rule.verbs {
            out.push(PolicyRule { verbs: vec![verb.clone()], non_resource_urls: one(url), ..Default::default() });
        }
    }
    out
}

fn resources_cover(owner: &[String], wanted: &[String]) -> bool {
    if has(owner, "*") {
        return true;
    }
    wanted.iter().all(|path| {
        has(owner, path)
            || path.split_once('/').is_some_and(|(_, sub)| owner.iter().any(|o| o.strip_prefix("*/") == Some(sub)))
    })
}

fn urls_cover(owner: &[String], wanted: &[String]) -> bool {
    wanted
        .iter()
        .all(|w| owner.iter().any(|o| o == w || o.strip_suffix('*').is_some_and(|prefix| w.starts_with(prefix))))
}

fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let all = |set: &[String], wanted: &[String]| has(set, "*") || wanted.iter().all(|w| has(set, w));
    let names_ok = if list(&sub.resource_names).is_empty() {
        list(&owner.resource_names).is_empty()
    } else {
        list(&owner.resource_names).is_empty()
            || list(&sub.resource_names).iter().all(|n| has(list(&owner.resource_names), n))
    };
    all(&owner.verbs, &sub.verbs)
        && all(list(&owner.api_groups), list(&sub.api_groups))
        && resources_cover(list(&owner.resources), list(&sub.resources))
        && urls_cover(list(&owner.non_resource_urls), list(&sub.non_resource_urls))
        && names_ok
}

/// The pieces of `wanted` that no rule of `owner` covers (empty: `owner` covers it all).
pub fn uncovered(owner: &[PolicyRule], wanted: &[PolicyRule]) -> Vec<PolicyRule> {
    wanted.iter().flat_map(breakdown).filter(|piece| !owner.iter().any(|o| rule_covers(o, piece))).collect()
}

/// A rule as upstream prints it in escalation errors:
/// `{APIGroups:["apps"], Resources:["deployments"], Verbs:["create"]}`.
pub fn compact(rule: &PolicyRule) -> String {
    let quoted = |v: &[String]| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" ");
    let mut parts = Vec::new();
    if !list(&rule.api_groups).is_empty() {
        parts.push(format!("APIGroups:[{}]", quoted(list(&rule.api_groups))));
    }
    if !list(&rule.resources).is_empty() {
        parts.push(format!("Resources:[{}]", quoted(list(&rule.resources))));
    }
    if !list(&rule.resource_names).is_empty() {
        parts.push(format!("ResourceNames:[{}]", quoted(list(&rule.resource_names))));
    }
    if !list(&rule.non_resource_urls).is_empty() {
        parts.push(format!("NonResourceURLs:[{}]", quoted(list(&rule.non_resource_urls))));
    }
    parts.push(format!("Verbs:[{}]", quoted(&rule.verbs)));
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
        policy_rule(verbs, groups, resources, &[], &[])
    }

    #[test]
    fn breakdown_gives_one_piece_per_verb_group_resource_and_name() {
        let pieces = breakdown(&policy_rule(&["get", "list"], &["", "apps"], &["pods"], &["a", "b"], &[]));
        assert_eq!(pieces.len(), 8);
        assert!(pieces.iter().all(|p| p.verbs.len() == 1 && list(&p.resource_names).len() == 1));
        assert_eq!(breakdown(&policy_rule(&["get"], &[], &[], &[], &["/a", "/b"])).len(), 2);
    }

    #[test]
    fn covers_as_upstream() {
        let owner = vec![
            r(&["get", "list"], &[""], &["pods", "*/status"]),
            r(&["*"], &["apps"], &["deployments"]),
            policy_rule(&["get"], &[], &[], &[], &["/healthz/*", "/version"]),
            policy_rule(&["update"], &[""], &["configmaps"], &["cm1"], &[]),
        ];
        assert!(uncovered(&owner, &[r(&["get"], &[""], &["pods"])]).is_empty());
        assert!(uncovered(&owner, &[r(&["list"], &[""], &["services/status"])]).is_empty(), "*/status covers it");
        assert!(uncovered(&owner, &[r(&["delete", "create"], &["apps"], &["deployments"])]).is_empty());
        assert_eq!(
            uncovered(&owner, &[r(&["get", "delete"], &[""], &["pods"])]),
            vec![r(&["delete"], &[""], &["pods"])]
        );
        assert!(
            !uncovered(&owner, &[r(&["get"], &[""], &["pods/log"])]).is_empty(),
            "a resource does not cover its subresources"
        );
        assert!(uncovered(&owner, &[policy_rule(&["get"], &[], &[], &[], &["/healthz/etcd", "/version"])]).is_empty());
        assert!(!uncovered(&owner, &[policy_rule(&["get"], &[], &[], &[], &["/metrics"])]).is_empty());
        // A named grant covers only those names, never the whole resource.
        assert!(uncovered(&owner, &[policy_rule(&["update"], &[""], &["configmaps"], &["cm1"], &[])]).is_empty());
        assert!(!uncovered(&owner, &[r(&["update"], &[""], &["configmaps"])]).is_empty());
        // Wildcards in what is wanted are only covered by wildcards.
        assert!(!uncovered(&owner, &[r(&["*"], &[""], &["pods"])]).is_empty());
        assert!(uncovered(&[r(&["*"], &["*"], &["*"])], &[r(&["*"], &["*"], &["*"])]).is_empty());
    }

    #[test]
    fn compact_matches_upstream_wording() {
        assert_eq!(
            compact(&r(&["create"], &["apps"], &["deployments"])),
            r#"{APIGroups:["apps"], Resources:["deployments"], Verbs:["create"]}"#
        );
        assert_eq!(
            compact(&policy_rule(&["get"], &[], &[], &[], &["/metrics"])),
            r#"{NonResourceURLs:["/metrics"], Verbs:["get"]}"#
        );
    }

    #[test]
    fn to_rules_splits_resource_and_url_rules() {
        let rules = to_rules(&[r(&["get"], &[""], &["pods"]), policy_rule(&["get"], &[], &[], &[], &["/x"])]);
        assert_eq!(rules.resource.len(), 1);
        assert_eq!(rules.non_resource.len(), 1);
    }
}
