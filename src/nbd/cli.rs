//! `encfs-init nbd serve`: the NBD server on a Unix socket or a loopback TCP port, so real NBD clients
//! (qemu-io, qemu-img, nbd-client) drive exactly the serving code the kernel attach uses.
//!
//! Only loopback addresses may be listened on: the export has no authentication, and for a private blob
//! it serves data read with our credentials.
#![forbid(unsafe_code)]

use super::server::{self, ServerConfig};
use crate::blob::{self, Auth, AzureBlob, BlockSource, CacheConfig, CachedSource, FileSource};
use crate::exit;
use crate::manifest::{self, units, validate};
use crate::secret::SecretString;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;

/// Usage text.
pub const HELP: &str = "\
encfs-init nbd serve SOURCE (--socket PATH | --listen 127.0.0.1:PORT) [OPTIONS]

Serve SOURCE over NBD (fixed newstyle, one export, any export name) through the block cache.
SOURCE is file:///path or an http(s) blob URL (a query string is used as the SAS).

Options:
  --socket PATH            listen on a Unix socket (created; removed on exit)
  --listen ADDR:PORT       listen on TCP; loopback addresses only (port 0 picks one)
  --read-only              refuse writes (otherwise read-write; blobs must then be page blobs)
  --block-size SIZE        cache block and range request size (default 1MiB)
  --cache-size SIZE        cache budget (default 64MiB)
  --bearer-token-file PATH send `Authorization: Bearer <contents>` (https or loopback only)
  --once                   exit after the first connection ends
  -h, --help               this text

The listening address is printed on stdout as `listening on ADDR` once clients can connect.
";

