//! Label selectors: the string grammar (`a=b,c!=d,e in (f,g),!h`), `metav1.LabelSelector`
//! conversion, and matching against an object's labels.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;

use super::SelectorError;
use crate::domain::names::{label_key_errors, label_value_errors};
use crate::domain::quote::go_quote;

/// How a [`Requirement`] relates its key to its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key in (a,b)`: the label exists and its value is one of the values.
    In,
    /// `key notin (a,b)`: the label is absent or its value is none of the values.
    NotIn,
    /// `key=a`
    Equals,
    /// `key==a` (the same as `=`, kept apart so the selector prints back as written).
    DoubleEquals,
    /// `key!=a`: the label is absent or has another value.
    NotEquals,
    /// `key`: the label exists.
    Exists,
    /// `!key`: the label does not exist.
    DoesNotExist,
    /// `key>3`: the label's value is an integer greater than the value.
    GreaterThan,
    /// `key<3`: the label's value is an integer less than the value.
    LessThan,
}

/// The labels of one object, as a selector sees them.
pub trait Labels {
    /// The value of label `key`, if the object has it.
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: std::hash::BuildHasher> Labels for HashMap<String, String, S> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// `metadata.labels` of a JSON object; a non-string value counts as absent.
impl Labels for serde_json::Map<String, serde_json::Value> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(serde_json::Value::as_str)
    }
}

impl<L: Labels + ?Sized> Labels for &L {
    fn label(&self, key: &str) -> Option<&str> {
        (**self).label(key)
    }
}

/// No labels at all (an object without `metadata.labels`).
impl Labels for () {
    fn label(&self, _key: &str) -> Option<&str> {
        None
    }
}

/// One term of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

/// Upstream's `field.Error` text: `<path>: Invalid value: <value>: <detail>`.
fn invalid(path: &str, value: &str, detail: &str) -> String {
    format!("{path}: Invalid value: {value}: {detail}")
}

/// Upstream's aggregate error text: one message alone, several in brackets.
fn aggregate(mut errs: Vec<String>) -> String {
    let mut seen = BTreeSet::new();
    errs.retain(|e| seen.insert(e.clone()));
    if errs.len() == 1 {
        errs.remove(0)
    } else {
        format!("[{}]", errs.join(", "))
    }
}

