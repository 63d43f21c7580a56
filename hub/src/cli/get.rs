//! The reading verbs: `get` (tables, `-o yaml|json|wide|name`, `-w`), `describe` and `status`.

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use flotilla_shared::api::Kind;
use flotilla_shared::manifest::emit::to_yaml;

use super::client::{Client, Connection};
use super::print;
use crate::api::paths::{collection_path, object_path};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Wide,
    Yaml,
    Json,
    Name,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Kind: singular, plural or short name (po, deploy, rs, ds, sts, job, cj, cm, secret, svc, ns,
    /// pv, pvc, no), or several separated by commas (`deploy,rs,po`).
    kind: String,
    /// One object's name.
    name: Option<String>,
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Label selector (`app=web,tier!=db,env in (a,b)`).
    #[arg(short = 'l', long)]
    selector: Option<String>,
    #[arg(short = 'o', long, value_enum)]
    output: Option<Output>,
    /// Keep watching and print changes as they happen.
    #[arg(short = 'w', long)]
    watch: bool,
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn resolve_kind(s: &str) -> anyhow::Result<Kind> {
    Kind::lookup(s).with_context(|| {
        let known: Vec<&str> = Kind::ALL
            .iter()
            .map(|k| k.info().short_names.first().copied().unwrap_or(k.info().plural))
            .collect();
        format!("the server doesn't have a resource type {s:?} (known: {})", known.join(", "))
    })
}

fn print_objects(
    kind: Kind,
    items: &[Value],
    output: Option<Output>,
    with_ns: bool,
    single: bool,
) -> anyhow::Result<()> {
    match output {
        Some(Output::Json) => {
            let v = if single { items.first().cloned().unwrap_or(Value::Null) } else { list(items) };
            outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        Some(Output::Yaml) => {
            let v = if single { items.first().cloned().unwrap_or(Value::Null) } else { list(items) };
            out!("{}", to_yaml(&v));
        }
        Some(Output::Name) => {
            for o in items {
                let name = o.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
                outln!("{}/{name}", kind.info().qualified_singular());
            }
        }
        Some(Output::Wide) | None => {
            out!("{}", print::table(kind, items, output == Some(Output::Wide), with_ns, now()))
        }
    }
    Ok(())
}

/// `get deploy,rs,pods`: each kind's table in turn, names prefixed with their kind as kubectl
/// does; one List for `-o json|yaml`.
async fn get_kinds(conn: &Connection, a: GetArgs) -> anyhow::Result<i32> {
    if a.name.is_some() || a.watch {
        bail!("several kinds can only be listed: give no name and no --watch");
    }
    let kinds =
        a.kind.split(',').filter(|k| !k.is_empty()).map(resolve_kind).collect::<anyhow::Result<Vec<_>>>()?;
    let ns = a.namespace.clone().unwrap_or_else(|| "default".into());
    if let Some(sel) = &a.selector {
        flotilla_shared::selector::LabelSelector::parse(sel).map_err(|e| anyhow::anyhow!("-l: {e}"))?;
    }
    let client = Client::connect(conn)?;
    let mut all = Vec::new();
    for kind in kinds {
        let coll = collection_path(kind, if a.all_namespaces { None } else { Some(&ns) });
        let path = match &a.selector {
            Some(sel) => format!("{coll}?labelSelector={}", encode(sel)),
            None => coll,
        };
        let listed = client.get(&path).await?;
        let items = listed.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
        if !items.is_empty() {
            all.push((kind, items));
        }
    }
    if all.is_empty() && a.output.is_none_or(|o| o == Output::Wide) {
        if a.all_namespaces {
            eprintln!("No resources found");
        } else {
            eprintln!("No resources found in {ns} namespace.");
        }
        return Ok(0);
    }
    match a.output {
        Some(Output::Json) | Some(Output::Yaml) => {
            let items: Vec<Value> = all.into_iter().flat_map(|(_, items)| items).collect();
            print_objects(Kind::Pod, &items, a.output, false, false)?;
        }
        Some(Output::Name) => {
            for (kind, items) in &all {
                print_objects(*kind, items, a.output, false, false)?;
            }
        }
        Some(Output::Wide) | None => {
            let tables: Vec<String> = all
                .iter()
                .map(|(kind, items)| {
                    let prefixed: Vec<Value> = items
                        .iter()
                        .map(|o| {
                            let mut o = o.clone();
                            let name =
                                o.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
                            o["metadata"]["name"] =
                                format!("{}/{name}", kind.info().qualified_singular()).into();
                            o
                        })
                        .collect();
                    print::table(
                        *kind,
                        &prefixed,
                        a.output == Some(Output::Wide),
                        a.all_namespaces && kind.info().namespaced,
                        now(),
                    )
                })
                .collect();
            out!("{}", tables.join("\n"));
        }
    }
    Ok(0)
}

fn list(items: &[Value]) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items})
}

