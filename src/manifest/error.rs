//! Manifest errors: each names where (file:line:column for TOML, the JSON path for `EncfsSideCarArgs`), the
//! field, what is wrong and what would be right.
#![forbid(unsafe_code)]

use std::fmt;

/// One segment of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A table key.
    Key(&'static str),
    /// An array index.
    Index(usize),
}

/// A field path in the TOML schema, e.g. `filesystem[1].key.kid`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(pub Vec<Seg>);

impl FieldPath {
    /// The root.
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// This path plus a key.
    pub fn key(&self, k: &'static str) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Key(k));
        Self(v)
    }

    /// This path plus an index.
    pub fn index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        Self(v)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(manifest)");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Maps a field path to a place the user can find: a TOML line and column, or the JSON path of upstream's
/// format.
pub trait Locate {
    /// The source's name (a file path, or `EncfsSideCarArgs`).
    fn source(&self) -> &str;
    /// Where the field is, or the nearest enclosing thing that exists; and how to call the field.
    fn locate(&self, path: &FieldPath) -> (Option<String>, String);
}

/// One manifest error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// File path or `EncfsSideCarArgs`.
    pub source: String,
    /// `line:column` (TOML) when known.
    pub at: Option<String>,
    /// The field, e.g. `filesystem[0].mount_point` or `azure_filesystems[0].mount_point`.
    pub field: String,
    /// What is wrong.
    pub problem: String,
    /// What would be right.
    pub fix: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        if let Some(at) = &self.at {
            write!(f, ":{at}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.problem)?;
        if !self.fix.is_empty() {
            write!(f, "; fix: {}", self.fix)?;
        }
        Ok(())
    }
}

/// All errors of one manifest (validation reports every problem it finds, not just the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Errors(pub Vec<Error>);

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}

impl From<Error> for Errors {
    fn from(e: Error) -> Self {
        Self(vec![e])
    }
}

/// Edit distance, for "did you mean" hints.
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate to `word`, when close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (distance(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render() {
        let p = FieldPath::root()
            .key("filesystem")
            .index(1)
            .key("key")
            .key("kid");
        assert_eq!(p.to_string(), "filesystem[1].key.kid");
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("mount_pont", ["url", "mount_point"]),
            Some("mount_point")
        );
        assert_eq!(
            did_you_mean("readwrite", ["read_write", "url"]),
            Some("read_write")
        );
        assert_eq!(did_you_mean("zzzzzz", ["url", "mount_point"]), None);
    }
}
