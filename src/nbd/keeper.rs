//! The serving side of an attached `/dev/nbdN`: our server in a thread of its own, and (netlink link) the
//! keeper thread that restarts it on a new socketpair when it dies and hands the kernel the new socket
//! with `NBD_CMD_RECONFIGURE`, until a detach asks it to stop or the serving side has died too often
//! ([`crate::supervise::budget`]).
#![forbid(unsafe_code)]

use super::error::Error;
use super::netlink::Nbd;
use super::server::{serve_transmission, ServerConfig};
use crate::blob::BlockSource;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the keeper thread shares with the attached device ([`super::kernel::Attached`]).
#[derive(Debug, Default)]
pub(super) struct Keeper {
    /// Set before a disconnect: the server's end is then expected.
    pub(super) detaching: AtomicBool,
    /// Our end of the live connection (a clone), to sever it.
    current: Mutex<Option<UnixStream>>,
    /// Serving-side restarts completed so far (new server running, kernel reconnected).
    pub(super) restarts: AtomicU32,
}

impl Keeper {
    /// Remember (a clone of) our end of the live connection, so that [`Keeper::sever`] reaches it.
    pub(super) fn track(&self, ours: &UnixStream) -> io::Result<()> {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(ours.try_clone()?);
        Ok(())
    }

    /// Shut down our end of the live connection, as a crashed server would leave it.
    pub(super) fn sever(&self) {
        if let Some(s) = self
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// The server thread's verdict.
pub(super) type Server = JoinHandle<Result<(), Error>>;

/// Run our server on `ours` in a thread of its own.
pub(super) fn spawn_server(
    index: u32,
    src: Arc<dyn BlockSource>,
    ours: UnixStream,
) -> Result<Server, Error> {
    std::thread::Builder::new()
        .name(format!("nbd{index}-server"))
        .spawn(move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let config = ServerConfig {
                    sever_on_panic: true,
                    ..ServerConfig::default()
                };
                serve_transmission(&src, ours, &config).map_err(Error::Serve)
            }))
            .unwrap_or_else(|p| Err(Error::ServerPanicked(crate::errors::panic_message(&*p))))
        })
        .map_err(|source| Error::Spawn {
            what: "the NBD server",
            source,
        })
}

/// The keeper: wait for the serving side to end; unless a detach asked for it, start a new one on a new
/// socketpair and hand the socket to the kernel. Returns the last server's verdict after a detach.
pub(super) fn keep(
    index: u32,
    src: Arc<dyn BlockSource>,
    mut nl: Nbd,
    first: Server,
    st: &Keeper,
) -> Result<(), Error> {
    let mut server = first;
    let mut last_restart: Option<Instant> = None;
    let mut budget = crate::supervise::budget::RestartBudget::new();
    loop {
        let ended = server
            .join()
            .unwrap_or(Err(Error::ThreadPanicked("the NBD server thread")));
        if st.detaching.load(Ordering::SeqCst) {
            return ended;
        }
        let n = st.restarts.load(Ordering::SeqCst) + 1;
        log::warn!(
            "nbd: /dev/nbd{index}: the serving side ended ({}); restarting it and reconnecting (restart {n})",
            ended
                .err()
                .map_or_else(|| "connection closed".to_string(), |e| crate::errors::chain(&e))
        );
        // A serving side that keeps dying (a request that crashes it every time it is re-sent, say) is not
        // restarted forever: the device's I/O then fails once the dead-connection timeout passes.
        if let Err(deaths) = budget.take() {
            let e = Error::GaveUp {
                index,
                deaths,
                minutes: crate::supervise::budget::RestartBudget::window_minutes(),
            };
            log::error!("nbd: {e}");
            return Err(e);
        }
        // A server that dies at once, again and again, must not spin.
        if last_restart.is_some_and(|t| t.elapsed() < Duration::from_millis(500)) {
            std::thread::sleep(Duration::from_millis(500));
        }
        last_restart = Some(Instant::now());
        let deadline = Instant::now() + Duration::from_secs(10);
        server = loop {
            let (ours, theirs) = UnixStream::pair().map_err(Error::SocketPair)?;
            match nl.reconfigure(index, theirs.as_raw_fd()) {
                Ok(()) => {
                    drop(theirs);
                    // Without a clone the new server still serves; only fault injection misses it.
                    let _ = st.track(&ours);
                    break spawn_server(index, src.clone(), ours)?;
                }
                Err(_) if st.detaching.load(Ordering::SeqCst) => return Ok(()),
                // ENOSPC: the kernel has not marked the old connection dead yet.
                Err(e)
                    if e.raw_os_error() == Some(nix::libc::ENOSPC) && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(source) => {
                    let e = Error::Reconnect { index, source };
                    log::error!("nbd: {}", crate::errors::chain(&e));
                    return Err(e);
                }
            }
        };
        st.restarts.fetch_add(1, Ordering::SeqCst);
        log::info!("nbd: /dev/nbd{index}: reconnected (restart {n})");
    }
}
