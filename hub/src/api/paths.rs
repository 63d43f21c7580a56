//! Kubernetes-style API paths, parsed by a pure function:
//!
//! ```text
//! /api/v1/{plural}[/{name}[/status]]                          core, cluster-scoped or all namespaces
//! /api/v1/namespaces/{ns}/{plural}[/{name}[/status]]          core, namespaced
//! /apis/{group}/v1/...                                        same shapes for apps and batch
//! ```

use flotilla_shared::api::Kind;

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A kind's collection, in one namespace or (for namespaced kinds) all of them.
    Collection { kind: Kind, namespace: Option<String> },
    /// One object; `status` for the status subresource.
    Object { kind: Kind, namespace: String, name: String, status: bool },
    /// Events in a namespace (`/api/v1/namespaces/{ns}/events`).
    Events { namespace: String },
    /// `/api/v1/componentstatuses`.
    ComponentStatuses,
}

/// Why a path is not an API path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    NotFound(String),
}

fn group_of(kind: Kind) -> &'static str {
    kind.info().group
}

pub fn parse(path: &str) -> Result<Target, PathError> {
    let nf = || PathError::NotFound(format!("the server could not find the requested resource {path:?}"));
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let (group, rest): (&str, &[&str]) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", g, "v1", rest @ ..] => (*g, rest),
        _ => return Err(nf()),
    };
    let kind_of = |plural: &str| -> Result<Kind, PathError> {
        Kind::ALL.iter().copied().find(|k| k.info().plural == plural && group_of(*k) == group).ok_or_else(
            || {
                PathError::NotFound(format!(
                    "the server does not serve {plural:?} in API group {:?}",
                    if group.is_empty() { "core" } else { group }
                ))
            },
        )
    };
    let valid = |s: &str| !s.is_empty() && s.len() <= 253 && !s.contains(['/', '\0']);
    match rest {
        ["componentstatuses"] if group.is_empty() => Ok(Target::ComponentStatuses),
        ["namespaces", ns, "events"] if group.is_empty() && valid(ns) => {
            Ok(Target::Events { namespace: ns.to_string() })
        }
        ["namespaces", ns, plural] if valid(ns) => {
            let kind = kind_of(plural)?;
            if !kind.info().namespaced {
                return Err(nf());
            }
            Ok(Target::Collection { kind, namespace: Some(ns.to_string()) })
        }
        ["namespaces", ns, plural, name] | ["namespaces", ns, plural, name, "status"]
            if valid(ns) && valid(name) =>
        {
            let kind = kind_of(plural)?;
            if !kind.info().namespaced {
                return Err(nf());
            }
            Ok(Target::Object {
                kind,
                namespace: ns.to_string(),
                name: name.to_string(),
                status: rest.len() == 5,
            })
        }
        [plural] => Ok(Target::Collection { kind: kind_of(plural)?, namespace: None }),
        [plural, name] | [plural, name, "status"] if valid(name) => {
            let kind = kind_of(plural)?;
            if kind.info().namespaced {
                return Err(nf());
            }
            Ok(Target::Object {
                kind,
                namespace: String::new(),
                name: name.to_string(),
                status: rest.len() == 3,
            })
        }
        _ => Err(nf()),
    }
}

/// The collection path of a kind in a namespace (or cluster-wide).
pub fn collection_path(kind: Kind, namespace: Option<&str>) -> String {
    let info = kind.info();
    let prefix =
        if info.group.is_empty() { "/api/v1".to_string() } else { format!("/apis/{}/v1", info.group) };
    match namespace {
        Some(ns) if info.namespaced => format!("{prefix}/namespaces/{ns}/{}", info.plural),
        _ => format!("{prefix}/{}", info.plural),
    }
}

/// The path of one object.
pub fn object_path(kind: Kind, namespace: &str, name: &str) -> String {
    format!("{}/{name}", collection_path(kind, Some(namespace)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: &str, want: Result<Target, ()>) {
        assert_eq!(parse(path).map_err(|_| ()), want, "{path}");
    }

    #[test]
    fn paths_table() {
        use Target::*;
        check("/api/v1/pods", Ok(Collection { kind: Kind::Pod, namespace: None }));
        check(
            "/api/v1/namespaces/default/pods",
            Ok(Collection { kind: Kind::Pod, namespace: Some("default".into()) }),
        );
        check(
            "/api/v1/namespaces/default/pods/web",
            Ok(Object { kind: Kind::Pod, namespace: "default".into(), name: "web".into(), status: false }),
        );
        check(
            "/api/v1/namespaces/default/pods/web/status",
            Ok(Object { kind: Kind::Pod, namespace: "default".into(), name: "web".into(), status: true }),
        );
        check(
            "/apis/apps/v1/namespaces/edge/deployments/web",
            Ok(Object {
                kind: Kind::Deployment,
                namespace: "edge".into(),
                name: "web".into(),
                status: false,
            }),
        );
        check("/apis/batch/v1/jobs", Ok(Collection { kind: Kind::Job, namespace: None }));
        check(
            "/api/v1/nodes/pi-1",
            Ok(Object { kind: Kind::Node, namespace: String::new(), name: "pi-1".into(), status: false }),
        );
        check(
            "/api/v1/nodes/pi-1/status",
            Ok(Object { kind: Kind::Node, namespace: String::new(), name: "pi-1".into(), status: true }),
        );
        check(
            "/api/v1/namespaces/edge",
            Ok(Object {
                kind: Kind::Namespace,
                namespace: String::new(),
                name: "edge".into(),
                status: false,
            }),
        );
        check("/api/v1/namespaces", Ok(Collection { kind: Kind::Namespace, namespace: None }));
        check("/api/v1/namespaces/edge/events", Ok(Events { namespace: "edge".into() }));
        check("/api/v1/componentstatuses", Ok(ComponentStatuses));
        // Wrong group, unknown kinds, scope mismatches, junk.
        check("/api/v1/deployments", Err(()));
        check("/apis/apps/v1/pods", Err(()));
        check("/api/v1/namespaces/default/nodes", Err(()));
        check("/api/v1/pods/web", Err(()));
        check("/api/v1/namespaces/default/pods/web/logs", Err(()));
        check("/api/v2/pods", Err(()));
        check("/", Err(()));
    }

    #[test]
    fn paths_round_trip() {
        for kind in Kind::ALL {
            let ns = if kind.info().namespaced { "ns1" } else { "" };
            let p = object_path(*kind, ns, "x");
            assert_eq!(
                parse(&p),
                Ok(Target::Object {
                    kind: *kind,
                    namespace: ns.to_string(),
                    name: "x".into(),
                    status: false
                }),
                "{p}"
            );
        }
    }
}
