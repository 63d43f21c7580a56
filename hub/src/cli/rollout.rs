//! `rollout status|history|undo|restart|pause|resume`, as kubectl's. The decisions (what a
//! rollout's status means, which revision to go back to) are pure functions below; the commands
//! read and edit objects through the API.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use flotilla_shared::api::Kind;

use super::client::{ApiFailure, Client, Connection};
use crate::api::paths::{collection_path, object_path};
use flotilla_shared::api::wellknown::{CHANGE_CAUSE, REVISION};

#[derive(Debug, clap::Subcommand)]
pub enum RolloutCommand {
    /// Wait until a Deployment, DaemonSet or StatefulSet has rolled out, printing progress.
    Status {
        /// KIND/NAME, or KIND NAME.
        #[arg(required = true, num_args = 1..=2)]
        target: Vec<String>,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Give up after this many seconds (0: wait forever).
        #[arg(long, default_value_t = 0)]
        timeout: u64,
        /// Keep watching until the rollout is done (`--watch=false`: print the status once).
        #[arg(short = 'w', long, default_value_t = true, action = clap::ArgAction::Set)]
        watch: bool,
    },
    /// List a Deployment's revisions, or show one (`--revision N`).
    History {
        #[arg(required = true, num_args = 1..=2)]
        target: Vec<String>,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        #[arg(long)]
        revision: Option<i64>,
    },
    /// Roll a Deployment back to the previous revision, or to `--to-revision N`.
    Undo {
        #[arg(required = true, num_args = 1..=2)]
        target: Vec<String>,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        #[arg(long, default_value_t = 0)]
        to_revision: i64,
    },
    /// Replace every pod of a Deployment, DaemonSet or StatefulSet by a rollout.
    Restart {
        #[arg(required = true, num_args = 1..=2)]
        target: Vec<String>,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Stop a Deployment's rollouts (scaling still works).
    Pause {
        #[arg(required = true, num_args = 1..=2)]
        target: Vec<String>,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Let a paused Deployment roll out again.
    Resume {
        #[arg(required = true, num_args = 1..=2)]
        target: Vec<String>,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
}

/// `KIND/NAME` or `KIND NAME`.
pub fn target(args: &[String]) -> anyhow::Result<(Kind, String)> {
    let (kind, name) = match args {
        [one] => one
            .split_once('/')
            .map(|(k, n)| (k.to_string(), n.to_string()))
            .context("give KIND/NAME or KIND NAME")?,
        [k, n] => (k.clone(), n.clone()),
        _ => bail!("give KIND/NAME or KIND NAME"),
    };
    let kind = Kind::lookup(&kind).with_context(|| format!("unknown kind {kind:?}"))?;
    if name.is_empty() {
        bail!("give KIND/NAME or KIND NAME");
    }
    Ok((kind, name))
}

/// kubectl's `deployments.apps "web" not found` for a 404, else the error itself.
pub fn not_found(e: anyhow::Error, kind: Kind, name: &str) -> anyhow::Error {
    if ApiFailure::is(&e, reqwest::StatusCode::NOT_FOUND) {
        let info = kind.info();
        let plural = if info.group.is_empty() {
            info.plural.to_string()
        } else {
            format!("{}.{}", info.plural, info.group)
        };
        anyhow::anyhow!("{plural} \"{name}\" not found")
    } else {
        e
    }
}

/// Where a rollout stands: a progress line, or done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Waiting(String),
    Done(String),
}

fn int(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// kubectl's rollout status messages for a Deployment, DaemonSet or StatefulSet.
pub fn progress(kind: Kind, obj: &Value) -> anyhow::Result<Progress> {
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let generation = obj.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
    let observed = int(obj, "/status/observedGeneration");
    if observed < generation {
        let what = match kind {
            Kind::Deployment => "deployment spec update",
            Kind::DaemonSet => "daemon set spec update",
            _ => "statefulset spec update",
        };
        return Ok(Progress::Waiting(format!("Waiting for {what} to be observed...")));
    }
    let want = obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    Ok(match kind {
        Kind::Deployment => {
            let updated = int(obj, "/status/updatedReplicas");
            let total = int(obj, "/status/replicas");
            let available = int(obj, "/status/availableReplicas");
            if updated < want {
                Progress::Waiting(format!(
                    "Waiting for deployment \"{name}\" rollout to finish: {updated} out of {want} new replicas have been updated..."
                ))
            } else if total > updated {
                Progress::Waiting(format!(
                    "Waiting for deployment \"{name}\" rollout to finish: {} old replicas are pending termination...",
                    total - updated
                ))
            } else if available < updated {
                Progress::Waiting(format!(
                    "Waiting for deployment \"{name}\" rollout to finish: {available} of {updated} updated replicas are available..."
                ))
            } else {
                Progress::Done(format!("deployment \"{name}\" successfully rolled out"))
            }
        }
        Kind::DaemonSet => {
            if obj.pointer("/spec/updateStrategy/type").and_then(Value::as_str) == Some("OnDelete") {
                bail!("rollout status is only available for RollingUpdate strategy type");
            }
            let desired = int(obj, "/status/desiredNumberScheduled");
            let updated = int(obj, "/status/updatedNumberScheduled");
            let available = int(obj, "/status/numberAvailable");
            if updated < desired {
                Progress::Waiting(format!(
                    "Waiting for daemon set \"{name}\" rollout to finish: {updated} out of {desired} new pods have been updated..."
                ))
            } else if available < desired {
                Progress::Waiting(format!(
                    "Waiting for daemon set \"{name}\" rollout to finish: {available} of {desired} updated pods are available..."
                ))
            } else {
                Progress::Done(format!("daemon set \"{name}\" successfully rolled out"))
            }
        }
        Kind::StatefulSet => {
            if obj.pointer("/spec/updateStrategy/type").and_then(Value::as_str) == Some("OnDelete") {
                bail!("rollout status is only available for RollingUpdate strategy type");
            }
            let ready = int(obj, "/status/readyReplicas");
            let updated = int(obj, "/status/updatedReplicas");
            let revision = obj.pointer("/status/updateRevision").and_then(Value::as_str).unwrap_or_default();
            let partition = int(obj, "/spec/updateStrategy/rollingUpdate/partition");
            if ready < want {
                Progress::Waiting(format!("Waiting for {} pods to be ready...", want - ready))
            } else if partition > 0 {
                if updated < want - partition {
                    Progress::Waiting(format!(
                        "Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...",
                        want - partition
                    ))
                } else {
                    Progress::Done(format!(
                        "partitioned roll out complete: {updated} new pods have been updated..."
                    ))
                }
            } else if updated < want {
                Progress::Waiting(format!(
                    "Waiting for statefulset rolling update to complete {updated} pods at revision {revision}..."
                ))
            } else {
                Progress::Done(format!(
                    "statefulset rolling update complete {want} pods at revision {revision}..."
                ))
            }
        }
        other => bail!(
            "no rollout status for {} (Deployments, DaemonSets and StatefulSets have one)",
            other.info().plural
        ),
    })
}

fn revision(rs: &Value) -> i64 {
    rs.pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION))
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The ReplicaSets of a Deployment, oldest revision first.
fn revisions<'a>(deploy: &Value, replicasets: &'a [Value]) -> Vec<&'a Value> {
    let uid = deploy.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
    let mut mine: Vec<&Value> = replicasets
        .iter()
        .filter(|rs| {
            rs.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid && r["controller"] == true))
        })
        .collect();
    mine.sort_by_key(|rs| revision(rs));
    mine
}

