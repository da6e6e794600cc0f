//! Reading upstream's JSON the way Go's `encoding/json` does, one object at a time: a key matches exactly
//! first, else ASCII case-insensitively; `null` counts as absent; a value of the wrong type is an error
//! naming its JSON path (the first one is kept); keys left over are warned about as unknown, and fields
//! upstream reads but overrides are noted. [`super`] maps the objects onto the manifest.

use crate::manifest::error::{did_you_mean, Error, FieldPath};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// The reader's state: where the manifest's fields came from, warnings, and the first error.
pub(super) struct Decoder {
    pub(super) name: String,
    pub(super) paths: HashMap<String, String>,
    pub(super) warnings: Vec<String>,
    pub(super) error: Option<Error>,
}

/// One JSON object being read: known keys are taken from it; what is left over is unknown.
pub(super) struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
    taken: Vec<&'a str>,
}

impl<'a> Obj<'a> {
    /// Go's matching: an exact key first, else the first key equal ignoring ASCII case. `null` counts as absent.
    pub(super) fn get(&mut self, key: &str) -> Option<(&'a Value, String)> {
        let found = self
            .map
            .get_key_value(key)
            .or_else(|| self.map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)));
        let (k, v) = found?;
        self.taken.push(k.as_str());
        (!v.is_null()).then(|| {
            (
                v,
                format!("{}.{k}", self.path)
                    .trim_start_matches('.')
                    .to_string(),
            )
        })
    }
}

impl Decoder {
    pub(super) fn fail(&mut self, json_path: &str, problem: String, fix: &str) {
        if self.error.is_none() {
            self.error = Some(Error {
                source: self.name.clone(),
                at: None,
                field: json_path.to_string(),
                problem,
                fix: fix.to_string(),
            });
        }
    }

    pub(super) fn obj<'a>(&mut self, v: &'a Value, path: &str) -> Option<Obj<'a>> {
        match v {
            Value::Object(map) => Some(Obj {
                map,
                path: path.to_string(),
                taken: Vec::new(),
            }),
            other => {
                self.fail(
                    path,
                    format!("expected an object, found {}", kind(other)),
                    "write a JSON object { ... }",
                );
                None
            }
        }
    }

    pub(super) fn finish(&mut self, o: Obj<'_>, known: &[&str]) {
        for k in o.map.keys() {
            if !o.taken.contains(&k.as_str()) && !known.iter().any(|n| n.eq_ignore_ascii_case(k)) {
                let hint = did_you_mean(k, known.iter().copied())
                    .map(|s| format!(" (did you mean \"{s}\"?)"))
                    .unwrap_or_default();
                let at = if o.path.is_empty() {
                    k.clone()
                } else {
                    format!("{}.{k}", o.path)
                };
                self.warnings
                    .push(format!("{}: {at}: unknown key ignored{hint}", self.name));
            }
        }
    }

    pub(super) fn string(
        &mut self,
        o: &mut Obj<'_>,
        key: &str,
        toml: Option<&FieldPath>,
    ) -> Option<String> {
        let (v, path) = o.get(key)?;
        match v {
            Value::String(s) => {
                if let Some(t) = toml {
                    self.paths.insert(t.to_string(), path);
                }
                Some(s.clone())
            }
            other => {
                self.fail(
                    &path,
                    format!("expected a string, found {}", kind(other)),
                    "write the value in double quotes",
                );
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, o: &mut Obj<'_>, key: &str, toml: &FieldPath) -> Option<bool> {
        let (v, path) = o.get(key)?;
        match v {
            Value::Bool(b) => {
                self.paths.insert(toml.to_string(), path);
                Some(*b)
            }
            other => {
                self.fail(
                    &path,
                    format!("expected true or false, found {}", kind(other)),
                    "write true or false without quotes",
                );
                None
            }
        }
    }

    /// Fields upstream reads and then overrides: accepted, noted at info level by the caller.
    pub(super) fn ignored(&mut self, o: &mut Obj<'_>, keys: &[&str], why: &str) {
        for key in keys {
            if let Some((Value::String(s), p)) = o.get(key) {
                if !s.is_empty() {
                    self.warnings
                        .push(format!("{}: {p}: ignored ({why})", self.name));
                }
            }
        }
    }
}

/// How a JSON value is named in a message.
pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
