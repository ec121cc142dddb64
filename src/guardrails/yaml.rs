//! JSON values written as block-style YAML, for CloudFormation templates.
//!
//! Written here rather than taken from a crate: `serde_yaml` is archived and its forks are young,
//! and what is needed is small. Every string is written as a JSON string, which is a valid YAML
//! double-quoted scalar (YAML 1.2 takes JSON's escapes), so nothing a name or a policy holds can
//! change the document's shape; keys that are plain identifiers are written bare. Intrinsic
//! functions use their long form (`Fn::GetAtt`, `Ref`) as ordinary maps: no tags.

use serde_json::Value;

/// The YAML document of `v` (a map at the top), ending with a newline.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => map(&mut out, m, 0),
        other => {
            out += &scalar(other);
            out.push('\n');
        }
    }
    out
}

fn key(k: &str) -> String {
    let plain = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-' | '.'))
        && k.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && !k.ends_with(':')
        && !k.contains(": ")
        // YAML 1.1 (PyYAML, which cfn-lint reads with) takes these for booleans and null.
        && !matches!(
            k.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        );
    if plain {
        k.to_owned()
    } else {
        Value::String(k.to_owned()).to_string()
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Object(m) if m.is_empty() => "{}".into(),
        Value::Array(a) if a.is_empty() => "[]".into(),
        // A JSON string is a YAML double-quoted scalar; numbers, booleans and null are the
        // same in both.
        other => other.to_string(),
    }
}

fn is_block(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

fn map(out: &mut String, m: &serde_json::Map<String, Value>, indent: usize) {
    for (k, v) in m {
        out.push_str(&" ".repeat(indent));
        out.push_str(&key(k));
        out.push(':');
        if is_block(v) {
            out.push('\n');
            block(out, v, indent + 2);
        } else {
            out.push(' ');
            out.push_str(&scalar(v));
            out.push('\n');
        }
    }
}

fn block(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) => map(out, m, indent),
        Value::Array(a) => {
            for item in a {
                out.push_str(&" ".repeat(indent));
                out.push('-');
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        // The first key on the dash's line, the rest under it.
                        let mut inner = String::new();
                        map(&mut inner, m, indent + 2);
                        out.push(' ');
                        out.push_str(inner.trim_start());
                    }
                    Value::Array(b) if !b.is_empty() => {
                        out.push('\n');
                        block(out, item, indent + 2);
                    }
                    other => {
                        out.push(' ');
                        out.push_str(&scalar(other));
                        out.push('\n');
                    }
                }
            }
        }
        other => {
            out.push_str(&" ".repeat(indent));
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_maps_lists_and_odd_strings() {
        let v = json!({
            "AWSTemplateFormatVersion": "2010-09-09",
            "Resources": {
                "Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "a: b # c"}},
                "Rule": {"Properties": {"Targets": [{"Arn": {"Ref": "Topic"}, "Id": "t"}],
                         "Empty": [], "None": {}, "N": 3, "Yes": true,
                         "List": [["x"], "y\n\"z\""]}}
            }
        });
        let y = to_yaml(&v);
        assert_eq!(
            y,
            "AWSTemplateFormatVersion: \"2010-09-09\"\nResources:\n  Topic:\n    Type: \"AWS::SNS::Topic\"\n    Properties:\n      TopicName: \"a: b # c\"\n  Rule:\n    Properties:\n      Targets:\n        - Arn:\n            Ref: \"Topic\"\n          Id: \"t\"\n      Empty: []\n      None: {}\n      \"N\": 3\n      \"Yes\": true\n      List:\n        -\n          - \"x\"\n        - \"y\\n\\\"z\\\"\"\n"
        );
    }

    #[test]
    fn keys_that_are_not_plain_are_quoted() {
        let y = to_yaml(&json!({"aws:SourceArn": 1, "a b": 2, "x: y": 3, "": 4}));
        assert_eq!(y, "aws:SourceArn: 1\n\"a b\": 2\n\"x: y\": 3\n\"\": 4\n");
    }
}
