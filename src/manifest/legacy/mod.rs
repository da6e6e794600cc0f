//! Upstream's `EncfsSideCarArgs`: base64 of a JSON document (upstream-spec §2), decoded into the same
//! [`Manifest`] the TOML path produces, so both end in one validated plan.
//!
//! Decoding is lenient where upstream's users were bitten: standard or URL-safe base64, padded or not, with
//! any whitespace; raw JSON is accepted too. Keys match as Go's `encoding/json` matches them (an exact match
//! first, else ASCII case-insensitively); unknown keys are warned about and ignored, as upstream ignores them.
//! Types are strict, as Go's are: a string where a bool belongs is an error naming its JSON path.
//!
//! `reader` reads the JSON objects that way; this module decodes the base64 and maps the objects onto the
//! manifest's sections.
#![forbid(unsafe_code)]

use super::error::{Error, FieldPath, Locate, Seg};
use super::schema::{self, Manifest};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde_json::Value;
use std::collections::HashMap;

mod reader;

use reader::{kind, Decoder};

/// Name used in messages.
pub const SOURCE: &str = "EncfsSideCarArgs";
/// Where upstream writes its result file (`./result` with cwd `/`).
pub const LEGACY_READINESS_FILE: &str = "/result";

/// A decoded legacy manifest, with the JSON path of every field it set.
#[derive(Debug)]
pub struct Legacy {
    name: String,
    /// TOML field path → JSON path, for messages.
    paths: HashMap<String, String>,
    /// Unknown keys and ignored fields, to log as warnings.
    pub warnings: Vec<String>,
}

impl Locate for Legacy {
    fn source(&self) -> &str {
        &self.name
    }

    fn locate(&self, path: &FieldPath) -> (Option<String>, String) {
        // The nearest ancestor that came from the JSON; the rest of the TOML path is appended.
        let mut p = path.clone();
        let mut tail: Vec<String> = Vec::new();
        loop {
            if let Some(j) = self.paths.get(&p.to_string()) {
                tail.reverse();
                let rest = tail.concat();
                return (None, format!("{j}{rest}"));
            }
            match p.0.pop() {
                Some(Seg::Key(k)) => tail.push(format!(".{k}")),
                Some(Seg::Index(i)) => tail.push(format!("[{i}]")),
                None => return (None, path.to_string()),
            }
        }
    }
}

fn engine(alphabet: &base64::alphabet::Alphabet) -> GeneralPurpose {
    GeneralPurpose::new(
        alphabet,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    )
}

fn decode_base64(name: &str, text: &str) -> Result<Vec<u8>, Error> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let alphabet = if compact.contains(['-', '_']) {
        &base64::alphabet::URL_SAFE
    } else {
        &base64::alphabet::STANDARD
    };
    engine(alphabet).decode(compact.as_bytes()).map_err(|e| Error {
        source: name.to_string(),
        at: None,
        field: String::new(),
        problem: format!("not valid base64 ({e})"),
        fix: "set it to the base64 of the manifest JSON, e.g. `base64 -w0 encfs-sidecar-args.json`".to_string(),
    })
}

/// Decode `text` (base64 of JSON, or JSON itself) named `name` in messages.
pub fn parse(name: &str, text: &str) -> Result<(Legacy, Manifest), Error> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(Error {
            source: name.to_string(),
            at: None,
            field: String::new(),
            problem: "empty".to_string(),
            fix: "set it to the base64 of the manifest JSON, or unset it".to_string(),
        });
    }
    let json = if trimmed.starts_with('{') {
        trimmed.as_bytes().to_vec()
    } else {
        decode_base64(name, trimmed)?
    };
    let value: Value = serde_json::from_slice(&json).map_err(|e| Error {
        source: name.to_string(),
        at: Some(format!("json {}:{}", e.line(), e.column())),
        field: String::new(),
        problem: format!(
            "{} JSON: {e}",
            if e.is_eof() { "truncated" } else { "invalid" }
        ),
        fix: "give the complete manifest JSON (see upstream's encfs-sidecar-args.json)".to_string(),
    })?;
    let mut d = Decoder {
        name: name.to_string(),
        paths: HashMap::new(),
        warnings: Vec::new(),
        error: None,
    };
    let manifest = d.manifest(&value);
    if let Some(e) = d.error {
        return Err(e);
    }
    Ok((
        Legacy {
            name: name.to_string(),
            paths: d.paths,
            warnings: d.warnings,
        },
        manifest,
    ))
}

