//! Unit tests of the token sources and the cache.

use super::*;

/// IMDS answering one fixed `expires_in`.
struct Imds(serde_json::Value);

impl Exchange for Imds {
    fn exchange(&self, _req: &http::Request<'_>) -> http::Result<http::Response> {
        let body = serde_json::json!({"access_token": "t0k", "expires_in": self.0});
        Ok(http::Response {
            status: 200,
            headers: Default::default(),
            body: body.to_string().into_bytes(),
        })
    }
}

fn imds() -> TokenSource {
    TokenSource::Imds {
        base: "http://169.254.169.254".into(),
        api_version: "2018-02-01".into(),
        resource: "https://vault.azure.net".into(),
        client_id: None,
    }
}

#[test]
fn a_blob_token_that_can_no_longer_be_had_is_reported_to_its_watch() {
    use crate::blob::BearerSource;
    // IMDS on a port nothing listens on: no token can be had (none cached, or one past its expiry).
    let mut net = crate::manifest::empty_plan().unwrap().network;
    net.retries = 0;
    let source = TokenSource::Imds {
        base: "http://127.0.0.1:1".into(),
        api_version: "2018-02-01".into(),
        resource: "https://acct.blob.core.windows.net".into(),
        client_id: None,
    };
    let watch = crate::blob::FatalWatch::new();
    let token = BlobToken {
        cache: TokenCache::new(source),
        http: http::Client::new(&net).unwrap(),
        fatal: None,
    }
    .watched(watch.clone());
    assert!(token.token().is_err());
    let why = watch.get().expect("reported");
    assert!(
        why.starts_with("the blob's token can no longer be refreshed: "),
        "{why}"
    );
}

#[test]
fn azure_authority_host_must_be_https_outside_test_mode() {
    let mut plan = crate::manifest::empty_plan().unwrap();
    let env = |host: &'static str| {
        move |k: &str| match k {
            "AZURE_CLIENT_ID" => Some("cid".to_string()),
            "AZURE_TENANT_ID" => Some("tenant".to_string()),
            "AZURE_FEDERATED_TOKEN_FILE" => Some("/var/run/token".to_string()),
            "AZURE_AUTHORITY_HOST" => Some(host.to_string()),
            _ => None,
        }
    };
    let pick = |plan: &crate::manifest::Plan, host| {
        TokenSource::for_resource(None, "https://vault.azure.net", plan, &env(host))
    };
    let e = pick(&plan, "http://login.example/")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "workload identity token: AZURE_AUTHORITY_HOST \"http://login.example/\" uses plain http, which \
         would send the client assertion in clear text (allowed only with test_mode = true); fix: set it \
         to an https:// URL such as https://login.microsoftonline.com/ or unset it to use [endpoints] \
         login_authority"
    );
    for bad in [
        "login.example",
        "ftp://login.example",
        "https://",
        "https://h/?x=1",
    ] {
        assert!(pick(&plan, bad).is_err(), "{bad}");
    }
    match pick(&plan, "https://login.microsoftonline.com/") {
        Ok(TokenSource::Workload { authority, .. }) => {
            assert_eq!(authority, "https://login.microsoftonline.com")
        }
        other => panic!("{other:?}"),
    }
    plan.test_mode = true;
    assert!(matches!(
        pick(&plan, "http://127.0.0.1:8080"),
        Ok(TokenSource::Workload { .. })
    ));
}

#[test]
fn hostile_expires_in_values_neither_panic_nor_cache_forever() {
    let max = u64::MAX.to_string();
    let cases = [
        (serde_json::json!(max), MAX_TOKEN_LIFETIME),
        (serde_json::json!(u64::MAX), MAX_TOKEN_LIFETIME),
        (serde_json::json!("86401"), MAX_TOKEN_LIFETIME),
        (serde_json::json!(1e300), Duration::from_secs(300)),
        (serde_json::json!(-1), Duration::from_secs(300)),
        (serde_json::json!("-1"), Duration::from_secs(300)),
        (serde_json::json!("soon"), Duration::from_secs(300)),
        (serde_json::json!(null), Duration::from_secs(300)),
        (serde_json::json!("3599"), Duration::from_secs(3599)),
    ];
    for (v, want) in cases {
        let cache = TokenCache::new(imds());
        assert_eq!(cache.get(&Imds(v.clone())).unwrap().expose(), "t0k", "{v}");
        // The cached token is reused, not refetched on every call.
        assert_eq!(cache.get(&Imds(v.clone())).unwrap().expose(), "t0k");
        let (_, life) = imds().fetch(&Imds(v.clone())).unwrap();
        assert_eq!(life, Some(want), "{v}");
    }
}