/// Parsed `nbd serve` arguments.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ServeArgs {
    /// SOURCE.
    pub source: String,
    /// `--socket`.
    pub socket: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--read-only`.
    pub read_only: bool,
    /// `--block-size`.
    pub block_size: Option<u64>,
    /// `--cache-size`.
    pub cache_size: Option<u64>,
    /// `--bearer-token-file`.
    pub token_file: Option<PathBuf>,
    /// `--once`.
    pub once: bool,
}

/// Parse the arguments after `nbd`. `Ok(None)` = help was asked for.
pub fn parse(args: &[String]) -> Result<Option<ServeArgs>, String> {
    match args.first().map(String::as_str) {
        Some("serve") => {}
        None | Some("-h" | "--help" | "help") => return Ok(None),
        Some(other) => {
            return Err(format!(
                "nbd: unknown subcommand \"{other}\" (try `nbd serve`)"
            ))
        }
    }
    let mut a = ServeArgs::default();
    let mut it = args[1..].iter();
    while let Some(arg) = it.next() {
        let mut val = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--socket" => a.socket = Some(PathBuf::from(val()?)),
            "--listen" => {
                let v = val()?;
                let addr: SocketAddr = v
                    .parse()
                    .map_err(|_| format!("--listen {v}: not an IP:PORT address"))?;
                if !addr.ip().is_loopback() {
                    return Err(format!(
                        "--listen {v}: only loopback addresses are allowed (the export has no authentication)"
                    ));
                }
                a.listen = Some(addr);
            }
            "--read-only" => a.read_only = true,
            "--once" => a.once = true,
            "--block-size" => a.block_size = Some(units::parse_size(&val()?)?),
            "--cache-size" => a.cache_size = Some(units::parse_size(&val()?)?),
            "--bearer-token-file" => a.token_file = Some(PathBuf::from(val()?)),
            s if !s.starts_with('-') && a.source.is_empty() => a.source = s.to_string(),
            other => return Err(format!("nbd serve: unexpected argument \"{other}\"")),
        }
    }
    if a.source.is_empty() {
        return Err("nbd serve: give a SOURCE (file:///path or a blob URL)".into());
    }
    if a.socket.is_some() == a.listen.is_some() {
        return Err("nbd serve: give exactly one of --socket PATH or --listen ADDR:PORT".into());
    }
    Ok(Some(a))
}

/// Entry point for `encfs-init nbd ...`; returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let a = match parse(args) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{HELP}");
            return exit::OK;
        }
        Err(msg) => {
            log::error!("usage: {msg}");
            return exit::USAGE;
        }
    };
    match run(&a) {
        Ok(()) => exit::OK,
        Err(msg) => {
            log::error!("nbd serve: {msg}");
            exit::BOOT_FAILED
        }
    }
}

fn open_source(a: &ServeArgs) -> Result<Box<dyn BlockSource>, String> {
    if let Some(path) = a.source.strip_prefix("file://") {
        let f = FileSource::open(std::path::Path::new(path), !a.read_only)
            .map_err(|e| e.to_string())?;
        return Ok(Box::new(f));
    }
    let plan = manifest::empty_plan().map_err(|e| format!("default plan: {e:?}"))?;
    let client = crate::http::Client::new(&plan.network).map_err(|e| e.to_string())?;
    let (url, query) = match a.source.split_once('?') {
        Some((u, q)) => (u, Some(q)),
        None => (a.source.as_str(), None),
    };
    let auth = match (&a.token_file, query) {
        (Some(_), Some(_)) => return Err("give a SAS or a bearer token, not both".into()),
        (Some(p), None) => {
            let t = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let t = SecretString::new(t.trim().to_string());
            Auth::Bearer(Arc::new(blob::StaticToken::new(t)))
        }
        (None, Some(q)) => Auth::Sas(Arc::new(SecretString::new(q.to_string()))),
        (None, None) => Auth::Anonymous,
    };
    let b = AzureBlob::open(client, url, auth, &plan.api_versions.blob, !a.read_only)
        .map_err(|e| e.to_string())?;
    Ok(Box::new(b))
}

fn run(a: &ServeArgs) -> Result<(), String> {
    let src = open_source(a)?;
    let bs = a.block_size.unwrap_or(validate::DEFAULT_BLOCK_SIZE);
    let cs = a.cache_size.unwrap_or(validate::DEFAULT_CACHE_SIZE);
    let cache =
        Arc::new(CachedSource::new(src, CacheConfig::new(bs, cs)).map_err(|e| e.to_string())?);
    let config = ServerConfig::default();
    let serve_one = |conn_result: Result<(), server::ServeError>| match conn_result {
        Ok(()) => log::info!("NBD client disconnected"),
        Err(e) => log::warn!("{e}"),
    };
    if let Some(path) = &a.socket {
        let _ = std::fs::remove_file(path);
        let l = UnixListener::bind(path).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("listening on {}", path.display());
        for conn in l.incoming() {
            let conn = conn.map_err(|e| e.to_string())?;
            if a.once {
                serve_one(server::serve(&cache, conn, &config));
                break;
            }
            let cache = Arc::clone(&cache);
            std::thread::spawn(move || serve_one(server::serve(&cache, conn, &config)));
        }
        let _ = std::fs::remove_file(path);
    } else if let Some(addr) = a.listen {
        let l = TcpListener::bind(addr).map_err(|e| format!("{addr}: {e}"))?;
        let local = l.local_addr().map_err(|e| e.to_string())?;
        println!("listening on {local}");
        for conn in l.incoming() {
            let conn = conn.map_err(|e| e.to_string())?;
            let _ = conn.set_nodelay(true);
            if a.once {
                serve_one(server::serve(&cache, conn, &config));
                break;
            }
            let cache = Arc::clone(&cache);
            std::thread::spawn(move || serve_one(server::serve(&cache, conn, &config)));
        }
    }
    let st = cache.stats();
    log::info!(
        "cache: {} demand fetches, {} prefetches, {} hits, {} uploads ({} bytes)",
        st.demand_fetches,
        st.prefetches,
        st.hits,
        st.uploads,
        st.uploaded_bytes
    );
    cache.flush().map_err(|e| e.to_string())
}
