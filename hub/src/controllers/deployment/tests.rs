use super::*;
use crate::controllers::common::{name, str_at};
use crate::controllers::workloads::parse;
use serde_json::{json, Value};

/// The controller run on JSON fixtures, parsed as the loop parses stored objects.
fn reconcile(d: &Value, rses: &[Value], pods: &[Value], now: i64) -> Vec<Action> {
    let rses: Vec<ReplicaSet> = rses.iter().map(rs_of).collect();
    let pods: Vec<Pod> = pods.iter().map(|p| parse(Kind::Pod, p).expect("a pod")).collect();
    super::reconcile(&deploy_of(d), &rses.iter().collect::<Vec<_>>(), &pods.iter().collect::<Vec<_>>(), now)
}

fn deploy_of(d: &Value) -> Deployment {
    parse(Kind::Deployment, d).expect("a Deployment")
}

fn rs_of(rs: &Value) -> ReplicaSet {
    parse(Kind::ReplicaSet, rs).expect("a ReplicaSet")
}

fn hash_of(d: &Value) -> String {
    template_hash(&deploy_of(d).spec.template)
}

fn deploy(replicas: i64, image: &str, strategy: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": "default", "uid": "d1", "generation": 1},
           "spec": {"replicas": replicas, "strategy": strategy,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "c", "image": image}]}}}})
}

fn rolling(surge: Value, unavailable: Value) -> Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
}

/// ReplicaSets as the store holds them, with the ReplicaSet controller simulated: a round after
/// a ReplicaSet is scaled its pods exist, and they are available when `ready(image)` says so.
struct World {
    rses: Vec<Value>,
    /// Pods of old templates still alive (Recreate waits for them).
    lingering: usize,
}

impl World {
    fn new() -> Self {
        World { rses: Vec::new(), lingering: 0 }
    }

    fn image(rs: &Value) -> &str {
        str_at(rs, "/spec/template/spec/containers/0/image")
    }

    /// One controller round plus the ReplicaSet controller's reaction; returns the actions.
    fn round(&mut self, d: &mut Value, ready: &dyn Fn(&str) -> bool) -> Vec<Action> {
        let hash = hash_of(d);
        let pods: Vec<Value> = (0..self.lingering)
            .map(|_| {
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"pod-template-hash": "old"}},
                       "spec": {"containers": []}, "status": {"phase": "Running"}})
            })
            .collect();
        let actions = reconcile(d, &self.rses, &pods, 1_000);
        for a in &actions {
            match a {
                Action::Create { object: rs, .. } => self.rses.push(rs.clone()),
                Action::Update { object: rs, .. } => {
                    let i = self.rses.iter().position(|r| name(r) == name(rs)).expect("updated rs exists");
                    self.rses[i] = rs.clone();
                }
                Action::Delete { name: n, .. } => self.rses.retain(|r| name(r) != n),
                Action::UpdateStatus(s) => d["status"] = s.clone(),
                Action::Event { .. } => {}
            }
        }
        for rs in &mut self.rses {
            let n = replicas(&rs_of(rs));
            let avail = if ready(World::image(rs)) { n } else { 0 };
            rs["status"] = json!({"replicas": n, "readyReplicas": avail, "availableReplicas": avail});
        }
        let _ = hash;
        actions
    }

    fn counts(&self) -> Vec<(String, i64)> {
        self.rses.iter().map(|r| (World::image(r).to_string(), replicas(&rs_of(r)))).collect()
    }

    fn total(&self) -> i64 {
        self.rses.iter().map(|r| replicas(&rs_of(r))).sum()
    }

    fn available(&self) -> i64 {
        self.rses.iter().map(|r| available(&rs_of(r))).sum()
    }
}

/// Runs rounds until nothing changes, checking the rollout's bounds after each.
fn settle(w: &mut World, d: &mut Value, ready: &dyn Fn(&str) -> bool, max_total: i64, min_available: i64) {
    for _ in 0..50 {
        let actions = w.round(d, ready);
        assert!(
            w.total() <= max_total,
            "{} pods exceed the surge bound {max_total}: {:?}",
            w.total(),
            w.counts()
        );
        assert!(
            w.available() >= min_available,
            "{} available below {min_available}: {:?}",
            w.available(),
            w.counts()
        );
        if actions.iter().all(|a| matches!(a, Action::UpdateStatus(_) | Action::Event { .. })) {
            return;
        }
    }
    panic!("no steady state: {:?}", w.counts());
}

fn revisions(w: &World) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> =
        w.rses.iter().map(|r| (World::image(r).to_string(), revision(&rs_of(r)))).collect();
    v.sort_by_key(|(_, r)| *r);
    v
}