/// The template to roll back to: revision `to` (0: the one before the current). `Err` with
/// kubectl's message when there is none.
pub fn rollback_template(deploy: &Value, replicasets: &[Value], to: i64) -> anyhow::Result<(i64, Value)> {
    let name = deploy.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let mine = revisions(deploy, replicasets);
    if mine.is_empty() {
        bail!("no rollout history found for deployment \"{name}\"");
    }
    let rs = if to == 0 {
        match mine.len() {
            0 | 1 => bail!("no revision found for deployment \"{name}\""),
            n => mine[n - 2],
        }
    } else {
        mine.iter()
            .find(|rs| revision(rs) == to)
            .copied()
            .with_context(|| format!("unable to find specified revision {to} in history"))?
    };
    let mut template = rs.pointer("/spec/template").cloned().unwrap_or(Value::Null);
    if let Some(labels) = template.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove("pod-template-hash");
    }
    Ok((revision(rs), template))
}

/// `rollout history` as kubectl prints it.
pub fn history_table(deploy: &Value, replicasets: &[Value]) -> String {
    let name = deploy.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let mut out = format!("deployment.apps/{name} \nREVISION  CHANGE-CAUSE\n");
    for rs in revisions(deploy, replicasets) {
        let cause = rs
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(CHANGE_CAUSE))
            .and_then(Value::as_str)
            .unwrap_or("<none>");
        out.push_str(&format!("{:<10}{cause}\n", revision(rs)));
    }
    out
}

