//! Sharing state between handlers and threads: locks that recover from poisoning, and
//! running blocking work off the runtime thread. Every lock in Pilotfish goes through
//! [`lock`], [`read`] or [`write`]; nothing here knows what the data is.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks a mutex, recovering the data if a panicking request poisoned it: every critical
/// section in Pilotfish leaves its data consistent before anything can panic.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Read-locks an `RwLock`, recovering from poisoning as [`lock`] does.
pub fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Write-locks an `RwLock`, recovering from poisoning as [`lock`] does.
pub fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `work` on tokio's blocking pool and waits for it, so that the runtime thread goes on
/// serving other requests meanwhile (the server runs on a current-thread runtime: anything
/// that takes more than a keystroke's budget — parsing, diffing or scanning a whole document —
/// belongs here). A panic in `work` resumes in the caller, where the handler's panic guard
/// turns it into an error; dropping the future leaves `work` to finish unobserved.
pub async fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only when the runtime shuts down, and then nobody waits for this answer.
        Err(e) => panic!("blocking work was cancelled: {e}"),
    }
}
