//! A parser for the small subset of TOML that `tests/vm/*/scenario.toml` uses, so xtask needs no dependencies.
//!
//! Supported: `#` comments, `key = value` lines at the top level (no tables), and values that are basic strings
//! (`"..."` with `\" \\ \n \t` escapes), integers, booleans, or arrays of those (which may span lines and end with
//! a comma). Anything else is an error naming the line, so a scenario never means something other than what it
//! says. Real TOML parsers accept every file this one accepts, with the same meaning.

use std::collections::BTreeMap;

/// A parsed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `"text"`
    Str(String),
    /// `42`, `-1`
    Int(i64),
    /// `true` / `false`
    Bool(bool),
    /// `[ ... ]`
    Array(Vec<Value>),
}

/// Parse `text` into its top-level keys (a duplicate key is an error).
pub fn parse(text: &str) -> Result<BTreeMap<String, Value>, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
        line: 1,
    };
    let mut out = BTreeMap::new();
    loop {
        p.skip_blank(true);
        if p.i >= p.s.len() {
            return Ok(out);
        }
        let line = p.line;
        let key = p.key()?;
        p.skip_blank(false);
        p.expect(b'=')?;
        p.skip_blank(false);
        let value = p.value()?;
        p.skip_blank(false);
        if p.i < p.s.len() && p.s[p.i] != b'\n' {
            return Err(p.err("expected end of line after the value"));
        }
        if out.insert(key.clone(), value).is_some() {
            return Err(format!("line {line}: duplicate key `{key}`"));
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    line: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> String {
        format!("line {}: {what}", self.line)
    }

    /// Skip spaces, tabs and comments; also newlines when `newlines`.
    fn skip_blank(&mut self, newlines: bool) {
        while let Some(&c) = self.s.get(self.i) {
            match c {
                b' ' | b'\t' | b'\r' => self.i += 1,
                b'\n' if newlines => {
                    self.line += 1;
                    self.i += 1;
                }
                b'#' => {
                    while self.s.get(self.i).is_some_and(|&c| c != b'\n') {
                        self.i += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected `{}`", c as char)))
        }
    }

    fn key(&mut self) -> Result<String, String> {
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
        {
            self.i += 1;
        }
        if start == self.i {
            return Err(self.err("expected a bare key (tables are not supported here)"));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn value(&mut self) -> Result<Value, String> {
        match self.s.get(self.i) {
            Some(b'"') => self.string().map(Value::Str),
            Some(b'[') => self.array(),
            Some(c) if c.is_ascii_digit() || *c == b'-' || *c == b'+' => self.int(),
            Some(_) if self.s[self.i..].starts_with(b"true") => {
                self.i += 4;
                Ok(Value::Bool(true))
            }
            Some(_) if self.s[self.i..].starts_with(b"false") => {
                self.i += 5;
                Ok(Value::Bool(false))
            }
            _ => Err(self.err("expected a string, integer, boolean or array")),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        if self.s[self.i..].starts_with(b"\"\"\"") {
            return Err(self.err("multi-line strings are not supported here; use a file"));
        }
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return Err(self.err("unterminated string"));
            };
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).map_err(|_| self.err("string is not UTF-8")),
                b'\n' => return Err(self.err("unterminated string")),
                b'\\' => {
                    let e = self.s.get(self.i).copied();
                    self.i += 1;
                    out.push(match e {
                        Some(b'"') => b'"',
                        Some(b'\\') => b'\\',
                        Some(b'n') => b'\n',
                        Some(b't') => b'\t',
                        _ => return Err(self.err("unsupported escape (only \\\" \\\\ \\n \\t)")),
                    });
                }
                c => out.push(c),
            }
        }
    }

    fn int(&mut self) -> Result<Value, String> {
        let start = self.i;
        self.i += 1;
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_digit() || *c == b'_')
        {
            self.i += 1;
        }
        let text: String = String::from_utf8_lossy(&self.s[start..self.i]).replace('_', "");
        text.parse()
            .map(Value::Int)
            .map_err(|_| self.err(&format!("bad integer `{text}`")))
    }

    fn array(&mut self) -> Result<Value, String> {
        self.i += 1;
        let mut items = Vec::new();
        loop {
            self.skip_blank(true);
            if self.s.get(self.i) == Some(&b']') {
                self.i += 1;
                return Ok(Value::Array(items));
            }
            items.push(self.value()?);
            self.skip_blank(true);
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {}
                _ => return Err(self.err("expected `,` or `]` in array")),
            }
        }
    }
}

/// The top-level `kernel_modules = [...]` of a product manifest, read leniently: only the part before the first
/// table header is looked at, and a manifest this subset cannot read (or a deliberately broken one) yields
/// `None` rather than an error, since judging manifests is the product's job.
pub fn manifest_modules(manifest: &str) -> Option<Vec<String>> {
    let head: Vec<&str> = manifest
        .lines()
        .take_while(|l| {
            let t = l.trim_start();
            !(t.starts_with("[[")
                || t.starts_with('[') && t[1..].starts_with(|c: char| c.is_ascii_alphabetic()))
        })
        .collect();
    match parse(&head.join("\n")).ok()?.remove("kernel_modules")? {
        Value::Array(v) => v
            .into_iter()
            .map(|x| if let Value::Str(s) = x { Some(s) } else { None })
            .collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_subset() {
        let t = "# c\nname = \"a \\\"b\\\"\" # tail\nn = -3\nok = true\nlist = [\n  \"x\", # one\n  \"y\",\n]\n";
        let m = parse(t).unwrap();
        assert_eq!(m["name"], Value::Str("a \"b\"".into()));
        assert_eq!(m["n"], Value::Int(-3));
        assert_eq!(m["ok"], Value::Bool(true));
        assert_eq!(
            m["list"],
            Value::Array(vec![Value::Str("x".into()), Value::Str("y".into())])
        );
    }

    #[test]
    fn rejects_what_it_does_not_know() {
        assert!(parse("[table]\n").unwrap_err().contains("line 1"));
        assert!(parse("a = 1\nb = 'lit'\n").unwrap_err().contains("line 2"));
        assert!(parse("a = 1\na = 2\n").unwrap_err().contains("duplicate"));
        assert!(parse("a = \"x\" b\n").is_err());
        assert!(parse("a = \"\"\"x\"\"\"\n").is_err());
    }

    #[test]
    fn reads_manifest_modules_leniently() {
        let m = "kernel_modules = [\"dm-mod\",\n \"nbd\"]\n[app]\ncommand = [\"/bin/sh\"]\n";
        assert_eq!(
            manifest_modules(m),
            Some(vec!["dm-mod".to_string(), "nbd".to_string()])
        );
        assert_eq!(manifest_modules("[app]\nkernel_modules = [\"x\"]\n"), None);
        assert_eq!(manifest_modules("this is = = broken"), None);
    }
}
