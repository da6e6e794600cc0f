//! The network the boot needs: every endpoint the manifest names (MAA authorities, vaults, blob accounts,
//! IMDS or the workload-identity login authority, the collateral services when the host gives no
//! certificate) reached step by step (DNS, TCP, TLS with the plan's trust through the one HTTP client), the
//! identity tokens (fetched, never printed: their `aud` claim is shown) and MAA's signing keys.
#![forbid(unsafe_code)]

use super::Finding;
use crate::http::{self, Client, Exchange, Request};
use crate::keyrelease::token::{self, TokenSource};
use crate::manifest::{Access, Plan, ReleasePlan};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};

/// One endpoint to reach, and what it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// What the manifest uses it for (`MAA`, `vault`, `blob`, `IMDS`, ...).
    pub role: &'static str,
    /// `https://host[:port]` (or `http://`).
    pub base: String,
}

impl Target {
    fn https(&self) -> bool {
        self.base.starts_with("https://")
    }

    /// `host:port` (the scheme's default port when none is given).
    pub fn host_port(&self) -> (String, u16) {
        let host = crate::url::host(&self.base).to_string();
        let rest = self.base.split_once("://").map_or(&*self.base, |(_, r)| r);
        let hp = rest.split('/').next().unwrap_or(rest);
        let port = match hp.strip_prefix('[') {
            Some(v6) => v6.split_once("]:").and_then(|(_, p)| p.parse().ok()),
            None => hp.rsplit_once(':').and_then(|(_, p)| p.parse().ok()),
        }
        .unwrap_or(if self.https() { 443 } else { 80 });
        (host, port)
    }
}

/// The identity tokens the plan needs: `(resource, static token)` per vault kind and storage account.
fn audiences(plan: &Plan) -> Vec<(String, Option<&crate::secret::SecretString>)> {
    let mut out: Vec<(String, Option<&crate::secret::SecretString>)> = Vec::new();
    for rp in plan.releases() {
        let r = token::vault_resource(rp.vault_kind).to_string();
        if !out.iter().any(|(x, _)| *x == r) {
            out.push((r, rp.bearer_token.as_ref()));
        }
    }
    for fs in &plan.filesystems {
        if matches!(fs.access, Access::Private) {
            let r = crate::url::origin(&fs.url.url);
            if !out.iter().any(|(x, _)| *x == r) {
                out.push((r, None));
            }
        }
    }
    out
}

/// The endpoints `plan` names, each once. `host_certs`: the UVM gives the host's AMD certificate (so the
/// collateral services are not needed).
pub fn targets(plan: &Plan, host_certs: bool) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    let mut add = |role, url: &str| {
        let base = crate::url::origin(url);
        if !out.iter().any(|t| t.base == base) {
            out.push(Target { role, base });
        }
    };
    let rel: Vec<&ReleasePlan> = plan.releases().collect();
    for rp in &rel {
        add("MAA", &rp.authority.0);
        add("vault", &rp.vault.0);
    }
    for fs in &plan.filesystems {
        add("blob", &fs.url.url);
    }
    for (resource, fixed) in audiences(plan) {
        if fixed.is_some() {
            continue;
        }
        match TokenSource::for_resource(None, &resource, plan, &crate::attest::uvm::process_env) {
            Ok(TokenSource::Workload { authority, .. }) => add("login authority", &authority),
            Ok(TokenSource::Imds { base, .. }) => add("IMDS", &base),
            _ => {}
        }
    }
    if !rel.is_empty() && !host_certs {
        match &plan.certcache {
            Some(cc) => add("certcache", &cc.endpoint.0),
            None => add("THIM", &plan.endpoints.thim.0),
        }
        add("AMD KDS", &plan.endpoints.amd_kds.0);
    }
    out
}

