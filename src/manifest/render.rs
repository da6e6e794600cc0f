//! The plan as `encfs-init check` prints it: every decision spelled out, secrets shown only as
//! `<redacted>` with their length.
#![forbid(unsafe_code)]

use super::plan::*;
use super::units::{fmt_duration as d, fmt_size};
use std::fmt::Write;

/// Render `plan` for people.
pub fn render(plan: &Plan) -> String {
    let mut o = String::new();
    // Writing to a String cannot fail.
    let _ = write_plan(&mut o, plan);
    o
}

fn write_plan(o: &mut String, p: &Plan) -> std::fmt::Result {
    match &p.origin {
        Origin::Toml(path) => writeln!(o, "manifest:        {} (TOML)", path.display())?,
        Origin::Legacy(name) => writeln!(
            o,
            "manifest:        {name} (upstream EncfsSideCarArgs JSON)"
        )?,
        Origin::None => writeln!(o, "manifest:        none (plain init)")?,
    }
    if p.test_mode {
        writeln!(o, "test_mode:       ON (raw keys, fake attester and plain http allowed: NEVER in production)")?;
    } else {
        writeln!(o, "test_mode:       off")?;
    }
    writeln!(o, "readiness_file:  {}", p.readiness_file.display())?;
    write!(
        o,
        "log:             level {}",
        p.log.level.as_str().to_ascii_lowercase()
    )?;
    match &p.log.file {
        Some(f) => writeln!(o, ", also appended to {}", f.display())?,
        None => writeln!(o)?,
    }
    if p.kernel_modules.is_empty() {
        writeln!(o, "kernel_modules:  none")?;
    } else {
        writeln!(
            o,
            "kernel_modules:  {} (loaded only as PID 1 of a VM)",
            p.kernel_modules.join(", ")
        )?;
    }
    writeln!(
        o,
        "shared_volume:   {} ({})",
        p.shared_volume.as_str(),
        match p.shared_volume {
            SharedVolume::Auto =>
                "a private volume is warned about in a container with no application under encfs-init",
            SharedVolume::Required => "a private volume fails the boot",
            SharedVolume::Off => "not checked",
        }
    )?;
    match &p.app {
        Some(a) => writeln!(
            o,
            "app:             {:?} (restart: {})",
            a.argv,
            restart(a.restart)
        )?,
        None => writeln!(o, "app:             none (wait for SIGTERM after mounting)")?,
    }
    if let Some(k) = &p.skr {
        writeln!(
            o,
            "skr:             SKR API on http://{} (loopback only; max_connections {}, request_timeout {}, max_body {})",
            k.listen,
            k.max_connections,
            d(k.request_timeout),
            fmt_size(k.max_body as u64)
        )?;
    }
    let s = &p.supervise;
    writeln!(
        o,
        "supervise:       grace {} before SIGKILL; restart backoff {}..{}, reset after {} stable, give up after {} restarts",
        d(s.grace_period),
        d(s.backoff_initial),
        d(s.backoff_max),
        d(s.stable_after),
        s.max_restarts
    )?;
    let n = &p.network;
    writeln!(
        o,
        "network:         connect timeout {}, request timeout {}, {} retries (backoff up to {}), trust: web roots{}",
        d(n.connect_timeout),
        d(n.request_timeout),
        n.retries,
        d(n.retry_backoff_max),
        n.ca_bundle
            .as_ref()
            .map(|c| {
                let pin = n.ca_bundle_sha256.as_ref().map_or_else(
                    || " (not pinned)".to_string(),
                    |h| format!(" (sha256 {})", crate::hex::encode(h)),
                );
                format!(" + {}{pin}", c.display())
            })
            .unwrap_or_default()
    )?;
    let e = &p.endpoints;
    writeln!(
        o,
        "endpoints:       imds {}, thim {}, azcache {}, amd_kds {}, login {}",
        e.imds.0, e.thim.0, e.azcache.0, e.amd_kds.0, e.login_authority.0
    )?;
    let a = &p.api_versions;
    writeln!(
        o,
        "api_versions:    maa {}, akv {}, imds {}, blob {}",
        a.maa, a.akv, a.imds, a.blob
    )?;
    match &p.identity.client_id {
        Some(id) => writeln!(o, "identity:        user-assigned managed identity {id}")?,
        None => writeln!(o, "identity:        system-assigned managed identity, or workload identity from AZURE_* env")?,
    }
    if let Some((f, _)) = &p.attestation.fake_vcek_key {
        writeln!(
            o,
            "attestation:     TEST MODE: without an SEV-SNP device the fake attester signs with the fake VCEK key in {}",
            f.display()
        )?;
    }
    if let Some((f, _)) = &p.attestation.test_ark_pin {
        writeln!(
            o,
            "attestation:     TEST MODE: the ARK in {} is trusted as an AMD root",
            f.display()
        )?;
    }
    if let Some(ua) = &p.attestation.maa_user_agent {
        writeln!(o, "attestation:     MAA requests say User-Agent: {ua}")?;
    }
    match &p.certcache {
        Some(c) => writeln!(
            o,
            "certcache:       {:?} at {}{}{}{}",
            c.kind,
            c.endpoint.0,
            c.tee_type
                .as_ref()
                .map(|t| format!(", tee {t}"))
                .unwrap_or_default(),
            c.api_version
                .as_ref()
                .map(|t| format!(", api-version {t}"))
                .unwrap_or_default(),
            c.client_id
                .as_ref()
                .map(|t| format!(", clientId {t}"))
                .unwrap_or_default()
        )?,
        None => writeln!(
            o,
            "certcache:       none (the host's THIM certificates are used)"
        )?,
    }
    if p.filesystems.is_empty() {
        writeln!(o, "filesystems:     none")?;
    }
    for f in &p.filesystems {
        writeln!(o, "filesystem[{}]:", f.index)?;
        writeln!(
            o,
            "  mount_point:   {} ({})",
            f.mount_point.display(),
            if f.read_write {
                "read-write"
            } else {
                "read-only"
            }
        )?;
        let access = match &f.access {
            Access::Private => "private: identity token".to_string(),
            Access::Anonymous => "anonymous".to_string(),
            Access::Sas(s) => format!("SAS <redacted, {} chars>", s.len()),
        };
        writeln!(o, "  blob:          {} ({access})", f.url.url)?;
        writeln!(
            o,
            "  cache:         {} in {} blocks; blob requests retried for {}; NBD request timeout {}",
            fmt_size(f.cache_size),
            fmt_size(f.block_size),
            super::units::fmt_duration(f.io_deadline),
            super::units::fmt_duration(f.nbd_timeout)
        )?;
        writeln!(
            o,
            "  transport:     {}",
            match f.transport {
                super::TransportChoice::Auto =>
                    "auto (NBD where the kernel has it, else FUSE + loop; probed at boot)",
                super::TransportChoice::Nbd =>
                    "nbd (the kernel's NBD client; fails when it has none)",
                super::TransportChoice::Fuse =>
                    "fuse (a FUSE file on a loop device; fails when the kernel lacks either)",
            }
        )?;
        write_key(o, &f.key, true)?;
        if let Some(h) = &f.header_sha256 {
            writeln!(o, "  header pin:    sha256 {}", crate::hex::encode(h))?;
        }
        if let Some(vp) = &f.verity {
            writeln!(
                o,
                "  verity pin:    root sha256 {}, hash tree at byte {} (dm-verity under dm-crypt, read-only)",
                crate::hex::encode(&vp.root_hash),
                vp.hash_offset
            )?;
        }
    }
    if let Some(sp) = &p.secrets {
        writeln!(
            o,
            "secrets:         tmpfs of {} at {} (noexec, nosuid, nodev), written before readiness, wiped at shutdown",
            fmt_size(sp.size),
            sp.mount_point.display()
        )?;
        for s in &sp.secrets {
            writeln!(
                o,
                "secret[{}]:       {} as {}, mode {:04o}, owner {}:{}",
                s.index,
                sp.mount_point.join(&s.path).display(),
                s.format.as_str(),
                s.mode,
                s.uid,
                s.gid
            )?;
            write_key(o, &s.key, false)?;
        }
    }
    Ok(())
}

