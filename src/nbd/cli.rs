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
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
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
SIGINT or SIGTERM: stop accepting, let in-flight requests finish, flush the cache, exit 0.
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

/// A connection being served: a handle to end its reading side, and its thread.
struct Conn {
    stop_reading: Box<dyn Fn() + Send>,
    thread: std::thread::JoinHandle<()>,
}

/// SIGINT and SIGTERM: blocked in every thread of `nbd serve`, and read from a signalfd by the accept loop.
fn stop_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set
}

/// A listening socket the accept loop can poll.
trait Listener: AsFd {
    type Conn: server::Stream;
    fn accept_one(&self) -> std::io::Result<Self::Conn>;
    /// End the reading side of `c` (an in-flight request still gets its reply).
    fn stop_reading(c: &Self::Conn) -> std::io::Result<Box<dyn Fn() + Send>>;
}

impl Listener for UnixListener {
    type Conn = UnixStream;
    fn accept_one(&self) -> std::io::Result<UnixStream> {
        let (c, _) = self.accept()?;
        c.set_nonblocking(false)?;
        Ok(c)
    }
    fn stop_reading(c: &UnixStream) -> std::io::Result<Box<dyn Fn() + Send>> {
        let c = c.try_clone()?;
        Ok(Box::new(move || {
            let _ = c.shutdown(Shutdown::Read);
        }))
    }
}

impl Listener for TcpListener {
    type Conn = TcpStream;
    fn accept_one(&self) -> std::io::Result<TcpStream> {
        let (c, _) = self.accept()?;
        c.set_nonblocking(false)?;
        let _ = c.set_nodelay(true);
        Ok(c)
    }
    fn stop_reading(c: &TcpStream) -> std::io::Result<Box<dyn Fn() + Send>> {
        let c = c.try_clone()?;
        Ok(Box::new(move || {
            let _ = c.shutdown(Shutdown::Read);
        }))
    }
}

/// Accept and serve connections until SIGINT or SIGTERM (or, with `--once`, the first connection's end);
/// then end the reading side of every connection, let in-flight requests finish, and return.
fn serve_until_stopped<L: Listener>(
    l: &L,
    signals: &SignalFd,
    cache: &Arc<CachedSource<Box<dyn BlockSource>>>,
    once: bool,
) -> Result<(), String> {
    let mut conns: Vec<Conn> = Vec::new();
    let mut taken = false;
    loop {
        // A finished connection's thread has nothing left to join.
        conns.retain(|c| !c.thread.is_finished());
        if once && taken && conns.is_empty() {
            break;
        }
        let listening = !(once && taken);
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        if listening {
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
        }
        // A finished `--once` connection is noticed within a tick.
        match poll(&mut fds, PollTimeout::from(200u16)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        let signalled = fds[0].any().unwrap_or(false);
        let acceptable = fds.get(1).and_then(PollFd::any).unwrap_or(false);
        if signalled {
            if let Ok(Some(info)) = signals.read_signal() {
                log::info!(
                    "signal {}: no new connections; finishing in-flight requests and flushing",
                    info.ssi_signo
                );
            }
            break;
        }
        if acceptable {
            let conn = match l.accept_one() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(format!("accept: {e}")),
            };
            let stop_reading = L::stop_reading(&conn).map_err(|e| e.to_string())?;
            let cache = Arc::clone(cache);
            let thread = std::thread::spawn(move || {
                match server::serve(&cache, conn, &ServerConfig::default()) {
                    Ok(()) => log::info!("NBD client disconnected"),
                    Err(e) => log::warn!("{}", crate::errors::chain(&e)),
                }
            });
            conns.push(Conn {
                stop_reading,
                thread,
            });
            taken = true;
        }
    }
    for c in &conns {
        (c.stop_reading)();
    }
    for c in conns {
        let _ = c.thread.join();
    }
    Ok(())
}

fn run(a: &ServeArgs) -> Result<(), String> {
    // First, before any thread exists (the blob client and the cache start some): every thread inherits the
    // mask, so SIGINT and SIGTERM wait in the signalfd instead of killing the process mid-write.
    let stop = stop_signals();
    stop.thread_block()
        .map_err(|e| format!("block SIGINT and SIGTERM: {e}"))?;
    let signals = SignalFd::with_flags(&stop, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| format!("signalfd: {e}"))?;
    let src = open_source(a)?;
    let bs = a.block_size.unwrap_or(validate::DEFAULT_BLOCK_SIZE);
    let cs = a.cache_size.unwrap_or(validate::DEFAULT_CACHE_SIZE);
    let cache =
        Arc::new(CachedSource::new(src, CacheConfig::new(bs, cs)).map_err(|e| e.to_string())?);
    if let Some(path) = &a.socket {
        let _ = std::fs::remove_file(path);
        let l = UnixListener::bind(path).map_err(|e| format!("{}: {e}", path.display()))?;
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
        println!("listening on {}", path.display());
        let served = serve_until_stopped(&l, &signals, &cache, a.once);
        let _ = std::fs::remove_file(path);
        served?;
    } else if let Some(addr) = a.listen {
        let l = TcpListener::bind(addr).map_err(|e| format!("{addr}: {e}"))?;
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
        let local = l.local_addr().map_err(|e| e.to_string())?;
        println!("listening on {local}");
        serve_until_stopped(&l, &signals, &cache, a.once)?;
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
