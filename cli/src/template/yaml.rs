//! A small builder over saphyr's YAML tree and emitter, with CloudFormation's
//! intrinsic functions in their long form (`Ref:`, `Fn::GetAtt:`, `Fn::Sub:`),
//! so the output needs no custom tags.
//!
//! Quoting is conservative for YAML 1.1 readers (cfn-lint and the SAM CLI
//! load templates with PyYAML): a string that does not start with a letter,
//! or is one of YAML 1.1's boolean/null words, is written double-quoted, so
//! `2010-09-09` stays a string and never becomes a date.

use std::borrow::Cow;

use saphyr::{Mapping, Scalar, ScalarStyle, Yaml, YamlEmitter};

use super::TemplateError;

pub type Y = Yaml<'static>;

const YAML11_WORDS: &[&str] = &[
    "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
];

fn raw(text: String) -> Y {
    Yaml::Representation(Cow::Owned(text), ScalarStyle::Plain, None)
}

/// A string scalar.
pub fn s(v: impl Into<String>) -> Y {
    let v = v.into();
    let plain = v.starts_with(|c: char| c.is_ascii_alphabetic())
        && !v.contains('\n')
        && !YAML11_WORDS.contains(&v.to_ascii_lowercase().as_str());
    if plain {
        // saphyr still quotes what needs it (`:`, `#`, `{`, ...).
        Yaml::Value(Scalar::String(Cow::Owned(v)))
    } else {
        // A JSON string is a valid YAML double-quoted scalar.
        raw(serde_json::Value::String(v).to_string())
    }
}

/// A multi-line string, written as a literal block (`|`).
pub fn block(v: impl Into<String>) -> Y {
    Yaml::Value(Scalar::String(Cow::Owned(v.into())))
}

pub fn n(v: i64) -> Y {
    Yaml::Value(Scalar::Integer(v))
}

pub fn b(v: bool) -> Y {
    Yaml::Value(Scalar::Boolean(v))
}

/// A mapping key: plain when it is a simple name (`Fn::GetAtt`,
/// `aws:SecureTransport`), else quoted like any string.
fn key(k: &str) -> Y {
    let simple = k.starts_with(|c: char| c.is_ascii_alphabetic())
        && !k.ends_with(':')
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '-'));
    if simple {
        raw(k.to_owned())
    } else {
        s(k)
    }
}

/// A mapping in the given order.
pub fn m<K: AsRef<str>>(pairs: impl IntoIterator<Item = (K, Y)>) -> Y {
    let mut map = Mapping::new();
    for (k, v) in pairs {
        map.insert(key(k.as_ref()), v);
    }
    Yaml::Mapping(map)
}

pub fn l(items: impl IntoIterator<Item = Y>) -> Y {
    Yaml::Sequence(items.into_iter().collect())
}

/// A list of strings.
pub fn ls<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Y {
    l(items.into_iter().map(s))
}

pub fn r#ref(logical_id: &str) -> Y {
    m([("Ref", s(logical_id))])
}

pub fn att(logical_id: &str, attribute: &str) -> Y {
    m([("Fn::GetAtt", ls([logical_id, attribute]))])
}

pub fn sub(text: impl Into<String>) -> Y {
    m([("Fn::Sub", s(text))])
}

pub fn sub_block(text: impl Into<String>) -> Y {
    m([("Fn::Sub", block(text))])
}

/// `Fn::Sub` with its own variables.
pub fn sub_with<K: AsRef<str>>(text: &str, vars: impl IntoIterator<Item = (K, Y)>) -> Y {
    m([("Fn::Sub", l([s(text), m(vars)]))])
}

pub fn iff(condition: &str, yes: Y, no: Y) -> Y {
    m([("Fn::If", l([s(condition), yes, no]))])
}

pub fn no_value() -> Y {
    r#ref("AWS::NoValue")
}

/// Emits one node as block YAML, without the `---` document marker, each
/// line prefixed with `indent` spaces, ending with a line break.
pub fn emit(node: &Y, indent: usize) -> Result<String, TemplateError> {
    let mut out = String::new();
    let mut emitter = YamlEmitter::new(&mut out);
    emitter.multiline(true);
    emitter
        .dump(node)
        .map_err(|e| TemplateError::Emit(e.to_string()))?;
    let body = out.strip_prefix("---\n").unwrap_or(&out);
    let pad = " ".repeat(indent);
    let mut text = String::with_capacity(body.len() + 64);
    for line in body.lines() {
        if !line.is_empty() {
            text.push_str(&pad);
            text.push_str(line);
        }
        text.push('\n');
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_that_yaml_1_1_would_retype_are_quoted() {
        let doc = m([
            ("date", s("2010-09-09")),
            ("word", s("no")),
            ("number", s("60")),
            ("star", s("*")),
            ("name", s("rate(15 minutes)")),
        ]);
        let text = emit(&doc, 0).unwrap();
        assert_eq!(
            text,
            "date: \"2010-09-09\"\nword: \"no\"\nnumber: \"60\"\nstar: \"*\"\nname: rate(15 minutes)\n"
        );
    }

    #[test]
    fn intrinsics_are_written_in_long_form_with_plain_keys() {
        let text = emit(&m([("Queue", att("WarehouseQueue", "Arn"))]), 2).unwrap();
        assert_eq!(
            text,
            "  Queue:\n    Fn::GetAtt:\n      - WarehouseQueue\n      - Arn\n"
        );
    }
}
