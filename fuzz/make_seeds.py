#!/usr/bin/env python3
"""Write the hand-shaped seed inputs under corpus/<target>/seed-* (run from fuzz/: python3 make_seeds.py).

Every seed follows the wire or file format its target documents. Needs the `cryptography` package (a
throw-away certificate and RSA key for the JWS seeds; those two differ on every run, the rest is fixed).
"""
import base64, datetime, json, os, struct, shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "corpus"


def put(target, name, data):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / f"seed-{name}").write_bytes(data)


# --- nbd_proto -------------------------------------------------------------------------------------------
IHAVEOPT = 0x49484156454F5054


def opt(o, data=b""):
    return struct.pack(">QII", IHAVEOPT, o, len(data)) + data


def info_req(name=b"", reqs=(3,)):
    return struct.pack(">I", len(name)) + name + struct.pack(">H", len(reqs)) + b"".join(struct.pack(">H", r) for r in reqs)


def req(cmd, cookie, offset, length, flags=0, payload=b""):
    return struct.pack(">IHHQQI", 0x25609513, flags, cmd, cookie, offset, length) + payload


stream = (req(0, 1, 0, 4096) + req(1, 2, 512, 512, 1, b"\xab" * 512) + req(3, 3, 0, 0)
          + req(4, 4, 4096, 4096) + req(6, 5, 8192, 4096, 2) + req(0, 6, (1 << 20) - 512, 1024)
          + req(9, 7, 0, 0) + req(2, 8, 0, 0))
put("nbd_proto", "go-then-requests", b"\x00" + struct.pack(">I", 3) + opt(7, info_req(b"", (0, 3))) + stream)
put("nbd_proto", "options-export-name",
    b"\x02" + struct.pack(">I", 1) + opt(3) + opt(6, info_req(b"disk", (3,))) + opt(99, b"x")
    + opt(3, b"junk") + struct.pack(">QII", IHAVEOPT, 7, 8200) + b"\0" * 8200 + opt(1, b"") + stream)
put("nbd_proto", "abort", b"\x08" + struct.pack(">I", 3) + opt(2))
put("nbd_proto", "requests-read-only", b"\x09" + stream)

# --- snp_report --------------------------------------------------------------------------------------------


def report(version, fam=None, mod=None, step=0, policy=0x30000, key_flags=0, tcb=0x7308000000000003):
    b = bytearray(1184)
    struct.pack_into("<IIQ", b, 0, version, 0, policy)
    struct.pack_into("<IIQQI", b, 0x30, 0, 1, tcb, 0x3, key_flags)
    for off, n, seed in ((0x50, 64, 1), (0x90, 48, 2), (0xC0, 32, 3), (0x140, 32, 4), (0x1A0, 64, 5)):
        b[off:off + n] = bytes((seed * 37 + i * 11) & 0xFF for i in range(n))
    struct.pack_into("<Q", b, 0x180, tcb)
    if fam is not None:
        b[0x188:0x18B] = bytes([fam, mod, step])
    struct.pack_into("<Q", b, 0x1E0, tcb)
    b[0x1E8:0x1EB] = bytes([1, 55, 24])
    b[0x1EC:0x1EF] = bytes([1, 55, 24])
    struct.pack_into("<Q", b, 0x1F0, tcb)
    if version >= 5:
        struct.pack_into("<QQ", b, 0x1F8, 1, 3)
    b[0x2A0:0x2A0 + 48] = bytes((i * 7 + 1) & 0xFF for i in range(48))
    b[0x2A0 + 72:0x2A0 + 120] = bytes((i * 13 + 5) & 0xFF for i in range(48))
    return bytes(b)


put("snp_report", "v2-milan", report(2))
put("snp_report", "v3-genoa", report(3, 0x19, 0x11, 1, key_flags=0b10))
put("snp_report", "v5-turin-vlek", report(5, 0x1A, 0x02, 0, policy=0xB0000, key_flags=1 << 2, tcb=0x1B00000000000004))
put("snp_report", "v1-fake", report(1))

# --- jws ---------------------------------------------------------------------------------------------------
b64u = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding
from cryptography.x509.oid import NameOID

key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "myhsm.managedhsm.azure.net")])
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(datetime.datetime(2025, 1, 1)).not_valid_after(datetime.datetime(2027, 1, 1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("myhsm.managedhsm.azure.net")]), critical=False)
        .sign(key, hashes.SHA256()))
der = cert.public_bytes(serialization.Encoding.DER)
key_hsm = {"schema_version": "1.0", "header": {"kid": "TransferKey", "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"},
           "ciphertext": b64u(bytes(range(256)) + bytes(40))}
