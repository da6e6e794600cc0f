//! `encfs-init nbd serve`: the NBD server on a Unix socket or a loopback TCP port, so real NBD clients
//! (qemu-io, qemu-img, nbd-client) drive exactly the serving code the kernel attach uses.
//!
//! Only loopback addresses may be listened on: the export has no authentication, and for a private blob
//! it serves data read with our credentials.
#![forbid(unsafe_code)]

use super::server::{self, ServerConfig};
use crate::argv::{Arg, Args, Parsed, Usage};
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
  --read-only              refuse writes (otherwise read-write: blobs must then be page blobs, and the
                           blob's lease is taken for as long as this runs, so no second writer opens it)
  --block-size SIZE        cache block and range request size (default 1MiB)
  --cache-size SIZE        cache budget (default 64MiB)
  --bearer-token-file PATH send `Authorization: Bearer <contents>` (https or loopback only)
  --once                   exit after the first connection ends
  -h, --help               this text

The listening address is printed on stdout as `listening on ADDR` once clients can connect.
SIGINT or SIGTERM: stop accepting, let in-flight requests finish, flush the cache, exit 0.
";

/// `nbd serve` failed after its arguments were accepted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SIGINT and SIGTERM could not be blocked.
    #[error("block SIGINT and SIGTERM")]
    BlockSignals(#[source] Errno),
    /// The signalfd could not be made.
    #[error("signalfd")]
    SignalFd(#[source] Errno),
    /// The built-in defaults do not validate (a bug).
    #[error("default plan")]
    DefaultPlan(#[source] manifest::Errors),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Http(#[from] crate::http::Error),
    /// The source could not be opened, or the cache failed.
    #[error(transparent)]
    Blob(#[from] blob::Error),
    /// Both a SAS (in the URL) and a bearer token file.
    #[error("give a SAS or a bearer token, not both")]
    SasAndBearer,
    /// A file (the token file) or a listening address failed.
    #[error("{at}")]
    Io {
        /// The path or address.
        at: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Polling for connections and signals failed.
    #[error("poll")]
    Poll(#[source] Errno),
}

/// An I/O error at `at` (a path or an address).
fn io(at: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io {
        at: at.to_string(),
        source,
    }
}

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

/// Parse the arguments after `nbd`.
pub fn parse(args: &[String]) -> Result<Parsed<ServeArgs>, Usage> {
    match args.first().map(String::as_str) {
        Some("serve") => {}
        None | Some("-h" | "--help" | "help") => return Ok(Parsed::Help(HELP)),
        Some(other) => {
            return Err(Usage(format!(
                "nbd: unknown subcommand \"{other}\" (try `nbd serve`)"
            )))
        }
    }
    let mut p = Args::new("nbd serve", "encfs-init help nbd", &args[1..]);
    let mut a = ServeArgs::default();
    while let Some(arg) = p.next_arg()? {
        let opt = match arg {
            Arg::Help => return Ok(Parsed::Help(HELP)),
            Arg::Value(v) if a.source.is_empty() => {
                a.source = v;
                continue;
            }
            Arg::Opt(o) => o,
            other => return Err(p.unexpected(other)),
        };
        match opt.as_str() {
            "--socket" => a.socket = Some(p.path()?),
            "--listen" => {
                let v = p.value()?;
                let addr: SocketAddr = v
                    .parse()
                    .map_err(|_| p.bad_value(format!("{v}: not an IP:PORT address")))?;
                if !addr.ip().is_loopback() {
                    return Err(p.bad_value(format!(
                        "{v}: only loopback addresses are allowed (the export has no authentication)"
                    )));
                }
                a.listen = Some(addr);
            }
            "--read-only" => a.read_only = true,
            "--once" => a.once = true,
            "--block-size" => a.block_size = Some(size(&mut p)?),
            "--cache-size" => a.cache_size = Some(size(&mut p)?),
            "--bearer-token-file" => a.token_file = Some(p.path()?),
            _ => return Err(p.unexpected(Arg::Opt(opt))),
        }
    }
    if a.source.is_empty() {
        return Err(p.plain("give a SOURCE (file:///path or a blob URL)"));
    }
    if a.socket.is_some() == a.listen.is_some() {
        return Err(p.plain("give exactly one of --socket PATH or --listen ADDR:PORT"));
    }
    Ok(Parsed::Run(a))
}

/// The value of a size option.
fn size(p: &mut Args) -> Result<u64, Usage> {
    let v = p.value()?;
    units::parse_size(&v).map_err(|e| p.bad_value(e))
}

/// Entry point for `encfs-init nbd ...`; returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let a = match parse(args) {
        Ok(Parsed::Run(a)) => a,
        Ok(Parsed::Help(text)) => {
            print!("{text}");
            return exit::OK;
        }
        Err(e) => return crate::argv::fail(&e),
    };
    match run(&a) {
        Ok(()) => exit::OK,
        Err(e) => {
            log::error!("nbd serve: {}", crate::errors::chain(&e));
            exit::BOOT_FAILED
        }
    }
}

fn open_source(a: &ServeArgs) -> Result<Box<dyn BlockSource>, Error> {
    if let Some(path) = a.source.strip_prefix("file://") {
        let f = FileSource::open(std::path::Path::new(path), !a.read_only)?;
        return Ok(Box::new(f));
    }
    let plan = manifest::empty_plan().map_err(Error::DefaultPlan)?;
    let client = crate::http::Client::new(&plan.network)?;
    let (url, query) = match a.source.split_once('?') {
        Some((u, q)) => (u, Some(q)),
        None => (a.source.as_str(), None),
    };
    let auth = match (&a.token_file, query) {
        (Some(_), Some(_)) => return Err(Error::SasAndBearer),
        (Some(p), None) => {
            let t = std::fs::read_to_string(p).map_err(io(p.display()))?;
            let t = SecretString::new(t.trim().to_string());
            Auth::Bearer(Arc::new(blob::StaticToken::new(t)))
        }
        (None, Some(q)) => Auth::Sas(Arc::new(SecretString::new(q.to_string()))),
        (None, None) => Auth::Anonymous,
    };
    let b = AzureBlob::open(client, url, auth, &plan.api_versions.blob, !a.read_only)?;
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
) -> Result<(), Error> {
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
            Err(e) => return Err(Error::Poll(e)),
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
                Err(e) => return Err(io("accept")(e)),
            };
            let stop_reading = L::stop_reading(&conn).map_err(io("connection"))?;
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

fn run(a: &ServeArgs) -> Result<(), Error> {
    // First, before any thread exists (the blob client and the cache start some): every thread inherits the
    // mask, so SIGINT and SIGTERM wait in the signalfd instead of killing the process mid-write.
    let stop = stop_signals();
    stop.thread_block().map_err(Error::BlockSignals)?;
    let signals = SignalFd::with_flags(&stop, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(Error::SignalFd)?;
    let src = open_source(a)?;
    let bs = a.block_size.unwrap_or(validate::DEFAULT_BLOCK_SIZE);
    let cs = a.cache_size.unwrap_or(validate::DEFAULT_CACHE_SIZE);
    let cache = Arc::new(CachedSource::new(src, CacheConfig::new(bs, cs))?);
    if let Some(path) = &a.socket {
        let _ = std::fs::remove_file(path);
        let l = UnixListener::bind(path).map_err(io(path.display()))?;
        l.set_nonblocking(true).map_err(io(path.display()))?;
        println!("listening on {}", path.display());
        let served = serve_until_stopped(&l, &signals, &cache, a.once);
        let _ = std::fs::remove_file(path);
        served?;
    } else if let Some(addr) = a.listen {
        let l = TcpListener::bind(addr).map_err(io(addr))?;
        l.set_nonblocking(true).map_err(io(addr))?;
        let local = l.local_addr().map_err(io(addr))?;
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
    Ok(cache.flush()?)
}
