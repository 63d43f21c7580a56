//! What `flotilla-hub status` (componentstatuses) says about each part of the control plane:
//! the record every component reports its health in, shared by the API that serves it and
//! the components that fill it.

use std::sync::Arc;

/// Health of a control-plane component.
#[derive(Debug, Clone)]
pub struct Component {
    pub name: &'static str,
    pub healthy: bool,
    pub message: String,
}

/// Something that reports the health of components other than the store.
pub type ComponentProbe = Arc<dyn Fn() -> Vec<Component> + Send + Sync>;
