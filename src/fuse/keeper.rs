//! The keeper of the FUSE serving threads: it replaces a serving thread that ends abnormally (a panic, an
//! I/O error on its fd) while the filesystem is mounted, and gives up (aborting the connection, so that I/O
//! fails instead of hanging) once the serving side has died too often ([`crate::supervise::budget`]).
#![forbid(unsafe_code)]

use super::error::Error;
use super::server::{self, End, Shared, Slot};
use super::sys;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// The keeper's shared state.
#[derive(Debug, Default)]
pub(super) struct KeeperState {
    /// Set before unmounting: threads ending then are expected.
    pub(super) stopping: AtomicBool,
    /// Serving threads replaced so far.
    pub(super) restarts: AtomicU32,
    /// Why the keeper stopped replacing them, once it did.
    pub(super) gave_up: std::sync::Mutex<Option<String>>,
}

/// Sends the slot index to the keeper when a serving thread ends, however it ends (also while unwinding).
struct Exit {
    index: usize,
    tx: Sender<usize>,
}

impl Drop for Exit {
    fn drop(&mut self) {
        let _ = self.tx.send(self.index);
    }
}

pub(super) fn spawn_worker(
    index: usize,
    shared: Arc<Shared>,
    slot: Arc<Slot>,
    tx: Sender<usize>,
) -> std::io::Result<JoinHandle<End>> {
    std::thread::Builder::new()
        .name(format!("fuse-serve-{index}"))
        .spawn(move || {
            let _exit = Exit { index, tx };
            server::serve(&shared, &slot)
        })
}

/// The keeper: replace serving threads that end while the filesystem is mounted; return once all have
/// ended because the connection is gone.
#[allow(clippy::too_many_arguments)]
pub(super) fn keep(
    shared: &Arc<Shared>,
    master: File,
    slots: &[Arc<Slot>],
    mut handles: Vec<Option<JoinHandle<End>>>,
    tx: &Sender<usize>,
    rx: &Receiver<usize>,
    st: &KeeperState,
    dir: &Path,
) -> Result<(), Error> {
    let mut live = handles.len();
    let mut budget = crate::supervise::budget::RestartBudget::new();
    let mut verdict = Ok(());
    let mut given_up = false;
    while live > 0 {
        let Ok(i) = rx.recv() else { break };
        let Some(h) = handles.get_mut(i).and_then(Option::take) else {
            continue;
        };
        let why = match h.join() {
            Ok(End::Gone) => {
                live -= 1;
                continue;
            }
            Ok(End::Io(e)) => format!("/dev/fuse: {e}"),
            Err(p) => format!("panicked: {}", crate::errors::panic_message(&*p)),
        };
        if st.stopping.load(Ordering::SeqCst) || given_up {
            live -= 1;
            continue;
        }
        if let Err(deaths) = budget.take() {
            let msg = format!(
                "{}: the FUSE serving side died {deaths} times in {} minutes; not restarting it again, aborting the connection so that its I/O fails",
                dir.display(),
                crate::supervise::budget::RestartBudget::window_minutes()
            );
            log::error!("fuse: {msg}");
            *st.gave_up
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(msg.clone());
            let t = Instant::now();
            match sys::abort(dir) {
                Ok(()) => log::info!(
                    "fuse: {}: connection aborted ({} ms)",
                    dir.display(),
                    t.elapsed().as_millis()
                ),
                Err(e) => log::error!("fuse: abort {}: {e}", dir.display()),
            }
            verdict = Err(Error::GaveUp(msg));
            given_up = true;
            live -= 1;
            continue;
        }
        let n = st.restarts.fetch_add(1, Ordering::SeqCst) + 1;
        log::warn!(
            "fuse: serving thread {i} ended ({why}); replacing it, its request is served again by the successor (restart {n})"
        );
        let Some(slot) = slots.get(i) else { continue };
        match spawn_worker(i, shared.clone(), slot.clone(), tx.clone()) {
            Ok(h) => handles[i] = Some(h),
            Err(e) => {
                log::error!("fuse: cannot replace serving thread {i}: {e}");
                live -= 1;
            }
        }
    }
    drop(master);
    verdict
}
