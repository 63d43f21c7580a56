//! The writing verbs: `apply -f`, `delete`, and `create namespace|configmap|secret generic`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

use flotilla_shared::api::{Kind, Object};
use flotilla_shared::manifest::load_paths;

use super::client::{ApiFailure, Client, Connection};
use crate::api::paths::{collection_path, object_path};

/// Objects that others live in or refer to go first, so one `apply -f dir/` works in any order.
fn apply_order(kind: Kind) -> u8 {
    match kind {
        Kind::Namespace => 0,
        Kind::Node | Kind::PersistentVolume => 1,
        Kind::ConfigMap | Kind::Secret | Kind::PersistentVolumeClaim | Kind::Service => 2,
        _ => 3,
    }
}

/// `kind.group/name`, as kubectl names objects in its output.
pub fn display_name(kind: Kind, name: &str) -> String {
    format!("{}/{name}", kind.info().qualified_singular())
}

fn namespace_of(o: &Object) -> String {
    if o.kind().info().namespaced {
        o.metadata().namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "default".to_string())
    } else {
        String::new()
    }
}

pub async fn apply(conn: &Connection, files: &[PathBuf], dry_run: bool) -> anyhow::Result<i32> {
    let loaded = load_paths(files);
    if !loaded.errors.is_empty() {
        for e in &loaded.errors {
            eprintln!("{e}");
        }
        bail!("nothing was applied: fix the errors above");
    }
    if loaded.objects.is_empty() {
        bail!("no objects found");
    }
    let client = Client::connect(conn)?;
    let mut objects: Vec<Object> = loaded.objects.into_iter().map(|l| l.object).collect();
    objects.sort_by_key(|o| apply_order(o.kind()));
    let suffix = if dry_run { " (dry run)" } else { "" };
    let query = if dry_run { "?dryRun=All" } else { "" };
    let mut failed = 0;
    for o in objects {
        let kind = o.kind();
        let ns = namespace_of(&o);
        let name = o.metadata().name().to_string();
        let mut body = o.to_value();
        if kind.info().namespaced {
            body["metadata"]["namespace"] = Value::String(ns.clone());
        }
        let path = format!("{}{query}", object_path(kind, &ns, &name));
        match client.write(Method::PATCH, &path, Some(&body)).await {
            Ok(w) => outln!("{} {}{suffix}", display_name(kind, &name), w.outcome),
            Err(e) => {
                failed += 1;
                eprintln!("error: {}: {e:#}", display_name(kind, &name));
            }
        }
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

pub async fn delete(
    conn: &Connection,
    args: &[String],
    files: &[PathBuf],
    namespace: Option<String>,
) -> anyhow::Result<i32> {
    let mut targets: Vec<(Kind, String, String)> = Vec::new();
    if !files.is_empty() {
        if !args.is_empty() {
            bail!("give either -f FILE or KIND NAME..., not both");
        }
        let loaded = load_paths(files);
        if !loaded.errors.is_empty() {
            for e in &loaded.errors {
                eprintln!("{e}");
            }
            bail!("nothing was deleted: fix the errors above");
        }
        for l in loaded.objects {
            targets.push((l.object.kind(), namespace_of(&l.object), l.object.metadata().name().to_string()));
        }
        // Delete in reverse apply order: workloads before what they use.
        targets.sort_by_key(|(k, _, _)| std::cmp::Reverse(apply_order(*k)));
    } else {
        let Some((kind_name, names)) = args.split_first() else {
            bail!("give -f FILE or KIND NAME...");
        };
        let kind = Kind::lookup(kind_name).with_context(|| format!("unknown kind {kind_name:?}"))?;
        if names.is_empty() {
            bail!("give at least one {} name", kind.info().name);
        }
        let ns = if kind.info().namespaced {
            namespace.clone().unwrap_or_else(|| "default".into())
        } else {
            String::new()
        };
        for n in names {
            targets.push((kind, ns.clone(), n.clone()));
        }
    }
    let client = Client::connect(conn)?;
    let mut failed = 0;
    for (kind, ns, name) in targets {
        match client.write(Method::DELETE, &object_path(kind, &ns, &name), None).await {
            Ok(_) => outln!("{} \"{name}\" deleted", kind.info().qualified_singular()),
            Err(e) => {
                failed += 1;
                if ApiFailure::is(&e, reqwest::StatusCode::NOT_FOUND) {
                    eprintln!("error: {} \"{name}\" not found", kind.info().qualified_singular());
                } else {
                    eprintln!("error: {}: {e:#}", display_name(kind, &name));
                }
            }
        }
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(subcommand)]
    what: CreateWhat,
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
}

#[derive(Debug, Subcommand)]
enum CreateWhat {
    /// Create a namespace.
    #[command(alias = "ns")]
    Namespace { name: String },
    /// Create a ConfigMap from literals and files.
    #[command(alias = "cm")]
    Configmap(DataArgs),
    /// Create a Secret.
    Secret {
        #[command(subcommand)]
        kind: SecretKind,
    },
}

#[derive(Debug, Subcommand)]
enum SecretKind {
    /// A generic (Opaque) secret from literals and files.
    Generic(DataArgs),
}

#[derive(Debug, Args)]
struct DataArgs {
    name: String,
    /// KEY=VALUE (repeatable).
    #[arg(long = "from-literal")]
    literals: Vec<String>,
    /// [KEY=]PATH: a file's contents under KEY (default: the file's name) (repeatable).
    #[arg(long = "from-file")]
    files: Vec<String>,
}

/// Collects `--from-literal` and `--from-file` entries as raw bytes per key.
fn collect_data(d: &DataArgs) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for l in &d.literals {
        let (k, v) = l.split_once('=').with_context(|| format!("--from-literal {l:?} must be KEY=VALUE"))?;
        out.push((k.to_string(), v.as_bytes().to_vec()));
    }
    for f in &d.files {
        let (key, path) = match f.split_once('=') {
            Some((k, p)) => (k.to_string(), PathBuf::from(p)),
            None => {
                let p = PathBuf::from(f);
                let k = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .with_context(|| format!("--from-file {f:?} has no file name"))?
                    .to_string();
                (k, p)
            }
        };
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        out.push((key, bytes));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (k, _) in &out {
        if !seen.insert(k.clone()) {
            bail!("key {k:?} is given more than once");
        }
    }
    Ok(out)
}

pub async fn create(conn: &Connection, args: CreateArgs) -> anyhow::Result<i32> {
    let ns = args.namespace.clone().unwrap_or_else(|| "default".into());
    let (kind, obj) = match &args.what {
        CreateWhat::Namespace { name } => {
            (Kind::Namespace, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
        }
        CreateWhat::Configmap(d) => {
            let mut data = Map::new();
            let mut binary = Map::new();
            for (k, v) in collect_data(d)? {
                match String::from_utf8(v) {
                    Ok(s) => data.insert(k, Value::String(s)),
                    Err(e) => binary.insert(k, Value::String(B64.encode(e.into_bytes()))),
                };
            }
            let mut o = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": d.name, "namespace": ns}, "data": data});
            if !binary.is_empty() {
                o["binaryData"] = Value::Object(binary);
            }
            (Kind::ConfigMap, o)
        }
        CreateWhat::Secret { kind: SecretKind::Generic(d) } => {
            let data: Map<String, Value> =
                collect_data(d)?.into_iter().map(|(k, v)| (k, Value::String(B64.encode(v)))).collect();
            (
                Kind::Secret,
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": d.name, "namespace": ns}, "type": "Opaque", "data": data}),
            )
        }
    };
    // Same rules as apply: validate before sending.
    if let Err((_, errors)) = flotilla_shared::manifest::parse_object(obj.clone()) {
        for e in errors {
            eprintln!("error: {e}");
        }
        bail!("nothing was created");
    }
    let client = Client::connect(conn)?;
    let path = collection_path(kind, Some(&ns));
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    client.write(Method::POST, &path, Some(&obj)).await?;
    outln!("{} created", display_name(kind, &name));
    Ok(0)
}