impl Requirement {
    /// A validated requirement. The errors are upstream's `field.ErrorList` texts, joined as
    /// upstream aggregates them.
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, String> {
        let mut errs = Vec::new();
        let key_errs = label_key_errors(key);
        if !key_errs.is_empty() {
            errs.push(invalid("key", &go_quote(key), &key_errs.join("; ")));
        }
        let shown = || {
            if values.is_empty() {
                // Upstream renders an empty (nil) list as JSON null.
                "null".to_string()
            } else {
                serde_json::to_string(&values).unwrap_or_default()
            }
        };
        match operator {
            Operator::In | Operator::NotIn => {
                if values.is_empty() {
                    errs.push(invalid("values", &shown(), "for 'in', 'notin' operators, values set can't be empty"));
                }
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals => {
                if values.len() != 1 {
                    errs.push(invalid("values", &shown(), "exact-match compatibility requires one single value"));
                }
            }
            Operator::Exists | Operator::DoesNotExist => {
                if !values.is_empty() {
                    errs.push(invalid("values", &shown(), "values set must be empty for exists and does not exist"));
                }
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(invalid("values", &shown(), "for 'Gt', 'Lt' operators, exactly one value is required"));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(invalid(
                            &format!("values[{i}]"),
                            &go_quote(v),
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        ));
                    }
                }
            }
        }
        for (i, v) in values.iter().enumerate() {
            let verrs = label_value_errors(v);
            if !verrs.is_empty() {
                errs.push(invalid(&format!("values[{i}][{key}]"), &go_quote(v), &verrs.join("; ")));
            }
        }
        if errs.is_empty() {
            Ok(Requirement { key: key.to_string(), operator, values })
        } else {
            Err(aggregate(errs))
        }
    }

    /// The label key this requirement is about.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, in the order given (sorted and deduplicated when parsed from a string).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    fn has_value(&self, v: &str) -> bool {
        self.values.iter().any(|x| x == v)
    }

    /// Whether an object with these labels satisfies this requirement.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                labels.label(&self.key).is_some_and(|v| self.has_value(v))
            }
            Operator::NotIn | Operator::NotEquals => labels.label(&self.key).is_none_or(|v| !self.has_value(v)),
            Operator::Exists => labels.label(&self.key).is_some(),
            Operator::DoesNotExist => labels.label(&self.key).is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(have) = labels.label(&self.key).and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let [want] = self.values.as_slice() else {
                    return false;
                };
                let Ok(want) = want.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.operator {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
        };
        f.write_str(op)?;
        let set = matches!(self.operator, Operator::In | Operator::NotIn);
        if set {
            f.write_str("(")?;
        }
        let mut values = self.values.clone();
        values.sort();
        f.write_str(&values.join(","))?;
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A parsed label selector: the AND of its requirements.
///
/// The empty selector matches everything; [`LabelSelector::nothing`] (what a missing
/// `metav1.LabelSelector` converts to) matches no object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// The selector that matches no object.
    pub fn nothing() -> Self {
        LabelSelector { requirements: Vec::new(), nothing: true }
    }

    /// Parse the string form, as `?labelSelector=` carries it. An empty or all-blank string
    /// selects everything.
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let mut requirements = Parser::new(selector).parse().map_err(SelectorError::LabelSelectorParse)?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements, nothing: false })
    }

    /// Convert the structured form found in workload specs. `None` selects nothing; a
    /// selector with neither `matchLabels` nor `matchExpressions` selects everything.
    pub fn from_metav1(selector: Option<&metav1::LabelSelector>) -> Result<Self, SelectorError> {
        let Some(selector) = selector else {
            return Ok(Self::nothing());
        };
        let match_labels = selector.match_labels.as_ref().filter(|m| !m.is_empty());
        let match_expressions = selector.match_expressions.as_ref().filter(|m| !m.is_empty());
        let mut requirements = Vec::new();
        for (k, v) in match_labels.into_iter().flatten() {
            requirements.push(
                Requirement::new(k, Operator::Equals, vec![v.clone()]).map_err(SelectorError::LabelSelectorConvert)?,
            );
        }
        for expr in match_expressions.into_iter().flatten() {
            let op = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError::LabelSelectorConvert(format!(
                        "{} is not a valid label selector operator",
                        go_quote(other)
                    )))
                }
            };
            let values = expr.values.clone().unwrap_or_default();
            requirements.push(Requirement::new(&expr.key, op, values).map_err(SelectorError::LabelSelectorConvert)?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements, nothing: false })
    }

    /// Convert the structured form from its JSON (as found inside a stored object).
    pub fn from_metav1_json(selector: Option<&serde_json::Value>) -> Result<Self, SelectorError> {
        match selector {
            None | Some(serde_json::Value::Null) => Ok(Self::nothing()),
            Some(v) => {
                let parsed: metav1::LabelSelector = serde_json::from_value(v.clone())
                    .map_err(|e| SelectorError::LabelSelectorConvert(format!("invalid label selector: {e}")))?;
                Self::from_metav1(Some(&parsed))
            }
        }
    }

    /// A selector requiring exactly these labels (what `matchLabels` alone means), without
    /// validation, as upstream's `SelectorFromSet`.
    pub fn from_set<'a>(set: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut requirements: Vec<Requirement> = set
            .into_iter()
            .map(|(k, v)| Requirement { key: k.to_string(), operator: Operator::Equals, values: vec![v.to_string()] })
            .collect();
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector { requirements, nothing: false }
    }

    /// Whether this selects every object.
    pub fn is_everything(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// Whether this selects no object at all.
    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether an object with these labels is selected.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether the JSON object `obj` is selected, by its `metadata.labels`.
    pub fn matches_object(&self, obj: &serde_json::Value) -> bool {
        match obj.pointer("/metadata/labels").and_then(serde_json::Value::as_object) {
            Some(labels) => self.matches(labels),
            None => self.matches(&()),
        }
    }

    /// The value `label` must have for an object to match, when the selector pins it to one.
    pub fn requires_exact_match(&self, label: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == label)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [v]) => Some(v),
            _ => None,
        }
    }
}

/// Upstream's string form: requirements sorted by key, joined with `,` (as the scale
/// subresource reports `status.selector`).
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    End,
    ClosedPar,
    Comma,
    Bang,
    DoubleEquals,
    Equals,
    Greater,
    In,
    Less,
    NotEquals,
    NotIn,
    OpenPar,
    Identifier,
}

