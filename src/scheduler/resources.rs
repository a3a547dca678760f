//! Resource quantities and a pod's requests the way upstream's scheduler counts them: cpu
//! in millicores, everything else in whole units, rounded up; a pod asks for the sum of
//! its containers (plus restartable init containers), or the largest init container if
//! that is more, plus its overhead.

use std::collections::BTreeMap;

use serde_json::Value;

/// Amounts of resources: cpu in millicores, the rest (memory, ephemeral-storage, pods,
/// hugepages, extended resources) in units.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Any other named resource.
    pub scalar: BTreeMap<String, i64>,
}

/// Parses a quantity (`100m`, `1.5`, `128Mi`, `2e3`, `1k`) scaled by `scale` (1000 for
/// millis), rounded up as upstream's `MilliValue`/`Value`. `None` for what is not one.
pub fn parse_scaled(q: &str, scale: i128) -> Option<i64> {
    let q = q.trim();
    let split = q.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    // Requests and capacities are never negative; such text is not a usable amount.
    if num.starts_with('-') {
        return None;
    }
    let num = num.strip_prefix('+').unwrap_or(num);
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        || frac.len() > 18
    {
        return None;
    }
    let digits: i128 = format!("{int}{frac}").parse().ok()?;
    let mut numerator = digits.checked_mul(scale)?;
    let mut denominator: i128 = 10i128.checked_pow(frac.len() as u32)?;
    let (base, exp): (i128, i32) = match suffix {
        "" => (10, 0),
        "Ki" => (1024, 1),
        "Mi" => (1024, 2),
        "Gi" => (1024, 3),
        "Ti" => (1024, 4),
        "Pi" => (1024, 5),
        "Ei" => (1024, 6),
        "n" => (10, -9),
        "u" => (10, -6),
        "m" => (10, -3),
        "k" => (10, 3),
        "M" => (10, 6),
        "G" => (10, 9),
        "T" => (10, 12),
        "P" => (10, 15),
        "E" => (10, 18),
        s if s.starts_with(['e', 'E']) => (10, s[1..].parse().ok()?),
        _ => return None,
    };
    if exp >= 0 {
        numerator = numerator.checked_mul(base.checked_pow(exp as u32)?)?;
    } else {
        denominator = denominator.checked_mul(base.checked_pow(exp.unsigned_abs())?)?;
    }
    i64::try_from((numerator + denominator - 1) / denominator).ok()
}

/// A quantity held as a JSON string or number.
fn quantity(v: &Value, scale: i128) -> Option<i64> {
    match v {
        Value::String(s) => parse_scaled(s, scale),
        Value::Number(n) => parse_scaled(&n.to_string(), scale),
        _ => None,
    }
}

impl Resources {
    /// A resource list (`{"cpu": "100m", "memory": "64Mi", ...}`).
    pub fn from_list(list: Option<&Value>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list.and_then(Value::as_object).into_iter().flatten() {
            r.set(name, q);
        }
        r
    }

    fn set(&mut self, name: &str, q: &Value) {
        match name {
            "cpu" => self.milli_cpu = quantity(q, 1000).unwrap_or(0),
            "memory" => self.memory = quantity(q, 1).unwrap_or(0),
            "ephemeral-storage" => self.ephemeral_storage = quantity(q, 1).unwrap_or(0),
            other => {
                self.scalar.insert(other.to_string(), quantity(q, 1).unwrap_or(0));
            }
        }
    }

    /// A container's requests; a resource with only a limit requests the limit, as upstream
    /// defaulting stores it.
    pub fn of_container(c: &Value) -> Resources {
        let mut r = Resources::from_list(c.pointer("/resources/limits"));
        for (name, q) in c.pointer("/resources/requests").and_then(Value::as_object).into_iter().flatten() {
            r.set(name, q);
        }
        r
    }

    pub fn add(&mut self, o: &Resources) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_insert(0) += v;
        }
    }

    pub fn max_with(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
    }

    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar.get(name).copied().unwrap_or(0)
    }
}

/// What a pod asks of a node: see the module documentation.
pub fn pod_requests(spec: &Value) -> Resources {
    let mut sum = Resources::default();
    for c in spec.get("containers").and_then(Value::as_array).into_iter().flatten() {
        sum.add(&Resources::of_container(c));
    }
    // Init containers run one by one, each beside the sidecars (restartable init
    // containers) started before it; sidecars keep running with the app containers.
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for c in spec.get("initContainers").and_then(Value::as_array).into_iter().flatten() {
        let r = Resources::of_container(c);
        if c.get("restartPolicy").and_then(Value::as_str) == Some("Always") {
            sidecars.add(&r);
            init_peak.max_with(&sidecars);
        } else {
            let mut during = sidecars.clone();
            during.add(&r);
            init_peak.max_with(&during);
        }
    }
    sum.add(&sidecars);
    sum.max_with(&init_peak);
    sum.add(&Resources::from_list(spec.get("overhead")));
    sum
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn quantities_round_up_like_upstream() {
        assert_eq!(parse_scaled("100m", 1000), Some(100));
        assert_eq!(parse_scaled("1", 1000), Some(1000));
        assert_eq!(parse_scaled("0.5", 1000), Some(500));
        assert_eq!(parse_scaled("1.0001", 1000), Some(1001));
        assert_eq!(parse_scaled("128Mi", 1), Some(128 * 1024 * 1024));
        assert_eq!(parse_scaled("1Gi", 1), Some(1 << 30));
        assert_eq!(parse_scaled("2k", 1), Some(2000));
        assert_eq!(parse_scaled("1e3", 1), Some(1000));
        assert_eq!(parse_scaled("1500m", 1), Some(2));
        assert_eq!(parse_scaled("110", 1), Some(110));
        assert_eq!(parse_scaled("12x", 1), None);
        assert_eq!(parse_scaled("", 1), None);
    }

    #[test]
    fn pod_requests_take_the_larger_of_init_and_app_containers_plus_overhead() {
        let spec = json!({
            "containers": [
                {"resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                {"resources": {"limits": {"cpu": "200m"}}},
            ],
            "initContainers": [
                {"resources": {"requests": {"cpu": "1", "memory": "16Mi"}}},
                {"restartPolicy": "Always", "resources": {"requests": {"memory": "32Mi"}}},
            ],
            "overhead": {"cpu": "10m"},
        });
        let r = pod_requests(&spec);
        // cpu: max(100 + 200 + sidecar 0, init 1000) + 10.
        assert_eq!(r.milli_cpu, 1010);
        // memory: max(64 + 32, init 16) Mi.
        assert_eq!(r.memory, 96 * 1024 * 1024);
    }
}
