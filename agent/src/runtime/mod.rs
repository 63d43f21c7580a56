//! The container runtime: OCI specs from pod specs (`spec`, with the default `seccomp` profile),
//! the pod's volumes on the node (`volumes`), and the single-threaded helpers the agent binary is
//! re-executed as: the per-container `shim` that creates and supervises one container through
//! libcontainer, the pod's namespace holder (`sandbox`) and `container-exec` (`exec`). The
//! agent's executor reaches them through its runtime port (`node::exec::port`).

pub mod exec;
pub mod sandbox;
pub mod seccomp;
pub mod shim;
pub mod spec;
pub mod volumes;

/// Gives a freshly started helper (shim or sandbox holder), and so the containers it starts,
/// the signal state a process expects: nothing blocked (the agent blocks SIGTERM and SIGINT
/// for its signal thread, and children inherit masks) and SIGPIPE at its default (Rust's
/// runtime ignores it, and exec keeps ignored signals, so containers would inherit that).
pub fn reset_signals() {
    use nix::sys::signal::{pthread_sigmask, SigHandler, SigSet, SigmaskHow, Signal};
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // FFI boundary: `signal(2)` is unsafe in nix because a handler could run arbitrary code
    // at any point. SIG_DFL installs no handler, so no code of ours runs as a handler.
    #[allow(unsafe_code)]
    // SAFETY: see above; the process is single-threaded at this point.
    unsafe {
        let _ = nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigDfl);
    }
}