/// DNS, TCP and TLS to `t`: one finding each; a later step is skipped when an earlier one failed.
/// `resolved`: the names already resolved by an earlier endpoint (their DNS line is not repeated).
pub fn reach(
    t: &Target,
    client: &Client,
    connect_timeout: std::time::Duration,
    resolved: &mut Vec<String>,
) -> Vec<Finding> {
    let (host, port) = t.host_port();
    let hp = format!("{host}:{port}");
    let dns = format!("dns {host}");
    let tcp = format!("tcp {hp}");
    let tls = format!("tls {hp}");
    let addrs: Vec<SocketAddr> = match (host.as_str(), port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            return vec![
                Finding::problem(dns, format!("{} endpoint: cannot resolve {host}: {e}", t.role), "check the name in the manifest and the platform's DNS (resolv.conf; on ACI, the container group's DNS settings)"),
                Finding::skipped(tcp, "the name does not resolve"),
                Finding::skipped(tls, "the name does not resolve"),
            ]
        }
    };
    let shown: Vec<String> = addrs.iter().take(3).map(|a| a.ip().to_string()).collect();
    let mut out = Vec::new();
    // One line per name resolved (several endpoints often share a host).
    if !resolved.contains(&host) {
        resolved.push(host.clone());
        out.push(Finding::ok(
            dns,
            format!("{} endpoint resolves to {}", t.role, shown.join(", ")),
        ));
    }
    let mut last = None;
    let mut connected = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, connect_timeout) {
            Ok(_) => {
                connected = Some(*a);
                break;
            }
            Err(e) => last = Some(format!("{a}: {e}")),
        }
    }
    match connected {
        Some(a) => out.push(Finding::ok(tcp, format!("connected to {a}"))),
        None => {
            out.push(Finding::problem(
                tcp,
                format!("cannot connect: {}", last.unwrap_or_else(|| "no address".into())),
                "check the port in the manifest, that the service runs, and the network's egress rules (firewall, NSG, private endpoint)",
            ));
            out.push(Finding::skipped(tls, "no TCP connection"));
            return out;
        }
    }
    if !t.https() {
        out.push(Finding::skipped(tls, format!("plain http ({})", t.base)));
        return out;
    }
    let once = client.with_policy(http::RetryPolicy {
        retries: 0,
        ..*client.policy()
    });
    let all: Vec<u16> = (100..600).collect();
    let url = format!("{}/", t.base);
    out.push(match once.send_once(&Request::new("GET", &url), &all) {
        Ok(r) => Finding::ok(tls, format!("handshake with the plan's trust; HTTP {} to GET /", r.status)),
        Err(e) => Finding::error(tls, &e, "the server's certificate must chain to a web root or to [network] ca_bundle, and name the host (a TLS-inspecting proxy needs its CA in ca_bundle)"),
    });
    out
}

/// The `aud` claim of a JWT (its payload decoded, not verified), or why there is none.
pub fn audience(jwt: &str) -> Result<String, &'static str> {
    let payload = jwt.split('.').nth(1).ok_or("an opaque token (not a JWT)")?;
    let bytes =
        crate::attest::uvm::decode_b64(payload).ok_or("a JWT whose payload is not base64url")?;
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| "a JWT whose payload is not JSON")?;
    match &v["aud"] {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Array(a) => Ok(a
            .iter()
            .filter_map(|x| x.as_str())
            .collect::<Vec<_>>()
            .join(", ")),
        _ => Err("a JWT without an aud claim"),
    }
}

/// The identity token for `resource` (fetched, never shown).
pub fn token_for(
    plan: &Plan,
    resource: &str,
    fixed: Option<&crate::secret::SecretString>,
    t: &dyn Exchange,
) -> Finding {
    let check = format!("token {resource}");
    let fix = "give the container group a managed identity (or workload identity) with access to the vault and the storage account; for a user-assigned identity set [identity] client_id";
    let src =
        match TokenSource::for_resource(fixed, resource, plan, &crate::attest::uvm::process_env) {
            Ok(s) => s,
            Err(e) => return Finding::error(check, &e, fix),
        };
    let from = match &src {
        TokenSource::Static(_) => "the manifest's bearer_token".to_string(),
        TokenSource::Imds { base, .. } => format!("IMDS {base}"),
        TokenSource::Workload { authority, .. } => format!("workload identity at {authority}"),
    };
    match src.fetch(t) {
        Ok((tok, _)) => Finding::ok(
            check,
            match audience(tok.expose()) {
                Ok(aud) => format!("from {from}, aud {aud}"),
                Err(what) => format!("from {from}: {what}, audience not readable"),
            },
        ),
        Err(e) => Finding::error(check, &e, fix),
    }
}

