//! Reading a TOML manifest: deserialization with `deny_unknown_fields`, errors turned into
//! `file:line:column: field: problem; fix: ...` with a "did you mean" for unknown keys, and a locator that
//! finds any field's line and column for the semantic checks that come after.
#![forbid(unsafe_code)]

use super::error::{did_you_mean, Error, FieldPath, Locate, Seg};
use super::schema::Manifest;
use std::ops::Range;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// A parsed TOML source that can locate fields.
#[derive(Debug)]
pub struct TomlSource<'a> {
    name: String,
    text: &'a str,
    doc: Spanned<DeTable<'a>>,
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, col)
}

fn at(text: &str, span: &Range<usize>) -> String {
    let (l, c) = line_col(text, span.start);
    format!("{l}:{c}")
}

fn key_eq(k: &Spanned<toml::de::DeString<'_>>, want: &str) -> bool {
    k.get_ref().as_ref() == want
}

/// The path of keys (as text) to the key or value whose span holds `span`. Searched depth-first over the
/// whole document: the span of an array-of-tables item covers only its `[[header]]`, not its body.
fn path_to(table: &DeTable<'_>, span: &Range<usize>) -> Option<String> {
    let contains = |s: Range<usize>| s.start <= span.start && span.end <= s.end.max(s.start + 1);
    for (k, v) in table.iter() {
        let name = k.get_ref().to_string();
        if contains(k.span()) {
            return Some(name);
        }
        let inner =
            match v.get_ref() {
                DeValue::Table(t) => path_to(t, span).map(|p| format!("{name}.{p}")),
                DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| match item
                    .get_ref()
                {
                    DeValue::Table(t) => path_to(t, span).map(|p| format!("{name}[{i}].{p}")),
                    _ if contains(item.span()) => Some(format!("{name}[{i}]")),
                    _ => None,
                }),
                _ => None,
            };
        if inner.is_some() {
            return inner;
        }
        if contains(v.span()) {
            return Some(name);
        }
    }
    None
}

/// Candidate field names quoted in serde's "expected one of `a`, `b`" message.
fn expected_names(msg: &str) -> Vec<&str> {
    msg.split_once("expected")
        .map(|(_, rest)| rest.split('`').skip(1).step_by(2).collect())
        .unwrap_or_default()
}

impl<'a> TomlSource<'a> {
    /// Parse `text` (named `name` in messages) into the schema.
    pub fn parse(name: &str, text: &'a str) -> Result<(Self, Manifest), Error> {
        let doc = DeTable::parse(text).map_err(|e| syntax_error(name, text, &e))?;
        let src = Self {
            name: name.to_string(),
            text,
            doc,
        };
        let manifest: Manifest = toml::from_str(text).map_err(|e| src.schema_error(&e))?;
        Ok((src, manifest))
    }

    fn schema_error(&self, e: &toml::de::Error) -> Error {
        let msg = e.message().trim();
        let span = e.span();
        let field = span
            .as_ref()
            .and_then(|s| path_to(self.doc.get_ref(), s))
            .unwrap_or_default();
        let (problem, fix) = if let Some(rest) = msg.strip_prefix("unknown field `") {
            let unknown = rest.split('`').next().unwrap_or_default();
            let names = expected_names(msg);
            let fix = match did_you_mean(unknown, names.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("remove it; the fields here are {}", names.join(", ")),
            };
            (format!("unknown field `{unknown}`"), fix)
        } else if let Some(rest) = msg.strip_prefix("missing field `") {
            let missing = rest.split('`').next().unwrap_or_default();
            (
                format!("missing field `{missing}`"),
                format!("add `{missing} = ...` (see README, Manifest reference)"),
            )
        } else if msg.starts_with("invalid type") {
            let fix = msg
                .split_once("expected ")
                .map(|(_, e)| format!("write {e}"))
                .unwrap_or_default();
            (
                msg.split(", expected").next().unwrap_or(msg).to_string(),
                fix,
            )
        } else if let Some((problem, fix)) = msg.split_once("; ") {
            // Our own value parsers (sizes, durations) word their messages "problem; fix".
            (problem.to_string(), fix.to_string())
        } else {
            (msg.to_string(), String::new())
        };
        Error {
            source: self.name.clone(),
            at: span.map(|s| at(self.text, &s)),
            field,
            problem,
            fix,
        }
    }

    fn find(&self, path: &FieldPath) -> Range<usize> {
        let mut best = self.doc.span();
        let mut cur: Option<&DeValue<'_>> = None;
        let mut table: Option<&DeTable<'_>> = Some(self.doc.get_ref());
        for seg in &path.0 {
            let next = match (seg, table, cur) {
                (Seg::Key(k), Some(t), _) => {
                    t.iter().find(|(key, _)| key_eq(key, k)).map(|(_, v)| v)
                }
                (Seg::Index(i), _, Some(DeValue::Array(a))) => a.get(*i),
                _ => None,
            };
            let Some(v) = next else { break };
            best = v.span();
            cur = Some(v.get_ref());
            table = match v.get_ref() {
                DeValue::Table(t) => Some(t),
                _ => None,
            };
        }
        best
    }
}

impl Locate for TomlSource<'_> {
    fn source(&self) -> &str {
        &self.name
    }

    fn locate(&self, path: &FieldPath) -> (Option<String>, String) {
        (Some(at(self.text, &self.find(path))), path.to_string())
    }
}

fn syntax_error(name: &str, text: &str, e: &toml::de::Error) -> Error {
    Error {
        source: name.to_string(),
        at: e.span().map(|s| at(text, &s)),
        field: String::new(),
        problem: format!("TOML syntax error: {}", e.message().trim()),
        fix: "correct the TOML syntax (strings in double quotes, one key = value per line, tables as [name])"
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        assert_eq!(line_col("a\nbc\nd", 3), (2, 2));
        assert_eq!(line_col("abc", 0), (1, 1));
    }

    #[test]
    fn unknown_field_is_located_and_suggested() {
        let text = "test_mode = true\n\n[[filesystem]]\nmount_pont = \"/a\"\n";
        let e = TomlSource::parse("m.toml", text).unwrap_err();
        assert_eq!(e.at.as_deref(), Some("4:1"), "{e}");
        assert_eq!(e.field, "filesystem[0].mount_pont", "{e}");
        assert!(e.fix.contains("did you mean `mount_point`"), "{e}");
    }

    #[test]
    fn locate_finds_nested_values() {
        let text = "[[filesystem]]\nmount_point = \"/a\"\nurl = \"x\"\n[[filesystem]]\nmount_point = \"b\"\nurl = \"y\"\n";
        let (src, _m) = TomlSource::parse("m.toml", text).unwrap();
        let p = FieldPath::root()
            .key("filesystem")
            .index(1)
            .key("mount_point");
        assert_eq!(src.locate(&p).0.as_deref(), Some("5:15"));
    }
}
