//! flotilla-hub: the control plane (store, API, scheduler, controllers, the MQTT broker and the
//! node link) and the kubectl-like CLI that talks to it. `main.rs` only parses arguments, sets
//! up logging and dispatches here.

pub mod api;
pub mod cli;
pub mod clock;
pub mod components;
pub mod controllers;
pub mod files;
pub mod mqtt;
pub mod nodes;
pub mod scheduler;
pub mod serve;
pub mod store;
