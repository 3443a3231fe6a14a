//! The one integration-test binary: tests run the real `pilotfish` executable over stdio against
//! model-server doubles on 127.0.0.1 (see `support`); `providers` calls the library's network
//! layer directly against the same doubles.

mod support;

mod double;
mod providers;
mod smoke;