pub async fn run(conn: &Connection, cmd: RolloutCommand) -> anyhow::Result<i32> {
    let client = Client::connect(conn)?;
    match cmd {
        RolloutCommand::Status { target: t, namespace, timeout, watch } => {
            let (kind, name) = target(&t)?;
            let path = object_path(kind, &namespace.unwrap_or_else(|| "default".into()), &name);
            let deadline = (timeout > 0).then(|| Instant::now() + Duration::from_secs(timeout));
            let mut last = String::new();
            loop {
                let obj = client.get(&path).await.map_err(|e| not_found(e, kind, &name))?;
                match progress(kind, &obj)? {
                    Progress::Done(m) => {
                        outln!("{m}");
                        return Ok(0);
                    }
                    Progress::Waiting(m) => {
                        if m != last {
                            outln!("{m}");
                            last = m;
                        }
                    }
                }
                if !watch {
                    return Ok(0);
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    bail!("timed out waiting for the condition");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        RolloutCommand::History { target: t, namespace, revision: wanted } => {
            let (kind, name) = deployment_target(&t)?;
            let ns = namespace.unwrap_or_else(|| "default".into());
            let deploy =
                client.get(&object_path(kind, &ns, &name)).await.map_err(|e| not_found(e, kind, &name))?;
            let rses = list_replicasets(&client, &ns).await?;
            match wanted {
                None => out!("{}", history_table(&deploy, &rses)),
                Some(n) => {
                    let rs = revisions(&deploy, &rses)
                        .into_iter()
                        .find(|rs| revision(rs) == n)
                        .with_context(|| format!("unable to find the specified revision {n}"))?;
                    outln!("deployment.apps/{name} with revision #{n}\nPod Template:");
                    let template = rs.pointer("/spec/template").cloned().unwrap_or(Value::Null);
                    for line in flotilla_shared::manifest::emit::to_yaml(&template).lines() {
                        outln!("  {line}");
                    }
                }
            }
            Ok(0)
        }
        RolloutCommand::Undo { target: t, namespace, to_revision } => {
            let (kind, name) = deployment_target(&t)?;
            let ns = namespace.unwrap_or_else(|| "default".into());
            let path = object_path(kind, &ns, &name);
            let deploy = client.get(&path).await.map_err(|e| not_found(e, kind, &name))?;
            let rses = list_replicasets(&client, &ns).await?;
            if deploy.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
                bail!("you cannot rollback a paused deployment; resume it first with 'flotilla-hub rollout resume deployment/{name}' and try again");
            }
            let (rev, template) = rollback_template(&deploy, &rses, to_revision)?;
            if deploy.pointer("/spec/template") == Some(&template) {
                outln!("deployment.apps/{name} skipped rollback (current template already matches revision {rev})");
                return Ok(0);
            }
            client
                .edit(&path, |d| {
                    d["spec"]["template"] = template.clone();
                    Ok(true)
                })
                .await?;
            outln!("deployment.apps/{name} rolled back");
            Ok(0)
        }
        RolloutCommand::Restart { target: t, namespace } => {
            let (kind, name) = target(&t)?;
            if !matches!(kind, Kind::Deployment | Kind::DaemonSet | Kind::StatefulSet) {
                bail!(
                    "{} cannot be restarted (Deployments, DaemonSets and StatefulSets can)",
                    kind.info().plural
                );
            }
            let path = object_path(kind, &namespace.unwrap_or_else(|| "default".into()), &name);
            let now = crate::clock::now_rfc3339();
            client
                .edit(&path, |o| {
                    if o.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
                        bail!(
                            "{}.{} \"{name}\" can't restart paused deployment (run rollout resume first)",
                            kind.info().plural,
                            kind.info().group
                        );
                    }
                    o["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] =
                        now.clone().into();
                    Ok(true)
                })
                .await
                .map_err(|e| not_found(e, kind, &name))?;
            outln!("{}/{name} restarted", kind.info().qualified_singular());
            Ok(0)
        }
        RolloutCommand::Pause { target: t, namespace } => pause(&client, &t, namespace, true).await,
        RolloutCommand::Resume { target: t, namespace } => pause(&client, &t, namespace, false).await,
    }
}

fn deployment_target(t: &[String]) -> anyhow::Result<(Kind, String)> {
    let (kind, name) = target(t)?;
    if kind != Kind::Deployment {
        bail!("only Deployments keep a revision history (got {})", kind.info().plural);
    }
    Ok((kind, name))
}

async fn list_replicasets(client: &Client, ns: &str) -> anyhow::Result<Vec<Value>> {
    let list = client.get(&collection_path(Kind::ReplicaSet, Some(ns))).await?;
    Ok(list.get("items").and_then(Value::as_array).cloned().unwrap_or_default())
}

async fn pause(client: &Client, t: &[String], namespace: Option<String>, on: bool) -> anyhow::Result<i32> {
    let (kind, name) = deployment_target(t)?;
    let path = object_path(kind, &namespace.unwrap_or_else(|| "default".into()), &name);
    let changed = client
        .edit(&path, |d| {
            let paused = d.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
            if paused == on {
                return Ok(false);
            }
            d["spec"]["paused"] = on.into();
            Ok(true)
        })
        .await
        .map_err(|e| not_found(e, kind, &name))?;
    let word = if on { "paused" } else { "resumed" };
    match changed {
        Some(_) => outln!("deployment.apps/{name} {word}"),
        None => outln!("deployment.apps/{name} already {word}"),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rs(rev: i64, image: &str) -> Value {
        json!({"metadata": {"name": format!("web-{rev}"), "annotations": {REVISION: rev.to_string()},
                            "ownerReferences": [{"uid": "d1", "controller": true}]},
               "spec": {"template": {"metadata": {"labels": {"app": "web", "pod-template-hash": format!("h{rev}")}},
                                     "spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    #[test]
    fn undo_picks_the_previous_or_the_named_revision_without_the_hash_label() {
        let d = json!({"metadata": {"name": "web", "uid": "d1"}});
        let rses = [rs(2, "v2"), rs(1, "v1"), rs(3, "v3"), json!({"metadata": {"name": "other"}})];
        let (rev, t) = rollback_template(&d, &rses, 0).unwrap();
        assert_eq!(rev, 2);
        assert_eq!(t["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(rollback_template(&d, &rses, 1).unwrap().1["spec"]["containers"][0]["image"], "v1");
        assert_eq!(
            rollback_template(&d, &rses, 9).unwrap_err().to_string(),
            "unable to find specified revision 9 in history"
        );
        assert!(rollback_template(&d, &[], 0).unwrap_err().to_string().contains("no rollout history"));
        assert_eq!(history_table(&d, &rses), "deployment.apps/web \nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n3         <none>\n");
    }

    #[test]
    fn status_messages_follow_kubectl() {
        let d = |gen: i64, obs: i64, updated: i64, total: i64, avail: i64| {
            json!({"metadata": {"name": "web", "generation": gen}, "spec": {"replicas": 3},
                   "status": {"observedGeneration": obs, "updatedReplicas": updated, "replicas": total, "availableReplicas": avail}})
        };
        let p = |v: &Value| progress(Kind::Deployment, v).unwrap();
        assert_eq!(
            p(&d(2, 1, 3, 3, 3)),
            Progress::Waiting("Waiting for deployment spec update to be observed...".into())
        );
        assert_eq!(
            p(&d(2, 2, 1, 4, 3)),
            Progress::Waiting("Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...".into())
        );
        assert_eq!(
            p(&d(2, 2, 3, 4, 3)),
            Progress::Waiting(
                "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination..."
                    .into()
            )
        );
        assert_eq!(
            p(&d(2, 2, 3, 3, 2)),
            Progress::Waiting(
                "Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available..."
                    .into()
            )
        );
        assert_eq!(p(&d(2, 2, 3, 3, 3)), Progress::Done("deployment \"web\" successfully rolled out".into()));
        let ds = json!({"metadata": {"name": "agent", "generation": 1}, "status": {"observedGeneration": 1,
            "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 2}});
        assert_eq!(
            progress(Kind::DaemonSet, &ds).unwrap(),
            Progress::Waiting(
                "Waiting for daemon set \"agent\" rollout to finish: 2 of 3 updated pods are available..."
                    .into()
            )
        );
        assert!(progress(Kind::Job, &ds).is_err());
    }

    #[test]
    fn targets_parse_both_spellings() {
        assert_eq!(target(&["deploy/web".into()]).unwrap(), (Kind::Deployment, "web".into()));
        assert_eq!(target(&["sts".into(), "db".into()]).unwrap(), (Kind::StatefulSet, "db".into()));
        assert!(target(&["web".into()]).is_err());
        assert!(target(&["nothing/web".into()]).is_err());
    }
}