/// A key's lines: where it comes from, the vault token, and (for a disk key) the RSA derivation.
fn write_key(o: &mut String, key: &KeyPlan, disk_key: bool) -> std::fmt::Result {
    match key {
        KeyPlan::Raw(k) => writeln!(
            o,
            "  key:           raw key <redacted, {} bytes> (test mode)",
            k.len()
        ),
        KeyPlan::Release(r) => {
            writeln!(
                o,
                "  key:           release \"{}\"{} from {} ({}) after attestation by {}",
                r.kid,
                r.kty
                    .as_ref()
                    .map(|t| format!(" ({t})"))
                    .unwrap_or_default(),
                r.vault.0,
                match r.vault_kind {
                    VaultKind::KeyVault => "Key Vault",
                    VaultKind::ManagedHsm => "managed HSM",
                },
                r.authority.0
            )?;
            match &r.bearer_token {
                Some(t) => writeln!(
                    o,
                    "  vault token:   static bearer token <redacted, {} chars>",
                    t.len()
                )?,
                None => writeln!(o, "  vault token:   from the identity")?,
            }
            if disk_key {
                writeln!(
                    o,
                    "  derivation:    for RSA keys: HKDF-SHA256, salt {} bytes, label \"{}\"",
                    r.salt.len(),
                    r.label
                )?;
            }
            Ok(())
        }
    }
}

fn restart(r: RestartMode) -> &'static str {
    match r {
        RestartMode::Never => "never: its exit code becomes ours",
        RestartMode::OnFailure => "on-failure",
        RestartMode::Always => "always",
    }
}
