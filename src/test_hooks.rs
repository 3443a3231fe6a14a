//! Faults on demand for the end-to-end tests, in debug builds only (the test suite runs the
//! debug binary; release builds compile these functions to nothing and read no variable):
//!
//! - `PILOTFISH_TEST_PANIC=MARKER`: [`panic_if_marked`] panics when a handler's input holds
//!   MARKER, to show that a panicking handler does not end the server and loses no document;
//! - `PILOTFISH_TEST_HOLD=FILE`: [`hold`] creates `FILE.held` and then waits until `FILE`
//!   exists, to show that a step on the blocking pool holds up no other request.
//!
//! Nothing else in the server knows these variables; no test double is involved.

#[cfg(debug_assertions)]
mod enabled {
    use std::path::PathBuf;
    use std::sync::OnceLock;
    use std::time::Duration;

    fn var(name: &str, cell: &'static OnceLock<Option<String>>) -> Option<&'static str> {
        cell.get_or_init(|| std::env::var(name).ok().filter(|v| !v.is_empty()))
            .as_deref()
    }

    pub fn panic_if_marked(place: &str, holds: impl FnOnce(&str) -> bool) {
        static MARKER: OnceLock<Option<String>> = OnceLock::new();
        if let Some(marker) = var("PILOTFISH_TEST_PANIC", &MARKER) {
            if holds(marker) {
                panic!("{place}: a panic asked for by PILOTFISH_TEST_PANIC");
            }
        }
    }

    pub fn hold(place: &str) {
        static FILE: OnceLock<Option<String>> = OnceLock::new();
        let Some(release) = var("PILOTFISH_TEST_HOLD", &FILE) else {
            return;
        };
        let release = PathBuf::from(release);
        let mut held = release.clone().into_os_string();
        held.push(".held");
        if let Err(e) = std::fs::write(&held, place) {
            tracing::error!("PILOTFISH_TEST_HOLD: cannot write {held:?}: {e}");
            return;
        }
        tracing::info!("{place}: held until {} exists", release.display());
        while !release.exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Panics in `place` (debug builds, with `PILOTFISH_TEST_PANIC` set) when `holds` says the
/// handler's input holds the marker. Release builds never call `holds`.
#[inline]
pub fn panic_if_marked(place: &str, holds: impl FnOnce(&str) -> bool) {
    #[cfg(debug_assertions)]
    enabled::panic_if_marked(place, holds);
    #[cfg(not(debug_assertions))]
    let _ = (place, holds);
}

/// Waits (debug builds, `PILOTFISH_TEST_HOLD` set) until the release file exists. Call it
/// only on the blocking pool.
#[inline]
pub fn hold(place: &str) {
    #[cfg(debug_assertions)]
    enabled::hold(place);
    #[cfg(not(debug_assertions))]
    let _ = place;
}
