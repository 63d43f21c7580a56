//! Validation of scheduling constraints: tolerations, node selectors and node and pod (anti-)affinity.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn toleration(e: &mut Errs, p: &str, t: &Toleration) {
    if let Some(k) = &t.key {
        if !k.is_empty() {
            e.check(&format!("{p}.key"), names::qualified_name(k));
        }
    }
    let op = t.operator.unwrap_or(TolerationOperator::Equal);
    if op == TolerationOperator::Exists && t.value.as_deref().is_some_and(|v| !v.is_empty()) {
        e.add(&format!("{p}.value"), "must be empty when operator is Exists");
    }
    if op == TolerationOperator::Equal && t.key.as_deref().unwrap_or_default().is_empty() {
        e.add(
            &format!("{p}.operator"),
            "must be Exists when key is empty (an empty key with Exists tolerates every taint)",
        );
    }
    if let Some(v) = &t.value {
        e.check(&format!("{p}.value"), names::label_value(v));
    }
    if t.toleration_seconds.is_some() && t.effect != Some(TaintEffect::NoExecute) {
        e.add(&format!("{p}.tolerationSeconds"), "may only be set when effect is NoExecute");
    }
}

pub(super) fn node_selector(e: &mut Errs, p: &str, ns: &NodeSelector) {
    if ns.node_selector_terms.is_empty() {
        e.add(&format!("{p}.nodeSelectorTerms"), "must have at least one term");
    }
    for (i, term) in ns.node_selector_terms.iter().enumerate() {
        node_selector_term(e, &format!("{p}.nodeSelectorTerms[{i}]"), term);
    }
}

pub(super) fn node_selector_term(e: &mut Errs, p: &str, term: &NodeSelectorTerm) {
    for (i, r) in term.match_expressions.iter().flatten().enumerate() {
        let rp = format!("{p}.matchExpressions[{i}]");
        e.check(&format!("{rp}.key"), names::qualified_name(&r.key));
        node_requirement(e, &rp, r);
    }
    for (i, r) in term.match_fields.iter().flatten().enumerate() {
        let rp = format!("{p}.matchFields[{i}]");
        if r.key != "metadata.name" {
            e.add(&format!("{rp}.key"), format!("must be metadata.name (got {:?})", r.key));
        }
        node_requirement(e, &rp, r);
    }
}

pub(super) fn node_requirement(e: &mut Errs, rp: &str, r: &NodeSelectorRequirement) {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator {
        NodeSelectorOperator::In | NodeSelectorOperator::NotIn if values.is_empty() => {
            e.add(&format!("{rp}.values"), format!("must be non-empty when operator is {:?}", r.operator))
        }
        NodeSelectorOperator::Exists | NodeSelectorOperator::DoesNotExist if !values.is_empty() => {
            e.add(&format!("{rp}.values"), format!("must be empty when operator is {:?}", r.operator))
        }
        NodeSelectorOperator::Gt | NodeSelectorOperator::Lt
            if values.len() != 1 || values[0].parse::<i64>().is_err() =>
        {
            e.add(
                &format!("{rp}.values"),
                format!("must be a single integer when operator is {:?}", r.operator),
            )
        }
        _ => {}
    }
}

pub(super) fn affinity(e: &mut Errs, p: &str, a: &Affinity) {
    if let Some(na) = &a.node_affinity {
        if let Some(req) = &na.required_during_scheduling_ignored_during_execution {
            node_selector(
                e,
                &format!("{p}.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"),
                req,
            );
        }
        for (i, pref) in na.preferred_during_scheduling_ignored_during_execution.iter().flatten().enumerate()
        {
            let pp = format!("{p}.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
            weight(e, &format!("{pp}.weight"), pref.weight);
            node_selector_term(e, &format!("{pp}.preference"), &pref.preference);
        }
    }
    for (name, pa) in [("podAffinity", &a.pod_affinity), ("podAntiAffinity", &a.pod_anti_affinity)] {
        let Some(pa) = pa else { continue };
        for (i, t) in pa.required_during_scheduling_ignored_during_execution.iter().flatten().enumerate() {
            pod_affinity_term(
                e,
                &format!("{p}.{name}.requiredDuringSchedulingIgnoredDuringExecution[{i}]"),
                t,
            );
        }
        for (i, w) in pa.preferred_during_scheduling_ignored_during_execution.iter().flatten().enumerate() {
            let wp = format!("{p}.{name}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
            weight(e, &format!("{wp}.weight"), w.weight);
            pod_affinity_term(e, &format!("{wp}.podAffinityTerm"), &w.pod_affinity_term);
        }
    }
}

pub(super) fn weight(e: &mut Errs, p: &str, w: i32) {
    if !(1..=100).contains(&w) {
        e.add(p, format!("must be from 1 to 100 (got {w})"));
    }
}

pub(super) fn pod_affinity_term(e: &mut Errs, p: &str, t: &PodAffinityTerm) {
    if t.topology_key.is_empty() {
        e.add(&format!("{p}.topologyKey"), "must not be empty");
    } else {
        e.check(&format!("{p}.topologyKey"), names::qualified_name(&t.topology_key));
    }
    if let Some(sel) = &t.label_selector {
        selector(e, &format!("{p}.labelSelector"), sel);
    }
    for (i, ns) in t.namespaces.iter().flatten().enumerate() {
        e.check(&format!("{p}.namespaces[{i}]"), names::dns1123_label(ns));
    }
}