/// MAA at `authority` answers its signing keys (`GET /certs`: a JSON document with `keys`).
pub fn maa(authority: &str, t: &dyn Exchange) -> Finding {
    let url = format!("{}/certs", crate::url::origin(authority));
    let check = format!("maa {}", crate::url::host(authority));
    let fix = "check the attestation authority URL in the manifest (https://<name>.<region>.attest.azure.net) and that the network reaches it";
    let answer = t.exchange(&Request::new("GET", &url));
    match answer {
        Ok(r) => match serde_json::from_slice::<serde_json::Value>(&r.body) {
            Ok(v) if v["keys"].as_array().is_some_and(|k| !k.is_empty()) => Finding::ok(
                check,
                format!(
                    "GET /certs: {} signing key(s)",
                    v["keys"].as_array().map_or(0, Vec::len)
                ),
            ),
            _ => Finding::problem(
                check,
                format!("GET {url}: HTTP {} but no JSON key set", r.status),
                fix,
            ),
        },
        Err(e) => Finding::error(check, &e, fix),
    }
}

/// Every network finding for `plan`.
pub fn check(plan: &Plan, client: &Client, host_certs: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut resolved = Vec::new();
    for t in targets(plan, host_certs) {
        out.extend(reach(
            &t,
            client,
            plan.network.connect_timeout,
            &mut resolved,
        ));
    }
    for (resource, fixed) in audiences(plan) {
        out.push(token_for(plan, &resource, fixed, client));
    }
    let mut seen: Vec<&str> = Vec::new();
    for rp in plan.releases() {
        if !seen.contains(&rp.authority.0.as_str()) {
            seen.push(&rp.authority.0);
            out.push(maa(&rp.authority.0, client));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_of_an_endpoint() {
        let t = |b: &str| {
            Target {
                role: "x",
                base: b.into(),
            }
            .host_port()
        };
        assert_eq!(
            t("https://kv.vault.azure.net"),
            ("kv.vault.azure.net".into(), 443)
        );
        assert_eq!(t("http://127.0.0.1:8080"), ("127.0.0.1".into(), 8080));
        assert_eq!(t("http://169.254.169.254"), ("169.254.169.254".into(), 80));
        assert_eq!(
            crate::url::origin("https://a.blob.core.windows.net/c/b.img"),
            "https://a.blob.core.windows.net"
        );
    }

    fn plan(extra: &str) -> Plan {
        let text = format!(
            r#"[[filesystem]]
mount_point = "/mnt/a"
url = "https://acct.blob.core.windows.net/c/a.img"
access = "private"
[filesystem.key]
kid = "k"
authority = "https://maa.example.attest.azure.net"
vault = "https://kv.vault.azure.net"
{extra}"#
        );
        crate::manifest::load_toml_str(
            "m.toml",
            &text,
            None,
            crate::manifest::Origin::Toml("m.toml".into()),
        )
        .unwrap()
        .plan
    }

    #[test]
    fn every_endpoint_the_manifest_names_once_and_the_collateral_only_without_the_hosts_certificate(
    ) {
        let p = plan("");
        let roles = |t: Vec<Target>| -> Vec<(&'static str, String)> {
            t.into_iter().map(|t| (t.role, t.base)).collect()
        };
        assert_eq!(
            roles(targets(&p, true)),
            [
                ("MAA", "https://maa.example.attest.azure.net".to_string()),
                ("vault", "https://kv.vault.azure.net".into()),
                ("blob", "https://acct.blob.core.windows.net".into()),
                ("IMDS", "http://169.254.169.254".into()),
            ]
        );
        // THIM lives on IMDS's address (reached once); AMD KDS is one more.
        let without = roles(targets(&p, false));
        assert_eq!(without.len(), 5, "{without:?}");
        assert_eq!(
            without[4],
            ("AMD KDS", "https://kdsintf.amd.com".to_string())
        );
        // One token per audience: the vault kind's and the private blob's account.
        let a: Vec<String> = audiences(&p).into_iter().map(|(r, _)| r).collect();
        assert_eq!(
            a,
            [
                "https://vault.azure.net",
                "https://acct.blob.core.windows.net"
            ]
        );
    }

    #[test]
    fn the_audience_is_read_from_the_payload_only() {
        use base64::Engine;
        let p = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"aud":"https://vault.azure.net"}"#);
        assert_eq!(
            audience(&format!("e30.{p}.sig")).unwrap(),
            "https://vault.azure.net"
        );
        assert!(audience("tok-1-abcd").is_err());
    }
}