fn symbol_token(s: &str) -> Option<Token> {
    Some(match s {
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::Bang,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::Greater,
        "<" => Token::Less,
        "!=" => Token::NotEquals,
        "(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_special(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn is_blank(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Splits the selector into tokens the way upstream's lexer does (a NUL byte ends the input,
/// as it does there).
fn lex(s: &str) -> Vec<(Token, String)> {
    let b = s.as_bytes();
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        while pos < end && is_blank(b[pos]) {
            pos += 1;
        }
        if pos >= end {
            out.push((Token::End, String::new()));
            return out;
        }
        if is_special(b[pos]) {
            // Longest run of symbol characters that still forms a token.
            let start = pos;
            let mut best: Option<(Token, usize)> = None;
            let mut i = pos;
            while i < end && is_special(b[i]) {
                i += 1;
                match symbol_token(&s[start..i]) {
                    Some(t) => best = Some((t, i)),
                    None if best.is_some() => break,
                    None => {}
                }
            }
            // Every single symbol character is a token, so `best` is always set.
            let (tok, stop) = best.unwrap_or((Token::Identifier, i));
            out.push((tok, s[start..stop].to_string()));
            pos = stop;
        } else {
            let start = pos;
            while pos < end && !is_special(b[pos]) && !is_blank(b[pos]) {
                pos += 1;
            }
            let word = &s[start..pos];
            let tok = match word {
                "in" => Token::In,
                "notin" => Token::NotIn,
                _ => Token::Identifier,
            };
            out.push((tok, word.to_string()));
        }
    }
}

struct Parser {
    items: Vec<(Token, String)>,
    pos: usize,
}

/// Where the parser is: `in` and `notin` are operators after a key and plain words elsewhere.
#[derive(Clone, Copy, PartialEq)]
enum Context {
    KeyAndOperator,
    Values,
}

impl Parser {
    fn new(s: &str) -> Self {
        Parser { items: lex(s), pos: 0 }
    }

    fn token(&self, at: usize, ctx: Context) -> (Token, String) {
        let (tok, lit) = self.items.get(at).cloned().unwrap_or((Token::End, String::new()));
        let tok = match (ctx, tok) {
            (Context::Values, Token::In | Token::NotIn) => Token::Identifier,
            (_, t) => t,
        };
        (tok, lit)
    }

    fn lookahead(&self, ctx: Context) -> (Token, String) {
        self.token(self.pos, ctx)
    }

    fn consume(&mut self, ctx: Context) -> (Token, String) {
        let t = self.token(self.pos, ctx);
        self.pos += 1;
        t
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut reqs = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Context::Values);
            match tok {
                Token::Identifier | Token::Bang => {
                    let r = self.parse_requirement().map_err(|e| format!("unable to parse requirement: {e}"))?;
                    reqs.push(r);
                    let (t, l) = self.consume(Context::Values);
                    match t {
                        Token::End => return Ok(reqs),
                        Token::Comma => {
                            let (t2, l2) = self.lookahead(Context::Values);
                            if t2 != Token::Identifier && t2 != Token::Bang {
                                return Err(format!("found '{l2}', expected: identifier after ','"));
                            }
                        }
                        _ => return Err(format!("found '{l}', expected: ',' or 'end of string'")),
                    }
                }
                Token::End => return Ok(reqs),
                _ => return Err(format!("found '{lit}', expected: !, identifier, or 'end of string'")),
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, op) = self.parse_key_and_infer_operator()?;
        if let Some(op @ (Operator::Exists | Operator::DoesNotExist)) = op {
            return Requirement::new(&key, op, Vec::new());
        }
        let op = self.parse_operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(&key, op, values.into_iter().collect())
    }

    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let mut op = None;
        let (mut tok, mut lit) = self.consume(Context::Values);
        if tok == Token::Bang {
            op = Some(Operator::DoesNotExist);
            (tok, lit) = self.consume(Context::Values);
        }
        if tok != Token::Identifier {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        let errs = label_key_errors(&lit);
        if !errs.is_empty() {
            return Err(invalid("<nil>", &go_quote(&lit), &errs.join("; ")));
        }
        let (next, _) = self.lookahead(Context::Values);
        if matches!(next, Token::End | Token::Comma) && op.is_none() {
            op = Some(Operator::Exists);
        }
        Ok((lit, op))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        let (tok, lit) = self.consume(Context::KeyAndOperator);
        Ok(match tok {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::Greater => Operator::GreaterThan,
            Token::Less => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => return Err(format!("found '{lit}', expected: in, notin, =, ==, !=, gt, lt")),
        })
    }

    fn parse_values(&mut self) -> Result<BTreeSet<String>, String> {
        let (tok, lit) = self.consume(Context::Values);
        if tok != Token::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(Context::Values);
        match tok {
            Token::Identifier | Token::Comma => {
                let set = self.parse_identifiers_list()?;
                let (close, _) = self.consume(Context::Values);
                if close != Token::ClosedPar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(set)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(BTreeSet::from([String::new()]))
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<BTreeSet<String>, String> {
        let mut set = BTreeSet::new();
        loop {
            let (tok, lit) = self.consume(Context::Values);
            match tok {
                Token::Identifier => {
                    set.insert(lit);
                    let (t2, l2) = self.lookahead(Context::Values);
                    match t2 {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(set),
                        _ => return Err(format!("found '{l2}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    // Empty values between commas or at either end are the empty string.
                    if set.is_empty() {
                        set.insert(String::new());
                    }
                    let (t2, _) = self.lookahead(Context::Values);
                    if t2 == Token::ClosedPar {
                        set.insert(String::new());
                        return Ok(set);
                    }
                    if t2 == Token::Comma {
                        set.insert(String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<BTreeSet<String>, String> {
        let (tok, _) = self.lookahead(Context::Values);
        if matches!(tok, Token::End | Token::Comma) {
            return Ok(BTreeSet::from([String::new()]));
        }
        let (tok, lit) = self.consume(Context::Values);
        if tok == Token::Identifier {
            Ok(BTreeSet::from([lit]))
        } else {
            Err(format!("found '{lit}', expected: identifier"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn parse_err(s: &str) -> String {
        match LabelSelector::parse(s) {
            Err(e) => e.to_string(),
            Ok(sel) => panic!("{s:?} parsed as {sel}"),
        }
    }

    #[test]
    fn grammar_and_printing() {
        for (input, printed) in [
            ("", ""),
            ("   ", ""),
            ("a=b", "a=b"),
            ("a==b", "a==b"),
            ("a!=b", "a!=b"),
            ("a", "a"),
            ("!a", "!a"),
            (" x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
            ("b=c,a=d", "a=d,b=c"),
            ("a in (z, y ,x)", "a in (x,y,z)"),
            ("a in (in)", "a in (in)"),
            ("in in (notin)", "in in (notin)"),
            ("a=", "a="),
            ("a=,b", "a=,b"),
            ("a>1,b<2", "a>1,b<2"),
            ("app.kubernetes.io/name=web", "app.kubernetes.io/name=web"),
            ("a in (,)", "a in ()"),
            ("a\tin\t(b)", "a in (b)"),
            ("a=b\0,c", "a=b"),
        ] {
            let sel = LabelSelector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(sel.to_string(), printed, "{input:?}");
        }
    }

    #[test]
    fn syntax_errors_read_like_upstream() {
        assert_eq!(parse_err("a b"), "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt");
        assert_eq!(parse_err("a=b,"), "found '', expected: identifier after ','");
        assert_eq!(parse_err("a=b c"), "found 'c', expected: ',' or 'end of string'");
        assert_eq!(parse_err(",a"), "found ',', expected: !, identifier, or 'end of string'");
        assert_eq!(parse_err("a in b"), "unable to parse requirement: found 'b' expected: '('");
        assert_eq!(parse_err("a in (b"), "unable to parse requirement: found '', expected: ',' or ')'");
        assert_eq!(parse_err("a in (=)"), "unable to parse requirement: found '=', expected: ',', ')' or identifier");
        assert_eq!(parse_err("a in (b,=)"), "unable to parse requirement: found '=', expected: ',', or identifier");
        assert_eq!(parse_err("a=(b)"), "unable to parse requirement: found '(', expected: identifier");
        assert_eq!(parse_err("!"), "unable to parse requirement: found '', expected: identifier");
        assert_eq!(parse_err("!a=b"), "found '=', expected: ',' or 'end of string'");
    }

    #[test]
    fn invalid_keys_and_values() {
        let e = parse_err("-a=b");
        assert!(
            e.starts_with("unable to parse requirement: <nil>: Invalid value: \"-a\": name part must consist of"),
            "{e}"
        );
        let e = parse_err("a=-b");
        assert!(e.starts_with("unable to parse requirement: values[0][a]: Invalid value: \"-b\": a valid label must be an empty string"), "{e}");
        let long = "v".repeat(64);
        let e = parse_err(&format!("a={long}"));
        assert!(e.contains("must be no more than 63 bytes"), "{e}");
        let e = parse_err("a>x");
        assert!(
            e.contains("values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer"),
            "{e}"
        );
        let e = parse_err("a=b/c");
        assert!(e.contains("values[0][a]"), "{e}");
    }

    #[test]
    fn matching() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
        let yes = |s: &str| LabelSelector::parse(s).map(|sel| sel.matches(&l)).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert!(yes(""));
        assert!(yes("app=web"));
        assert!(yes("app==web"));
        assert!(!yes("app=db"));
        assert!(yes("app!=db"));
        assert!(yes("missing!=x"));
        assert!(yes("app in (db,web)"));
        assert!(!yes("app notin (db,web)"));
        assert!(yes("missing notin (x)"));
        assert!(!yes("missing in (x)"));
        assert!(yes("tier"));
        assert!(!yes("!tier"));
        assert!(yes("!missing"));
        assert!(yes("n>4,n<6"));
        assert!(!yes("n>5"));
        assert!(!yes("app>1"));
        assert!(yes("app=web,tier=front"));
        assert!(!yes("app=web,tier=back"));
        assert!(!yes("app="));
        assert!(!yes("missing in (,x)"));
    }

    #[test]
    fn metav1_conversion() {
        assert!(LabelSelector::from_metav1(None).map(|s| s.is_nothing()).unwrap_or(false));
        let empty = metav1::LabelSelector::default();
        let s = LabelSelector::from_metav1(Some(&empty)).unwrap_or_else(|e| panic!("{e}"));
        assert!(s.is_everything());
        assert!(s.matches(&labels(&[])));
        let sel: metav1::LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "legacy", "operator": "DoesNotExist"}
            ]
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let s = LabelSelector::from_metav1(Some(&sel)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.to_string(), "app=web,!legacy,tier in (edge,front)");
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "edge")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "edge"), ("legacy", "1")])));

        let bad_op: metav1::LabelSelector = serde_json::from_value(serde_json::json!({
            "matchExpressions": [{"key": "a", "operator": "Equals", "values": ["b"]}]
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            LabelSelector::from_metav1(Some(&bad_op)).err().map(|e| e.to_string()),
            Some("\"Equals\" is not a valid label selector operator".to_string())
        );
        let no_values: metav1::LabelSelector = serde_json::from_value(serde_json::json!({
            "matchExpressions": [{"key": "a", "operator": "In"}]
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            LabelSelector::from_metav1(Some(&no_values)).err().map(|e| e.to_string()),
            Some("values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty".to_string())
        );
        let exists_with_values: metav1::LabelSelector = serde_json::from_value(serde_json::json!({
            "matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            LabelSelector::from_metav1(Some(&exists_with_values)).err().map(|e| e.to_string()),
            Some("values: Invalid value: [\"x\"]: values set must be empty for exists and does not exist".to_string())
        );
        let two_errors: metav1::LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"-bad": "-worse"}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let e = LabelSelector::from_metav1(Some(&two_errors)).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.starts_with("[key: Invalid value: \"-bad\": name part must consist"), "{e}");
        assert!(e.contains(", values[0][-bad]: Invalid value: \"-worse\": a valid label must be"), "{e}");
    }

    #[test]
    fn matches_json_objects() {
        let s = LabelSelector::parse("app=web").unwrap_or_else(|e| panic!("{e}"));
        assert!(s.matches_object(&serde_json::json!({"metadata": {"labels": {"app": "web"}}})));
        assert!(!s.matches_object(&serde_json::json!({"metadata": {}})));
        let s = LabelSelector::parse("!app").unwrap_or_else(|e| panic!("{e}"));
        assert!(s.matches_object(&serde_json::json!({"metadata": {}})));
        assert_eq!(
            LabelSelector::parse("a in (b),c=d").map(|s| s.requires_exact_match("a").map(str::to_string)),
            Ok(Some("b".to_string()))
        );
    }
}