impl Decoder {
    fn manifest(&mut self, v: &Value) -> Manifest {
        let mut m = Manifest {
            readiness_file: Some(LEGACY_READINESS_FILE.to_string()),
            ..Manifest::default()
        };
        let Some(mut top) = self.obj(v, "") else {
            return m;
        };
        let root = FieldPath::root();
        if let Some((info, path)) = top.get("azure_info") {
            if let Some(mut o) = self.obj(info, &path) {
                if let Some((cc, p)) = o.get("certcache") {
                    m.certcache = self.certcache(cc, &p);
                }
                if let Some((id, p)) = o.get("identity") {
                    if let Some(mut io) = self.obj(id, &p) {
                        m.identity.client_id = self.string(
                            &mut io,
                            "client_id",
                            Some(&root.key("identity").key("client_id")),
                        );
                        self.finish(io, &["client_id"]);
                    }
                }
                self.finish(o, &["certcache", "identity"]);
            }
        }
        if let Some((fss, path)) = top.get("azure_filesystems") {
            self.paths
                .insert(root.key("filesystem").to_string(), path.clone());
            match fss {
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let p = format!("{path}[{i}]");
                        self.paths
                            .insert(root.key("filesystem").index(i).to_string(), p.clone());
                        if let Some(fs) =
                            self.filesystem(item, &p, &root.key("filesystem").index(i))
                        {
                            m.filesystem.push(fs);
                        }
                    }
                }
                other => self.fail(
                    &path,
                    format!("expected an array, found {}", kind(other)),
                    "write a JSON array [ ... ]",
                ),
            }
        }
        self.finish(top, &["azure_info", "azure_filesystems"]);
        m
    }

    fn certcache(&mut self, v: &Value, path: &str) -> Option<schema::CertCache> {
        let mut o = self.obj(v, path)?;
        let t = FieldPath::root().key("certcache");
        self.paths.insert(t.to_string(), path.to_string());
        let cc = schema::CertCache {
            endpoint_type: self
                .string(&mut o, "endpoint_type", Some(&t.key("endpoint_type")))
                .unwrap_or_default(),
            endpoint: self
                .string(&mut o, "endpoint", Some(&t.key("endpoint")))
                .unwrap_or_default(),
            tee_type: self.string(&mut o, "tee_type", Some(&t.key("tee_type"))),
            api_version: self.string(&mut o, "api_version", Some(&t.key("api_version"))),
            client_id: self.string(&mut o, "client_id", Some(&t.key("client_id"))),
        };
        self.finish(
            o,
            &[
                "endpoint_type",
                "endpoint",
                "tee_type",
                "api_version",
                "client_id",
            ],
        );
        Some(cc)
    }

    fn filesystem(&mut self, v: &Value, path: &str, t: &FieldPath) -> Option<schema::Filesystem> {
        let mut o = self.obj(v, path)?;
        let mut fs = schema::Filesystem {
            url: self
                .string(&mut o, "azure_url", Some(&t.key("url")))
                .unwrap_or_default(),
            mount_point: self
                .string(&mut o, "mount_point", Some(&t.key("mount_point")))
                .unwrap_or_default(),
            read_write: self
                .boolean(&mut o, "read_write", &t.key("read_write"))
                .unwrap_or(false),
            ..schema::Filesystem::default()
        };
        let private = self
            .boolean(&mut o, "azure_url_private", &t.key("access"))
            .unwrap_or(false);
        let has_query = fs.url.contains('?');
        fs.access = Some(
            match (private, has_query) {
                (true, true) => {
                    self.warnings.push(format!(
                        "{}: {path}.azure_url_private is true but the URL carries a query (a SAS): the SAS is used, no token is fetched",
                        self.name
                    ));
                    "sas"
                }
                (true, false) => "private",
                (false, true) => "sas",
                (false, false) => "anonymous",
            }
            .to_string(),
        );
        if let Some((k, p)) = o.get("key") {
            fs.key = self.key(k, &p, &t.key("key"));
        }
        if let Some((kd, p)) = o.get("key_derivation") {
            if let Some(mut ko) = self.obj(kd, &p) {
                let tk = t.key("key_derivation");
                self.paths.insert(tk.to_string(), p.clone());
                fs.key_derivation = Some(schema::KeyDerivation {
                    salt: self.string(&mut ko, "salt", Some(&tk.key("salt"))),
                    label: self.string(&mut ko, "label", Some(&tk.key("label"))),
                });
                self.finish(ko, &["salt", "label"]);
            }
        }
        if let Some(raw) = self.string(&mut o, "raw_key", None) {
            if !raw.is_empty() {
                self.warnings.push(format!(
                    "{}: {path}.raw_key is ignored, as in upstream's release builds; a raw key needs a TOML manifest with test_mode = true",
                    self.name
                ));
            }
        }
        self.finish(
            o,
            &[
                "azure_url",
                "azure_url_private",
                "mount_point",
                "read_write",
                "key",
                "key_derivation",
                "raw_key",
            ],
        );
        Some(fs)
    }

    fn key(&mut self, v: &Value, path: &str, t: &FieldPath) -> Option<schema::Key> {
        let mut o = self.obj(v, path)?;
        self.paths.insert(t.to_string(), path.to_string());
        let mut k = schema::Key {
            kid: self.string(&mut o, "kid", Some(&t.key("kid"))),
            kty: self.string(&mut o, "kty", Some(&t.key("kty"))),
            ..schema::Key::default()
        };
        if let Some((ops, p)) = o.get("key_ops") {
            if !ops.is_array() {
                self.fail(
                    &p,
                    format!("expected an array, found {}", kind(ops)),
                    "write a JSON array of strings",
                );
            }
        }
        if let Some((a, p)) = o.get("authority") {
            if let Some(mut ao) = self.obj(a, &p) {
                k.authority = self.string(&mut ao, "endpoint", Some(&t.key("authority")));
                self.ignored(
                    &mut ao,
                    &["tee_type", "api_version"],
                    "upstream forces SevSnpVM and api-version=2020-10-01",
                );
                self.finish(ao, &["endpoint", "tee_type", "api_version"]);
            }
        }
        if let Some((a, p)) = o.get("akv") {
            if let Some(mut ao) = self.obj(a, &p) {
                k.vault = self.string(&mut ao, "endpoint", Some(&t.key("vault")));
                k.bearer_token = self
                    .string(&mut ao, "bearer_token", Some(&t.key("bearer_token")))
                    .filter(|s| !s.is_empty());
                self.ignored(
                    &mut ao,
                    &["api_version"],
                    "upstream forces api-version=7.4; a TOML manifest can set [api_versions] akv",
                );
                self.finish(ao, &["endpoint", "api_version", "bearer_token"]);
            }
        }
        self.finish(o, &["kid", "kty", "key_ops", "authority", "akv"]);
        Some(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_variants_decode_alike() {
        let json = br#"{"azure_filesystems":[{"mount_point":"/m/???~~~","azure_url":"https://a.blob.core.windows.net/c/b"}]}"#;
        let std = base64::engine::general_purpose::STANDARD.encode(json);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        assert_ne!(
            std.trim_end_matches('='),
            url,
            "the sample must exercise both alphabets"
        );
        let wrapped: String = std
            .chars()
            .enumerate()
            .flat_map(|(i, c)| if i % 10 == 9 { vec![c, '\n'] } else { vec![c] })
            .collect();
        for input in [
            std.clone(),
            url,
            wrapped,
            std.trim_end_matches('=').to_string(),
        ] {
            let (_, m) = parse(SOURCE, &input).unwrap();
            assert_eq!(m.filesystem[0].mount_point, "/m/???~~~");
        }
    }

    #[test]
    fn keys_match_case_insensitively_exact_first() {
        let json = r#"{"Azure_FileSystems":[{"MOUNT_POINT":"/x","azure_url":"https://a/c/b","Read_Write":true}]}"#;
        let (_, m) = parse(SOURCE, json).unwrap();
        assert_eq!(m.filesystem[0].mount_point, "/x");
        assert!(m.filesystem[0].read_write);
    }

    #[test]
    fn unknown_keys_warn() {
        let json = r#"{"azure_filesystems":[{"mount_pont":"/x"}], "extra": 1}"#;
        let (l, _) = parse(SOURCE, json).unwrap();
        assert!(
            l.warnings
                .iter()
                .any(|w| w.contains("azure_filesystems[0].mount_pont")
                    && w.contains("did you mean \"mount_point\"")),
            "{:?}",
            l.warnings
        );
        assert!(
            l.warnings.iter().any(|w| w.contains("extra")),
            "{:?}",
            l.warnings
        );
    }
}
