//! Locking shared state.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, recovering the data if a panicking request poisoned it: every critical
/// section in Pilotfish leaves its data consistent before anything can panic.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
