//! flotilla-hub: the control plane (store, API, scheduler, controllers, MQTT pusher) and the
//! kubectl-like CLI that talks to it. `main.rs` only parses arguments and dispatches here.

pub mod cli;