payload = {"request": {"api-version": "7.4", "enc": "CKM_RSA_AES_KEY_WRAP", "kid": "https://myhsm.managedhsm.azure.net/keys/model-key"},
           "response": {"key": {"key": {"kid": "https://myhsm.managedhsm.azure.net/keys/model-key/1", "kty": "oct-HSM",
                                        "key_ops": ["encrypt", "decrypt"], "key_hsm": b64u(json.dumps(key_hsm).encode())},
                                "attributes": {"enabled": True, "exportable": True}}}}
header = {"alg": "RS256", "kid": "x", "x5c": [base64.b64encode(der).decode()], "x5t#S256": "abc"}
signing_input = f"{b64u(json.dumps(header).encode())}.{b64u(json.dumps(payload).encode())}"
sig = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
put("jws", "0-release-jws", b"\x00" + f"{signing_input}.{b64u(sig)}".encode())
put("jws", "0-no-x5c", b"\x00" + (b64u(b'{"alg":"RS384"}') + "." + b64u(b"{}") + ".AAAA").encode())
put("jws", "1-payload", b"\x01" + json.dumps(payload).encode())
put("jws", "2-kwp-oct-key", b"\x02" + aes_key_wrap_with_padding(bytes([7] * 32), bytes(range(32))))
put("jws", "2-kwp-short", b"\x02" + aes_key_wrap_with_padding(bytes([7] * 32), b"0123456"))
put("jws", "3-oct", b"\x03\x01" + bytes(range(32)))
small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
put("jws", "3-rsa-pkcs8", b"\x03\x03" + small.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))

# --- keyrelease_responses -----------------------------------------------------------------------------------
jwt = "eyJhbGciOiJSUzI1NiIsImtpZCI6IngiLCJ0eXAiOiJKV1QifQ.eyJ4LW1zLWF0dGVzdGF0aW9uLXR5cGUiOiJzZXZzbnB2bSJ9.c2ln"
put("keyrelease_responses", "maa-token", b"\x00\x00" + json.dumps({"token": jwt}).encode())
put("keyrelease_responses", "maa-error", b"\x00\x04" + b'{"error":{"code":"InvalidParameter","message":"The report is not valid"}}')
put("keyrelease_responses", "akv-value", b"\x01\x00" + json.dumps({"value": signing_input + ".c2ln"}).encode())
put("keyrelease_responses", "imds-token", b"\x02\x00" + json.dumps(
    {"access_token": jwt, "client_id": "0f2a4c3e-1111-2222-3333-444455556666", "expires_in": "86399",
     "expires_on": "1748822400", "ext_expires_in": "86399", "not_before": "1748735700",
     "resource": "https://managedhsm.azure.net", "token_type": "Bearer"}).encode())
