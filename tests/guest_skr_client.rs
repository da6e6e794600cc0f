//! An application calling the SKR API as upstream's clients do, for VM scenarios (not a test of its own;
//! `harness = false`; the rig builds it static with `cargo_tests = ["guest_skr_client"]`).
//!
//! `guest_skr_client --api HOST:PORT --maa HOST --vault HOST --kid NAME --expect-sha256 FILE`:
//! 1. `GET /status` must answer `{"message":"Status OK"}`;
//! 2. `POST /attest/maa` with runtime data `{"app":"skr-client"}` must answer a JWT whose `x-ms-runtime`
//!    claim is that runtime data;
//! 3. `POST /key/release` for NAME must answer `{"key":"<JWK>"}` whose `k`, decoded, has the SHA-256 (hex)
//!    written in FILE by the host;
//! 4. a request with bad base64 must answer 400 with one `{"error"}` body.
//!
//! It prints one line per check and `skr-client: PASS` (exit 0), or the failing check (exit 1); never the
//! key or a token. Run without `--api` (as `cargo test` does) it checks itself against a canned server:
//! the right key passes, a wrong one fails.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

struct Args {
    api: String,
    maa: String,
    vault: String,
    kid: String,
    expect_sha256: String,
}

fn call(api: &str, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(api).map_err(|e| format!("connect {api}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("{path}: send: {e}"))?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .map_err(|e| format!("{path}: read: {e}"))?;
    let text = String::from_utf8(out).map_err(|_| format!("{path}: answer not UTF-8"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or(format!("{path}: no response head"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(format!("{path}: no status"))?;
    Ok((status, body.to_string()))
}

fn json_of(path: &str, body: &str) -> Result<Value, String> {
    serde_json::from_str(body).map_err(|e| format!("{path}: not one JSON body: {e}"))
}

fn check(a: &Args) -> Result<(), String> {
    let (status, body) = call(&a.api, "GET", "/status", "")?;
    if status != 200 || json_of("/status", &body)? != json!({"message": "Status OK"}) {
        return Err(format!("/status: {status} {body}"));
    }
    println!("skr-client: /status OK");

    let runtime = json!({"app": "skr-client"});
    let req = json!({"maa_endpoint": a.maa, "runtime_data": B64.encode(runtime.to_string())});
    let (status, body) = call(&a.api, "POST", "/attest/maa", &req.to_string())?;
    let v = json_of("/attest/maa", &body)?;
    if status != 200 {
        return Err(format!("/attest/maa: {status} {v}"));
    }
    let token = v["token"].as_str().ok_or("/attest/maa: no token")?;
    let claims = token
        .split('.')
        .nth(1)
        .and_then(|p| B64URL.decode(p).ok())
        .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
        .ok_or("/attest/maa: the token is not a JWT")?;
    if claims["x-ms-runtime"] != runtime {
        return Err(format!(
            "/attest/maa: x-ms-runtime is {}",
            claims["x-ms-runtime"]
        ));
    }
    println!("skr-client: /attest/maa OK (a token whose x-ms-runtime is our runtime data)");

    let req = json!({"maa_endpoint": a.maa, "akv_endpoint": a.vault, "kid": a.kid});
    let (status, body) = call(&a.api, "POST", "/key/release", &req.to_string())?;
    let v = json_of("/key/release", &body)?;
    if status != 200 {
        return Err(format!("/key/release: {status} {v}"));
    }
    let jwk: Value = v["key"]
        .as_str()
        .and_then(|k| serde_json::from_str(k).ok())
        .ok_or("/key/release: key is not a JWK string")?;
    let k = jwk["k"]
        .as_str()
        .and_then(|k| B64URL.decode(k).ok())
        .ok_or("/key/release: the JWK has no base64url k")?;
    let got = encfs_init::hex::encode(&Sha256::digest(&k));
    if got != a.expect_sha256.trim() {
        return Err(format!(
            "/key/release: the key's SHA-256 is {got}, want {}",
            a.expect_sha256.trim()
        ));
    }
    println!(
        "skr-client: /key/release OK (a {} JWK of {} bytes whose SHA-256 is the expected one)",
        jwk["kty"].as_str().unwrap_or("?"),
        k.len()
    );

    let (status, body) = call(&a.api, "POST", "/attest/raw", r#"{"runtime_data":"%%"}"#)?;
    let v = json_of("/attest/raw", &body)?;
    if status != 400 || v.as_object().map(|o| o.len()) != Some(1) || !v["error"].is_string() {
        return Err(format!("/attest/raw with bad base64: {status} {v}"));
    }
    println!("skr-client: bad base64 -> 400 with one JSON error");
    Ok(())
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut it = args.iter();
    let (mut api, mut maa, mut vault, mut kid, mut expect) = (None, None, None, None, None);
    while let Some(a) = it.next() {
        let v = it.next().ok_or(format!("{a} wants a value"))?.clone();
        match a.as_str() {
            "--api" => api = Some(v),
            "--maa" => maa = Some(v),
            "--vault" => vault = Some(v),
            "--kid" => kid = Some(v),
            "--expect-sha256" => {
                expect = Some(std::fs::read_to_string(&v).map_err(|e| format!("read {v}: {e}"))?)
            }
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    let need = |o: Option<String>, n: &str| o.ok_or(format!("missing {n}"));
    Ok(Args {
        api: need(api, "--api")?,
        maa: need(maa, "--maa")?,
        vault: need(vault, "--vault")?,
        kid: need(kid, "--kid")?,
        expect_sha256: need(expect, "--expect-sha256")?,
    })
}

/// A canned SKR API for the self-check: it answers what the real one answers for `key`.
fn canned(key: [u8; 32]) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let mut s = s.unwrap();
            let mut buf = vec![0u8; 8192];
            let n = s.read(&mut buf).unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let path = req.split(' ').nth(1).unwrap_or("").to_string();
            let (status, body) = match path.as_str() {
                "/status" => (200, json!({"message": "Status OK"})),
                "/attest/maa" => {
                    let claims =
                        B64URL.encode(json!({"x-ms-runtime": {"app": "skr-client"}}).to_string());
                    (200, json!({"token": format!("e30.{claims}.sig")}))
                }
                "/key/release" => {
                    let jwk = json!({"k": B64URL.encode(key), "kty": "oct"}).to_string();
                    (200, json!({"key": jwk}))
                }
                _ => (400, json!({"error": "bad base64"})),
            };
            let body = body.to_string();
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

fn self_check() -> Result<(), String> {
    let key = [5u8; 32];
    let api = canned(key);
    let mut a = Args {
        api,
        maa: "maa.example".into(),
        vault: "kv.vault.azure.net".into(),
        kid: "k".into(),
        expect_sha256: encfs_init::hex::encode(&Sha256::digest(key)),
    };
    check(&a)?;
    a.expect_sha256 = encfs_init::hex::encode(&Sha256::digest([6u8; 32]));
    match check(&a) {
        Err(e) if e.contains("SHA-256") => Ok(()),
        other => Err(format!("a wrong key was not caught: {other:?}")),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test` passes harness flags (--quiet, filters); only --api selects the client.
    if !args.iter().any(|a| a == "--api") {
        match self_check() {
            Ok(()) => println!("guest_skr_client self-check: 1 passed, 0 failed"),
            Err(e) => {
                println!("guest_skr_client self-check: 0 passed, 1 failed: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    match parse(&args).and_then(|a| check(&a)) {
        Ok(()) => println!("skr-client: PASS"),
        Err(e) => {
            println!("skr-client: FAIL: {e}");
            std::process::exit(1);
        }
    }
}
