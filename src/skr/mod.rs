//! Upstream's SKR sidecar API on loopback, served from a thread of encfs-init (issue 16; upstream-spec §7).
//!
//! [`Server::start`] binds the plan's loopback address and runs an acceptor thread under a supervisor
//! thread: when the acceptor dies (a panic: a bug) it is started again after a backoff
//! ([`crate::backoff`]), and nothing here ever ends PID 1. Each connection is served by a thread of its own,
//! at most `max_connections` at once (one more is answered 503 and closed); one request per connection,
//! read within `request_timeout` ([`wire`]), answered by [`api::handle`]. A panic while answering is caught:
//! the client gets a 500 and the server goes on. Nothing secret is logged: a request's body is never, and
//! a released key travels only in its response body.
//!
//! The work behind the endpoints (reports, collateral, MAA, release) is [`crate::keyrelease`]'s, with a
//! context the [`Backend`] gives: the boot's (`init::keys`) in production, a test's wiring in tests.
#![forbid(unsafe_code)]

pub mod api;
pub mod wire;

use crate::keyrelease::token::{TokenCache, TokenSource};
use crate::keyrelease::{self, Context};
use crate::manifest::{SkrPlan, VaultKind};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the endpoints need: a key-release context, the identity's vault token source, and the rules for
/// where that token may go.
pub trait Backend: Send + Sync + 'static {
    /// The plan's identity's vault token source for a vault of `kind` (workload identity or IMDS).
    fn identity(&self, kind: VaultKind) -> Result<TokenSource, keyrelease::Error>;
    /// Run `f` with a key-release context whose vault tokens come from `tokens`.
    fn with_context<T>(
        &self,
        tokens: &TokenCache,
        f: impl FnOnce(&Context<'_>) -> Result<T, keyrelease::Error>,
    ) -> Result<T, keyrelease::Error>;
    /// Test mode: plain http endpoints, and the identity's token to any vault host.
    fn test_mode(&self) -> bool;
    /// The vault hosts the manifest names (the identity's token may go there too).
    fn manifest_vaults(&self) -> Vec<String>;
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The address cannot be bound.
    #[error(
        "SKR API: listen on {0}; fix: free the port (another SKR sidecar?) or change [skr] listen"
    )]
    Bind(SocketAddr, #[source] std::io::Error),
    /// A thread cannot be started.
    #[error("SKR API: start its thread")]
    Thread(#[source] std::io::Error),
}

/// The running server. [`Server::stop`] ends it (dropping it does too).
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    supervisor: Option<JoinHandle<()>>,
}

/// What every connection thread shares.
struct Shared<B> {
    backend: Arc<B>,
    tokens: api::Tokens,
    plan: SkrPlan,
    active: AtomicUsize,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// Bind `plan.listen` and serve `backend` from threads.
    pub fn start<B: Backend>(plan: &SkrPlan, backend: Arc<B>) -> Result<Server, Error> {
        let listener = TcpListener::bind(plan.listen).map_err(|e| Error::Bind(plan.listen, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Bind(plan.listen, e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            backend,
            tokens: api::Tokens::default(),
            plan: plan.clone(),
            active: AtomicUsize::new(0),
            stop: stop.clone(),
        });
        let s = stop.clone();
        let supervisor = std::thread::Builder::new()
            .name("skr-api".into())
            .spawn(move || {
                supervise(&s, RESTART, || {
                    let shared = shared.clone();
                    let l = listener.try_clone()?;
                    std::thread::Builder::new()
                        .name("skr-accept".into())
                        .spawn(move || accept(&l, &shared))
                })
            })
            .map_err(Error::Thread)?;
        log::info!(
            "SKR API: listening on http://{addr} (max_connections {}, request_timeout {}s, max_body {} bytes)",
            plan.max_connections,
            plan.request_timeout.as_secs_f32(),
            plan.max_body
        );
        Ok(Server {
            addr,
            stop,
            supervisor: Some(supervisor),
        })
    }

    /// The address bound (the port chosen when the plan said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting and end the threads (a request being served finishes on its own, within its
    /// timeout).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(h) = self.supervisor.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if h.join().is_err() {
            log::error!("SKR API: its supervisor panicked while stopping");
        }
        log::info!("SKR API: stopped");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The acceptor's restart backoff: first and longest wait, and how long a run must last to reset it.
const RESTART: (Duration, Duration, Duration) = (
    Duration::from_millis(100),
    Duration::from_secs(30),
    Duration::from_secs(60),
);

/// Run the acceptor `start` makes until `stop`: when it ends without `stop` (it panicked, or could not
/// start), start it again after an exponential backoff, reset by a long enough run.
pub fn supervise(
    stop: &AtomicBool,
    (first, max, stable): (Duration, Duration, Duration),
    mut start: impl FnMut() -> std::io::Result<JoinHandle<()>>,
) {
    let mut failures = 0u32;
    while !stop.load(Ordering::SeqCst) {
        let began = Instant::now();
        let outcome = start().map(JoinHandle::join);
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if began.elapsed() >= stable {
            failures = 0;
        }
        let wait = crate::backoff::exponential(first, max, failures);
        failures = failures.saturating_add(1);
        match outcome {
            Ok(Err(p)) => log::error!(
                "SKR API: the acceptor panicked (a bug): {}; restarting it in {}ms",
                crate::errors::panic_message(&*p),
                wait.as_millis()
            ),
            Ok(Ok(())) => log::error!(
                "SKR API: the acceptor ended; restarting it in {}ms",
                wait.as_millis()
            ),
            Err(e) => log::error!(
                "SKR API: cannot start the acceptor: {e}; trying again in {}ms",
                wait.as_millis()
            ),
        }
        let until = Instant::now() + wait;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20).min(wait));
        }
    }
}