put("keyrelease_responses", "aad-token", b"\x02\x00" + json.dumps(
    {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": jwt}).encode())

# A regression input: this expires_in overflowed `Instant + Duration` in the token cache (fixed; see token.rs).
put("keyrelease_responses", "imds-huge-expires-in", b'\x02\x00{"access_token":"x","expires_in":"18446744073709551615"}')

# --- blob_range ----------------------------------------------------------------------------------------------


def rng(flags, offset, length, size, cr, body):
    return bytes([flags]) + struct.pack(">QHQ", offset, length, size) + ((cr.encode() + b"\n") if cr is not None else b"") + body


put("blob_range", "206", rng(0, 4096, 512, 1 << 30, "bytes 4096-4607/1073741824", b"\x5a" * 512))
put("blob_range", "206-filled", rng(4, 0, 512, 1 << 30, "bytes 0-511/1073741824", b""))
put("blob_range", "206-wrong-start", rng(0, 4096, 512, 1 << 30, "bytes 0-511/1073741824", b"\x5a" * 512))
put("blob_range", "200-whole", rng(2 | 8, 512, 512, 0, None, bytes(range(256)) * 8))
put("blob_range", "206-short", rng(0, 0, 512, 1024, "bytes 0-511/1024", b"\x01" * 100))

# --- manifest_toml / manifest_legacy --------------------------------------------------------------------------
(OUT / "manifest_toml").mkdir(parents=True, exist_ok=True)
for f in ("example", "multi"):
    shutil.copy(ROOT.parent / "config" / f"{f}.toml", OUT / "manifest_toml" / f"seed-{f}.toml")
put("manifest_toml", "public-test-mode.toml", """test_mode = true
readiness_file = "/tmp/ready"

[log]
level = "debug"

[[filesystem]]
mount_point = "/mnt/remote/pub"
url = "http://127.0.0.1:10000/devstoreaccount1/c/pub.img"
access = "public"
block_size = "4KiB"
io_deadline = "5s"

[filesystem.key]
kid = "k"
kty = "RSA-HSM"
authority = "sharedeus.eus.attest.azure.net"
vault = "myvault.vault.azure.net"
salt = "92a631487d8b8e"
label = "Model Encryption Key"
""")
put("manifest_toml", "typo", '[[filesystem]]\nmount_point = "/mnt/a"\nurll = "https://a.blob.core.windows.net/c/b.img"\n')

EXAMPLE = {
    "azure_info": {"certcache": {"endpoint_type": "AzCache", "endpoint": "americas.acccache.azure.net", "tee_type": "SevSnpVM",
                                 "api_version": "api-version=2020-10-15-preview", "client_id": "clientId=ConfidentialACI"},
                   "identity": {"client_id": "0f2a4c3e-1111-2222-3333-444455556666"}},
    "azure_filesystems": [{"mount_point": "/mnt/remote/share", "azure_url": "https://myaccount.blob.core.windows.net/private-container/encfs.img",
                           "azure_url_private": True, "read_write": True,
                           "key": {"kid": "EncfsTestKey", "kty": "RSA-HSM", "authority": {"endpoint": "sharedneu.neu.attest.azure.net"},
                                   "akv": {"endpoint": "myhsm.managedhsm.azure.net"}},
                           "key_derivation": {"salt": "92a631487d8b8e", "label": "Model Encryption Key"}}]}
CI = {"azure_filesystems": [
    {"mount_point": "/mnt/remote/page", "azure_url": "https://acct.blob.core.windows.net/c/page.img", "azure_url_private": True, "read_write": True,
     "key": {"kid": "citestkey", "kty": "oct-HSM",
             "authority": {"endpoint": "sharedeus.eus.attest.azure.net", "tee_type": "SevSnpVM", "api_version": "api-version=2020-10-01"},
             "akv": {"endpoint": "cimhsm.managedhsm.azure.net", "api_version": "api-version=7.4", "bearer_token": "eyJ0eXAiOiJKV1QifQ.e30.sig"}}},
    {"mount_point": "/mnt/remote/block", "azure_url": "https://acct.blob.core.windows.net/c/block.img?sv=2022-11-02&sp=r&sig=SIG%3D",
     "azure_url_private": False,
     "key": {"kid": "citestkey", "kty": "oct-HSM", "authority": {"endpoint": "sharedeus.eus.attest.azure.net"}, "akv": {"endpoint": "cikv.vault.azure.net"}}}]}
put("manifest_legacy", "example.json", json.dumps(EXAMPLE, indent=2))
put("manifest_legacy", "ci.json", json.dumps(CI))
put("manifest_legacy", "example.b64", base64.b64encode(json.dumps(EXAMPLE).encode()))
put("manifest_legacy", "ci.b64url", base64.urlsafe_b64encode(json.dumps(CI).encode()).rstrip(b"="))
put("manifest_legacy", "case-and-unknown.json",
    '{"Azure_Filesystems":[{"MOUNT_POINT":"/mnt/x","azure_url":"https://a.blob.core.windows.net/c/x.img","azure_url_private":"yes",'
    '"unknown":1,"key":{"kid":"k","kty":"oct-HSM","authority":{"endpoint":"a.attest.azure.net"},"akv":{"endpoint":"v.vault.azure.net"}}}]}')

# --- skr_request -------------------------------------------------------------------------------------------


def http(method, path, body=b"", headers=()):
    if isinstance(body, str):
        body = body.encode()
    h = "".join(f"{k}: {v}\r\n" for k, v in headers)
    return f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n{h}Content-Length: {len(body)}\r\n\r\n".encode() + body


rd = base64.b64encode(b'{"nonce":1}').decode()
put("skr_request", "status", http("GET", "/status"))
put("skr_request", "attest-raw", http("POST", "/attest/raw", json.dumps({"runtime_data": rd})))
put("skr_request", "attest-combined", http("POST", "/attest/combined?x=1", json.dumps({"runtime_data": rd})))
put("skr_request", "attest-maa", http("POST", "/attest/maa", json.dumps(
    {"maa_endpoint": "sharedeus.eus.attest.azure.net", "runtime_data": rd}), [("Expect", "100-continue")]))
put("skr_request", "key-release", http("POST", "/key/release", json.dumps(
    {"maa_endpoint": "sharedeus.eus.attest.azure.net", "akv_endpoint": "kv.vault.azure.net",
     "kid": "key/0123abcd", "access_token": "tok"})))
put("skr_request", "key-release-elsewhere", http("POST", "/key/release", json.dumps(
    {"maa_endpoint": "https://m.example:443", "akv_endpoint": "kv.example", "kid": "k"})))
put("skr_request", "chunked", b"POST /attest/raw HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
put("skr_request", "wrong-method", http("DELETE", "/key/release"))