#[test]
fn the_first_rollout_makes_one_owned_replicaset_at_revision_1() {
    let mut d = deploy(3, "v1", rolling(json!(1), json!(0)));
    let mut w = World::new();
    let actions = w.round(&mut d, &|_| true);
    let Action::Create { object: rs, .. } = &actions[0] else { panic!("{actions:?}") };
    let hash = hash_of(&d);
    assert_eq!(rs["metadata"]["name"], format!("web-{hash}"));
    assert_eq!(rs["metadata"]["annotations"][REVISION], "1");
    assert_eq!(rs["metadata"]["ownerReferences"][0]["uid"], "d1");
    assert_eq!(rs["spec"]["selector"]["matchLabels"]["pod-template-hash"], hash);
    assert_eq!(rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"], hash);
    assert_eq!(rs["spec"]["replicas"], 3);
    settle(&mut w, &mut d, &|_| true, 4, 0);
    assert_eq!(d["status"]["availableReplicas"], 3);
    assert_eq!(d["status"]["conditions"][1]["reason"], "NewReplicaSetAvailable");
    // Steady: nothing to do.
    assert_eq!(reconcile(&d, &w.rses, &[], 1_000), []);
}

#[test]
fn surge_with_max_unavailable_zero_never_drops_below_the_replica_count() {
    let mut d = deploy(3, "v1", rolling(json!(1), json!(0)));
    let mut w = World::new();
    settle(&mut w, &mut d, &|_| true, 3, 0);
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "v2".into();
    settle(&mut w, &mut d, &|_| true, 4, 3);
    assert_eq!(w.counts().iter().filter(|(_, n)| *n > 0).collect::<Vec<_>>(), [&("v2".to_string(), 3)]);
    assert_eq!(revisions(&w), [("v1".into(), 1), ("v2".into(), 2)]);
}

#[test]
fn default_percentages_bound_a_rollout_of_four() {
    // 25% of 4: maxSurge 1, maxUnavailable 1.
    let mut d = deploy(4, "v1", Value::Null);
    let mut w = World::new();
    settle(&mut w, &mut d, &|_| true, 4, 0);
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "v2".into();
    settle(&mut w, &mut d, &|_| true, 5, 3);
    assert_eq!(d["status"]["updatedReplicas"], 4);
    assert_eq!(surge_and_unavailable(&deploy_of(&d), 4), (1, 1));
    assert_eq!(surge_and_unavailable(&deploy_of(&d), 1), (1, 0));
    assert_eq!(surge_and_unavailable(&deploy_of(&deploy(3, "x", rolling(json!(0), json!("0%")))), 3), (0, 1));
}

#[test]
fn a_rollout_whose_pods_never_become_ready_halts_within_its_bounds() {
    let mut d = deploy(3, "v1", rolling(json!(1), json!(1)));
    let mut w = World::new();
    settle(&mut w, &mut d, &|_| true, 3, 0);
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "broken".into();
    let ready = |image: &str| image != "broken";
    settle(&mut w, &mut d, &ready, 4, 2);
    // The old revision keeps two available pods; the broken one got what the bounds allow.
    let counts = w.counts();
    assert!(counts.contains(&("v1".into(), 2)), "{counts:?}");
    assert!(counts.contains(&("broken".into(), 2)), "{counts:?}");
    assert_eq!(d["status"]["conditions"][1]["reason"], "ReplicaSetUpdated");
    // Rolling back to v1 (`rollout undo`) restores it, and the revived ReplicaSet takes revision 3.
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "v1".into();
    settle(&mut w, &mut d, &ready, 4, 2);
    assert_eq!(w.counts().iter().filter(|(_, n)| *n > 0).collect::<Vec<_>>(), [&("v1".to_string(), 3)]);
    assert_eq!(revisions(&w), [("broken".into(), 2), ("v1".into(), 3)]);
}

#[test]
fn recreate_stops_the_old_pods_before_starting_new_ones() {
    let mut d = deploy(2, "v1", json!({"type": "Recreate"}));
    let mut w = World::new();
    settle(&mut w, &mut d, &|_| true, 2, 0);
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "v2".into();
    w.lingering = 2;
    w.round(&mut d, &|_| true);
    assert_eq!(w.counts(), [("v1".to_string(), 0)]);
    // Old pods still running: no new ReplicaSet yet.
    w.round(&mut d, &|_| true);
    assert_eq!(w.counts(), [("v1".to_string(), 0)]);
    w.lingering = 0;
    settle(&mut w, &mut d, &|_| true, 2, 0);
    assert_eq!(w.counts(), [("v1".to_string(), 0), ("v2".to_string(), 2)]);
}

#[test]
fn revision_history_limit_deletes_the_oldest_idle_replicasets() {
    let mut d = deploy(1, "v1", Value::Null);
    d["spec"]["revisionHistoryLimit"] = 1.into();
    let mut w = World::new();
    for image in ["v1", "v2", "v3", "v4"] {
        d["spec"]["template"]["spec"]["containers"][0]["image"] = image.into();
        settle(&mut w, &mut d, &|_| true, 2, 0);
    }
    assert_eq!(revisions(&w), [("v3".into(), 3), ("v4".into(), 4)]);
}

#[test]
fn a_paused_deployment_scales_but_does_not_roll_out() {
    let mut d = deploy(2, "v1", Value::Null);
    let mut w = World::new();
    settle(&mut w, &mut d, &|_| true, 2, 0);
    d["spec"]["paused"] = true.into();
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "v2".into();
    d["spec"]["replicas"] = 4.into();
    settle(&mut w, &mut d, &|_| true, 4, 0);
    assert_eq!(w.counts(), [("v1".to_string(), 4)]);
    assert_eq!(d["status"]["conditions"][1]["reason"], "DeploymentPaused");
    d["spec"]["paused"] = false.into();
    settle(&mut w, &mut d, &|_| true, 5, 3);
    assert_eq!(w.counts().iter().filter(|(_, n)| *n > 0).collect::<Vec<_>>(), [&("v2".to_string(), 4)]);
}

#[test]
fn scaling_without_a_template_change_resizes_the_current_replicaset() {
    let mut d = deploy(3, "v1", Value::Null);
    let mut w = World::new();
    settle(&mut w, &mut d, &|_| true, 3, 0);
    d["spec"]["replicas"] = 5.into();
    let actions = w.round(&mut d, &|_| true);
    let events: Vec<&Action> = actions.iter().filter(|a| matches!(a, Action::Event { .. })).collect();
    assert!(
        matches!(&actions[0], Action::Update { object: rs, .. } if rs["spec"]["replicas"] == 5),
        "{actions:?}"
    );
    assert_eq!(events.len(), 1);
    d["spec"]["replicas"] = 1.into();
    settle(&mut w, &mut d, &|_| true, 5, 0);
    assert_eq!(w.counts(), [("v1".to_string(), 1)]);
}

#[test]
fn garbage_does_not_panic() {
    // Garbage is refused at the loop's edge (logged and skipped).
    for d in
        [json!(null), json!({"spec": {"replicas": "x", "strategy": 3}}), json!({"spec": {"template": 1}})]
    {
        assert!(parse::<Deployment>(Kind::Deployment, &d).is_none());
    }
    assert!(parse::<ReplicaSet>(Kind::ReplicaSet, &json!(null)).is_none());
    // A ReplicaSet with a revision that is no number counts as revision 0.
    let d = deploy(1, "v1", Value::Null);
    let mut odd = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "odd", "annotations": {REVISION: "x"}},
        "spec": {"selector": {}, "template": {"spec": {"containers": []}}}});
    assert_eq!(revision(&rs_of(&odd)), 0);
    let _ = reconcile(&d, &[odd.clone()], &[], 0);
    odd["metadata"]["labels"] = json!({"pod-template-hash": hash_of(&d)});
    let _ = reconcile(&d, &[odd], &[], 0);
}