/// Accept until stopped; each connection on a thread of its own, or a 503 beyond `max_connections`.
fn accept<B: Backend>(l: &TcpListener, shared: &Arc<Shared<B>>) {
    for conn in l.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let mut s = match conn {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors, a connection reset before accept: wait a little, go on.
                log::warn!("SKR API: accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if shared.active.fetch_add(1, Ordering::SeqCst) >= shared.plan.max_connections {
            shared.active.fetch_sub(1, Ordering::SeqCst);
            busy(&mut s, shared.plan.max_connections);
            continue;
        }
        let sh = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("skr-conn".into())
            .spawn(move || {
                serve(s, &sh);
                sh.active.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            shared.active.fetch_sub(1, Ordering::SeqCst);
            log::warn!("SKR API: cannot start a connection thread: {e}; the connection is closed");
        }
    }
}

fn busy(s: &mut TcpStream, max: usize) {
    let body = wire::error_body(&format!(
        "too many connections (max_connections {max}); fix: retry later, or raise [skr] max_connections"
    ));
    if let Err(e) = wire::respond(s, 503, None, &body, Duration::from_secs(1)) {
        log::debug!("SKR API: answering 503: {e}");
    }
    log::warn!("SKR API: a connection beyond max_connections ({max}) was answered 503");
}

/// One connection: read the request, answer it (a panic while answering becomes a 500), close.
fn serve<B: Backend>(mut s: TcpStream, sh: &Shared<B>) {
    let started = Instant::now();
    let timeout = sh.plan.request_timeout;
    let reply = match wire::read_request(&mut s, started + timeout, timeout, sh.plan.max_body) {
        Ok(req) => {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                api::handle(&*sh.backend, &sh.tokens, &req.method, &req.path, &req.body)
            }));
            let reply = r.unwrap_or_else(|p| {
                let m = crate::errors::panic_message(&*p);
                log::error!(
                    "SKR API: {} {}: a panic while answering (a bug): {m}; the API goes on",
                    req.method,
                    req.path
                );
                api::Reply::error(500, &format!("internal error (a bug) while answering {} {}; fix: report it with encfs-init's log", req.method, req.path))
            });
            log::info!(
                "SKR API: {} {} -> {} ({}ms)",
                req.method,
                req.path,
                reply.status,
                started.elapsed().as_millis()
            );
            reply
        }
        Err(e) => match e.status() {
            Some(status) => {
                let line = crate::errors::chain(&e);
                log::warn!("SKR API: a request refused ({status}): {line}");
                api::Reply::error(status, &line)
            }
            None => {
                log::debug!("SKR API: {}", crate::errors::chain(&e));
                return;
            }
        },
    };
    if let Err(e) = wire::respond(&mut s, reply.status, reply.allow, &reply.body, timeout) {
        log::warn!("SKR API: writing the answer: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_acceptor_is_restarted_with_backoff_until_stopped() {
        let stop = Arc::new(AtomicBool::new(false));
        let mut starts = 0u32;
        let began = Instant::now();
        let ms = Duration::from_millis;
        supervise(&stop, (ms(40), ms(1000), ms(60_000)), || {
            starts += 1;
            let (n, stop) = (starts, stop.clone());
            std::thread::Builder::new().spawn(move || {
                if n < 3 {
                    panic!("test: the acceptor dies");
                }
                stop.store(true, Ordering::SeqCst);
            })
        });
        assert_eq!(starts, 3, "restarted twice, then stopped");
        // Waits of 40 ms then 80 ms between the three runs.
        assert!(began.elapsed() >= ms(120), "{:?}", began.elapsed());
    }
}