pub async fn get(conn: &Connection, a: GetArgs) -> anyhow::Result<i32> {
    if a.kind.contains(',') {
        return get_kinds(conn, a).await;
    }
    let kind = resolve_kind(&a.kind)?;
    let namespaced = kind.info().namespaced;
    let ns = a.namespace.clone().unwrap_or_else(|| "default".into());
    let client = Client::connect(conn)?;
    let mut query: Vec<String> = Vec::new();
    if let Some(sel) = &a.selector {
        flotilla_shared::selector::LabelSelector::parse(sel).map_err(|e| anyhow::anyhow!("-l: {e}"))?;
        query.push(format!("labelSelector={}", encode(sel)));
    }
    let with_ns = a.all_namespaces && namespaced;
    let coll = collection_path(kind, if a.all_namespaces { None } else { Some(&ns) });

    if let Some(name) = &a.name {
        if a.all_namespaces {
            bail!("a name cannot be combined with --all-namespaces");
        }
        let obj = client.get(&object_path(kind, if namespaced { &ns } else { "" }, name)).await?;
        print_objects(kind, std::slice::from_ref(&obj), a.output, false, true)?;
        if !a.watch {
            return Ok(0);
        }
        query.push(format!("fieldSelector=metadata.name%3D{}", encode(name)));
    } else if !a.watch {
        let path = if query.is_empty() { coll.clone() } else { format!("{coll}?{}", query.join("&")) };
        let listed = client.get(&path).await?;
        let items = listed.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
        if items.is_empty() && a.output.is_none_or(|o| o == Output::Wide) {
            if namespaced && !a.all_namespaces {
                eprintln!("No resources found in {ns} namespace.");
            } else {
                eprintln!("No resources found");
            }
            return Ok(0);
        }
        print_objects(kind, &items, a.output, with_ns, false)?;
        return Ok(0);
    }

    // Watch: the first event batch is the current state, then changes as they come.
    query.push("watch=true".into());
    let only = a.name.clone();
    let path = format!("{coll}?{}", query.join("&"));
    let mut header_done = false;
    client
        .watch(&path, |ev| {
            let obj = ev.get("object").cloned().unwrap_or(Value::Null);
            if only
                .as_deref()
                .is_some_and(|n| obj.pointer("/metadata/name").and_then(Value::as_str) != Some(n))
            {
                return Ok(());
            }
            match a.output {
                Some(Output::Json) => outln!("{}", serde_json::to_string(&ev).unwrap_or_default()),
                Some(Output::Yaml) => out!("---\n{}", to_yaml(&ev)),
                _ => {
                    let table = print::table(
                        kind,
                        std::slice::from_ref(&obj),
                        a.output == Some(Output::Wide),
                        with_ns,
                        now(),
                    );
                    let mut lines = table.lines();
                    let header = lines.next().unwrap_or_default();
                    if !header_done {
                        outln!("{header}");
                        header_done = true;
                    }
                    let deleted = ev.get("type").and_then(Value::as_str) == Some("DELETED");
                    for l in lines {
                        outln!("{l}{}", if deleted { "   (deleted)" } else { "" });
                    }
                }
            }
            Ok(())
        })
        .await?;
    Ok(0)
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn describe(
    conn: &Connection,
    kind: &str,
    name: &str,
    namespace: Option<String>,
) -> anyhow::Result<i32> {
    let kind = resolve_kind(kind)?;
    let ns =
        if kind.info().namespaced { namespace.unwrap_or_else(|| "default".into()) } else { String::new() };
    let client = Client::connect(conn)?;
    let obj = client.get(&object_path(kind, &ns, name)).await?;
    let event_ns = if ns.is_empty() { "default".to_string() } else { ns.clone() };
    let events_path = format!(
        "/api/v1/namespaces/{event_ns}/events?fieldSelector=involvedObject.kind%3D{},involvedObject.name%3D{}",
        kind.info().name,
        encode(name)
    );
    let events = client
        .get(&events_path)
        .await
        .ok()
        .and_then(|v| v.get("items").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    out!("{}", print::describe(kind, &obj, &events, now()));
    Ok(0)
}

pub async fn status(conn: &Connection) -> anyhow::Result<i32> {
    let client = Client::connect(conn)?;
    let v = client.get("/api/v1/componentstatuses").await?;
    let mut rows = vec![["NAME".to_string(), "STATUS".to_string(), "MESSAGE".to_string()]];
    for c in v.get("items").and_then(Value::as_array).into_iter().flatten() {
        let name = c.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let cond = c.pointer("/conditions/0");
        let healthy = cond.and_then(|c| c.get("status")).and_then(Value::as_str) == Some("True");
        let msg = cond.and_then(|c| c.get("message")).and_then(Value::as_str).unwrap_or_default();
        rows.push([
            name.to_string(),
            if healthy { "Healthy" } else { "Unhealthy" }.to_string(),
            msg.to_string(),
        ]);
    }
    let w0 = rows.iter().map(|r| r[0].len()).max().unwrap_or(0) + 3;
    let w1 = rows.iter().map(|r| r[1].len()).max().unwrap_or(0) + 3;
    for r in rows {
        outln!("{:w0$}{:w1$}{}", r[0], r[1], r[2]);
    }
    Ok(0)
}