#[test]
fn the_template_hash_is_the_hash_of_the_stored_template() {
    // The API stores what the typed object serializes to; the typed hash is that JSON's hash,
    // so no Deployment rolls out again when the controller moved to typed objects.
    let d = deploy(1, "v1", Value::Null);
    let stored = pods::value(&deploy_of(&d));
    assert_eq!(hash_of(&d), common::hash(&stored["spec"]["template"]));
    assert_eq!(hash_of(&d), common::hash(&d["spec"]["template"]));
}

#[test]
fn huge_numbers_are_bounded_by_the_replica_count() {
    let mut d = deploy(3, "v1", rolling(json!(i64::MAX), json!(i64::MAX)));
    assert_eq!(surge_and_unavailable(&deploy_of(&d), 3), (3, 3));
    let mut w = World::new();
    settle(&mut w, &mut d, &|_| true, 3, 0);
    let mut rs = w.rses[0].clone();
    rs["metadata"]["annotations"][REVISION] = i64::MAX.to_string().into();
    rs["metadata"]["labels"]["pod-template-hash"] = "other".into();
    let _ = reconcile(&d, &[rs], &[], 0);
}

#[test]
fn recreate_is_available_only_with_every_replica() {
    let mut d = deploy(2, "v1", json!({"type": "Recreate"}));
    let mut w = World::new();
    w.round(&mut d, &|_| false);
    w.round(&mut d, &|_| false);
    assert_eq!(d["status"]["conditions"][0]["status"], "False", "{}", d["status"]);
    // The pods become available: the next round sees it.
    w.round(&mut d, &|_| true);
    w.round(&mut d, &|_| true);
    assert_eq!(d["status"]["conditions"][0]["status"], "True");
}
