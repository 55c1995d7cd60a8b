//! Calico-style label selectors: `all()`, `has(k)`, `k == 'v'`, `k != 'v'`,
//! `k in {'a','b'}`, `k not in {...}`, `k contains 'x'`, `k starts with 'x'`,
//! `k ends with 'x'`, `!`, `&&`, `||` and parentheses. An empty selector matches all.
//!
//! Parsing happens once (validation, and whoever evaluates selectors); evaluation is a
//! pure function of a label map.

use std::collections::BTreeMap;
use std::fmt;

/// A parsed selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    All,
    Has(String),
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Contains(String, String),
    StartsWith(String, String),
    EndsWith(String, String),
    Not(Box<Selector>),
    And(Box<Selector>, Box<Selector>),
    Or(Box<Selector>, Box<Selector>),
}

/// Why a selector does not parse, with the byte offset.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("selector {selector:?} does not parse at offset {offset}: {reason}")]
pub struct SelectorError {
    pub selector: String,
    pub offset: usize,
    pub reason: String,
}

impl Selector {
    /// Parses a selector expression.
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let mut parser = Parser { text, pos: 0 };
        parser.skip_ws();
        if parser.at_end() {
            return Ok(Selector::All);
        }
        let selector = parser.or()?;
        parser.skip_ws();
        if !parser.at_end() {
            return Err(parser.error("unexpected text after the expression"));
        }
        Ok(selector)
    }

    /// Whether the labels satisfy the selector.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Selector::All => true,
            Selector::Has(k) => labels.contains_key(k),
            Selector::Eq(k, v) => labels.get(k) == Some(v),
            Selector::NotEq(k, v) => labels.get(k) != Some(v),
            Selector::In(k, set) => labels.get(k).is_some_and(|v| set.contains(v)),
            Selector::NotIn(k, set) => labels.get(k).is_none_or(|v| !set.contains(v)),
            Selector::Contains(k, s) => labels.get(k).is_some_and(|v| v.contains(s.as_str())),
            Selector::StartsWith(k, s) => labels.get(k).is_some_and(|v| v.starts_with(s.as_str())),
            Selector::EndsWith(k, s) => labels.get(k).is_some_and(|v| v.ends_with(s.as_str())),
            Selector::Not(inner) => !inner.matches(labels),
            Selector::And(a, b) => a.matches(labels) && b.matches(labels),
            Selector::Or(a, b) => a.matches(labels) || b.matches(labels),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |s: &[String]| {
            s.iter()
                .map(|v| format!("'{v}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Selector::All => write!(f, "all()"),
            Selector::Has(k) => write!(f, "has({k})"),
            Selector::Eq(k, v) => write!(f, "{k} == '{v}'"),
            Selector::NotEq(k, v) => write!(f, "{k} != '{v}'"),
            Selector::In(k, s) => write!(f, "{k} in {{{}}}", set(s)),
            Selector::NotIn(k, s) => write!(f, "{k} not in {{{}}}", set(s)),
            Selector::Contains(k, v) => write!(f, "{k} contains '{v}'"),
            Selector::StartsWith(k, v) => write!(f, "{k} starts with '{v}'"),
            Selector::EndsWith(k, v) => write!(f, "{k} ends with '{v}'"),
            Selector::Not(inner) => write!(f, "!({inner})"),
            Selector::And(a, b) => write!(f, "({a} && {b})"),
            Selector::Or(a, b) => write!(f, "({a} || {b})"),
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, reason: &str) -> SelectorError {
        SelectorError {
            selector: self.text.to_string(),
            offset: self.pos,
            reason: reason.to_string(),
        }
    }

    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.text.len() - trimmed.len();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    /// Eats a keyword only when it is not the start of a longer identifier.
    fn eat_word(&mut self, word: &str) -> bool {
        self.skip_ws();
        let rest = self.rest();
        if rest.starts_with(word) && !rest[word.len()..].chars().next().is_some_and(is_ident_char) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Selector, SelectorError> {
        let mut left = self.and()?;
        while self.eat("||") {
            let right = self.and()?;
            left = Selector::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Selector, SelectorError> {
        let mut left = self.unary()?;
        while self.eat("&&") {
            let right = self.unary()?;
            left = Selector::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Selector, SelectorError> {
        self.skip_ws();
        if self.rest().starts_with("!=") {
            return Err(self.error("expected an expression"));
        }
        if self.eat("!") {
            return Ok(Selector::Not(Box::new(self.unary()?)));
        }
        if self.eat("(") {
            let inner = self.or()?;
            if !self.eat(")") {
                return Err(self.error("expected ')'"));
            }
            return Ok(inner);
        }
        self.term()
    }

    fn ident(&mut self) -> Result<String, SelectorError> {
        self.skip_ws();
        let len = self
            .rest()
            .find(|c: char| !is_ident_char(c))
            .unwrap_or(self.rest().len());
        if len == 0 {
            return Err(self.error("expected a label key"));
        }
        let ident = self.rest()[..len].to_string();
        self.pos += len;
        Ok(ident)
    }

    fn string(&mut self) -> Result<String, SelectorError> {
        self.skip_ws();
        let quote = match self.rest().chars().next() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err(self.error("expected a quoted value")),
        };
        let body = &self.rest()[1..];
        let Some(end) = body.find(quote) else {
            return Err(self.error("unterminated string"));
        };
        let value = body[..end].to_string();
        self.pos += end + 2;
        Ok(value)
    }

    fn set(&mut self) -> Result<Vec<String>, SelectorError> {
        if !self.eat("{") {
            return Err(self.error("expected '{'"));
        }
        let mut values = Vec::new();
        if self.eat("}") {
            return Ok(values);
        }
        loop {
            values.push(self.string()?);
            if self.eat("}") {
                return Ok(values);
            }
            if !self.eat(",") {
                return Err(self.error("expected ',' or '}'"));
            }
        }
    }

    fn term(&mut self) -> Result<Selector, SelectorError> {
        if self.eat_word("all") {
            return self.empty_call(Selector::All);
        }
        if self.eat_word("global") {
            return self.empty_call(Selector::All);
        }
        if self.eat_word("has") {
            if !self.eat("(") {
                return Err(self.error("expected '(' after has"));
            }
            let key = self.ident()?;
            if !self.eat(")") {
                return Err(self.error("expected ')'"));
            }
            return Ok(Selector::Has(key));
        }
        let key = self.ident()?;
        if self.eat("==") {
            return Ok(Selector::Eq(key, self.string()?));
        }
        if self.eat("!=") {
            return Ok(Selector::NotEq(key, self.string()?));
        }
        if self.eat_word("in") {
            return Ok(Selector::In(key, self.set()?));
        }
        if self.eat_word("not") {
            if !self.eat_word("in") {
                return Err(self.error("expected 'in' after 'not'"));
            }
            return Ok(Selector::NotIn(key, self.set()?));
        }
        if self.eat_word("contains") {
            return Ok(Selector::Contains(key, self.string()?));
        }
        if self.eat_word("starts") {
            if !self.eat_word("with") {
                return Err(self.error("expected 'with' after 'starts'"));
            }
            return Ok(Selector::StartsWith(key, self.string()?));
        }
        if self.eat_word("ends") {
            if !self.eat_word("with") {
                return Err(self.error("expected 'with' after 'ends'"));
            }
            return Ok(Selector::EndsWith(key, self.string()?));
        }
        Err(self
            .error("expected an operator (==, !=, in, not in, contains, starts with, ends with)"))
    }

    fn empty_call(&mut self, selector: Selector) -> Result<Selector, SelectorError> {
        if self.eat("(") && self.eat(")") {
            Ok(selector)
        } else {
            Err(self.error("expected '()'"))
        }
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn equality_and_boolean_operators_evaluate() {
        let s = Selector::parse("rack == 'r1' && !has(edge) || role in {'rr', 'tor'}").unwrap();
        assert!(s.matches(&labels(&[("rack", "r1")])));
        assert!(!s.matches(&labels(&[("rack", "r1"), ("edge", "")])));
        assert!(s.matches(&labels(&[("role", "rr"), ("edge", "")])));
        assert!(!s.matches(&labels(&[("rack", "r2")])));
    }

    #[test]
    fn empty_and_all_match_everything() {
        assert_eq!(Selector::parse("").unwrap(), Selector::All);
        assert!(Selector::parse(" all() ").unwrap().matches(&labels(&[])));
    }

    #[test]
    fn not_in_matches_missing_labels() {
        let s = Selector::parse("zone not in {\"a\"}").unwrap();
        assert!(s.matches(&labels(&[])));
        assert!(!s.matches(&labels(&[("zone", "a")])));
    }

    #[test]
    fn string_operators_and_prefixed_keys_parse() {
        let s = Selector::parse("kubernetes.io/hostname starts with 'node' && x ends with 'z'")
            .unwrap();
        assert!(s.matches(&labels(&[("kubernetes.io/hostname", "node1"), ("x", "az")])));
    }

    #[test]
    fn broken_selectors_are_refused_with_offset() {
        for bad in [
            "rack ==",
            "rack = 'a'",
            "has(",
            "(a == 'b'",
            "a in {'x'",
            "a == 'b' junk",
        ] {
            assert!(Selector::parse(bad).is_err(), "{bad} parsed");
        }
        assert_eq!(Selector::parse("rack ==").unwrap_err().offset, 7);
    }
}
