//! The one integration-test binary: tests run the real `pilotfish` executable over stdio against
//! model-server doubles on 127.0.0.1 (see `support`); `providers` calls the library's network
//! layer directly against the same doubles.

mod harness;
mod support;
mod workspace;

mod actions;
mod cli;
mod completion;
mod contained;
mod double;
mod endpoints;
mod faults;
mod fim_wire;
mod languages;
mod load;
mod menu;
mod planted_key;
mod positions;
mod privacy;
mod protocol;
mod providers;
mod resilience;
mod robustness;
mod route_cli;
mod routing;
mod session;
mod smoke;
mod usage;
mod warm_up;
