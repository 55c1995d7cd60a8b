//! The incremental policy calculator: keeps the IR of one node up to date as snapshots of
//! the cluster arrive, and says what changed ([`Delta`]) so the dataplane pushes only that.
//!
//! Cost model (what keeps a label change cheap with thousands of policies and pods):
//! inputs are compared by `Arc` pointer first; a changed endpoint is re-evaluated against
//! every selector set once (one selector match each); a changed namespace re-evaluates its
//! endpoints; a changed policy is recompiled alone and only its new sets scan all
//! endpoints. The result is always equal to computing from scratch ([`compute`]), which
//! the tests check.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use twill_api::resources::WorkloadEndpoint;

use super::compile::{
    CompiledPolicy, NsConstraint, SetSpec, compile_global_policy, compile_network_policy,
};
use super::inputs::{ObjectKey, PolicyInputs};
use super::ir::{
    Direction, Element, EndpointDirection, Family, Ir, IrEndpoint, IrNat, IrSet, SetDef, Tier,
};
use super::labels::{Labels, namespace_labels};
use super::names::valid_iface;

/// What one update changed, for the dataplane.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// Sets that did not exist before (their elements are in the IR).
    pub sets_added: BTreeSet<String>,
    pub sets_removed: BTreeSet<String>,
    /// Element changes of sets that existed before and still do.
    pub elements_added: BTreeMap<String, BTreeSet<Element>>,
    pub elements_removed: BTreeMap<String, BTreeSet<Element>>,
    /// Policy keys added, changed or removed.
    pub policies: BTreeSet<String>,
    /// Local endpoint interfaces added, changed or removed.
    pub endpoints: BTreeSet<String>,
    /// The pools changed.
    pub nat: bool,
    /// Everything was recomputed (first update, or the node name changed): the dataplane
    /// must rebuild from the IR.
    pub reset: bool,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self == &Delta::default()
    }

    /// Number of element additions and removals.
    pub fn element_changes(&self) -> usize {
        self.elements_added
            .values()
            .map(BTreeSet::len)
            .sum::<usize>()
            + self
                .elements_removed
                .values()
                .map(BTreeSet::len)
                .sum::<usize>()
    }

    fn add_element(&mut self, set: &str, e: Element) {
        if let Some(removed) = self.elements_removed.get_mut(set)
            && removed.remove(&e)
        {
            if removed.is_empty() {
                self.elements_removed.remove(set);
            }
            return;
        }
        self.elements_added
            .entry(set.to_owned())
            .or_default()
            .insert(e);
    }

    fn remove_element(&mut self, set: &str, e: Element) {
        if let Some(added) = self.elements_added.get_mut(set)
            && added.remove(&e)
        {
            if added.is_empty() {
                self.elements_added.remove(set);
            }
            return;
        }
        self.elements_removed
            .entry(set.to_owned())
            .or_default()
            .insert(e);
    }
}

/// What the calculator keeps of one endpoint.
#[derive(Clone, Debug, PartialEq)]
struct EpInfo {
    namespace: String,
    labels: Labels,
    addrs: Vec<IpAddr>,
    /// `(name, protocol, port)`.
    ports: Vec<(String, u8, u16)>,
    /// Host-side interface, for endpoints of this node.
    iface: Option<String>,
}

impl EpInfo {
    fn from(wep: &WorkloadEndpoint, node: &str) -> EpInfo {
        let addrs = wep
            .spec
            .ip_networks
            .iter()
            .filter_map(|n| {
                n.parse::<IpNet>()
                    .map(|n| n.addr())
                    .or_else(|_| n.parse::<IpAddr>())
                    .ok()
            })
            .collect();
        let ports = wep
            .spec
            .ports
            .iter()
            .filter_map(|p| {
                let proto = match p.protocol.as_str() {
                    "TCP" => 6,
                    "UDP" => 17,
                    "SCTP" => 132,
                    _ => return None,
                };
                Some((p.name.clone(), proto, p.port))
            })
            .collect();
        let iface = (wep.spec.node == node)
            .then(|| wep.spec.interface_name.clone())
            .flatten()
            .filter(|i| valid_iface(i));
        EpInfo {
            namespace: wep.metadata.namespace.clone().unwrap_or_default(),
            labels: wep.metadata.labels.clone().unwrap_or_default(),
            addrs,
            ports,
            iface,
        }
    }
}

struct SetState {
    spec: SetSpec,
    refs: usize,
    /// What each member endpoint contributes.
    members: BTreeMap<ObjectKey, Vec<Element>>,
    /// Element reference counts (two endpoints may briefly share an address).
    counts: BTreeMap<Element, u32>,
}

/// Orders global policies: `order` ascending, unset last, then by key.
fn global_order(a: (&Option<f64>, &str), b: (&Option<f64>, &str)) -> Ordering {
    let rank = |o: &Option<f64>| match o {
        Some(v) => (0u8, *v),
        None => (1u8, 0.0),
    };
    let (ra, rb) = (rank(a.0), rank(b.0));
    ra.0.cmp(&rb.0)
        .then(ra.1.total_cmp(&rb.1))
        .then_with(|| a.1.cmp(b.1))
}

/// Keeps one node's IR up to date.
pub struct Calculator {
    node: String,
    eps_in: BTreeMap<ObjectKey, Arc<WorkloadEndpoint>>,
    ns_in: BTreeMap<String, Arc<twill_api::resources::native::Namespace>>,
    np_in: BTreeMap<ObjectKey, Arc<twill_api::resources::native::NetworkPolicy>>,
    gnp_in: BTreeMap<String, Arc<twill_api::resources::GlobalNetworkPolicy>>,
    pools_in: BTreeMap<String, Arc<twill_api::resources::IPPool>>,

    eps: BTreeMap<ObjectKey, EpInfo>,
    ns_labels: BTreeMap<String, Labels>,
    ns_members: BTreeMap<String, BTreeSet<ObjectKey>>,
    policies: BTreeMap<String, CompiledPolicy>,
    /// Global policy keys in evaluation order.
    global_order: Vec<String>,
    sets: BTreeMap<String, SetState>,
    ir: Ir,
}

impl Calculator {
    pub fn new(node: &str) -> Self {
        Calculator {
            node: node.to_owned(),
            eps_in: BTreeMap::new(),
            ns_in: BTreeMap::new(),
            np_in: BTreeMap::new(),
            gnp_in: BTreeMap::new(),
            pools_in: BTreeMap::new(),
            eps: BTreeMap::new(),
            ns_labels: BTreeMap::new(),
            ns_members: BTreeMap::new(),
            policies: BTreeMap::new(),
            global_order: Vec::new(),
            sets: BTreeMap::new(),
            ir: Ir::default(),
        }
    }

    /// The current IR.
    pub fn ir(&self) -> &Ir {
        &self.ir
    }

    /// Warnings of the policies that did not compile cleanly.
    pub fn warnings(&self) -> Vec<String> {
        self.policies
            .values()
            .flat_map(|p| p.warnings.iter().cloned())
            .collect()
    }

    fn ns_labels_of(&self, ns: &str) -> Labels {
        self.ns_labels
            .get(ns)
            .cloned()
            .unwrap_or_else(|| namespace_labels(ns, None))
    }

    /// Makes sure every namespace that has endpoints has its labels recorded, so that
    /// membership scans can borrow them.
    fn ensure_ns_labels(&mut self, ns: &str) {
        if !self.ns_labels.contains_key(ns) {
            self.ns_labels
                .insert(ns.to_owned(), namespace_labels(ns, None));
        }
    }

    /// Brings the IR up to `inputs` and returns what changed.
    pub fn update(&mut self, inputs: &PolicyInputs) -> Delta {
        let mut delta = Delta::default();
        if inputs.node_name != self.node {
            *self = Calculator::new(&inputs.node_name);
            delta.reset = true;
        }

        // 1. Namespaces whose labels changed.
        let mut dirty_eps: BTreeSet<ObjectKey> = BTreeSet::new();
        let ns_changed = changed_keys(&self.ns_in, &inputs.namespaces);
        for name in &ns_changed {
            let new = namespace_labels(name, inputs.namespaces.get(name).map(Arc::as_ref));
            let old = self.ns_labels_of(name);
            // Kept even when the object goes: the namespace's endpoints still need its
            // (now automatic-only) labels.
            self.ns_labels.insert(name.clone(), new.clone());
            if new != old
                && let Some(members) = self.ns_members.get(name)
            {
                dirty_eps.extend(members.iter().cloned());
            }
        }
        sync_keys(&mut self.ns_in, &inputs.namespaces, &ns_changed);

        // 2. Endpoints.
        let eps_changed = changed_keys(&self.eps_in, &inputs.endpoints);
        for key in eps_changed.iter().cloned() {
            let new = inputs
                .endpoints
                .get(&key)
                .map(|w| EpInfo::from(w, &inputs.node_name));
            let old = self.eps.get(&key);
            if old == new.as_ref() {
                continue;
            }
            if let Some(old) = old
                && let Some(m) = self.ns_members.get_mut(&old.namespace)
            {
                m.remove(&key);
            }
            if let Some(old_iface) = old.and_then(|o| o.iface.clone())
                && new.as_ref().and_then(|n| n.iface.as_ref()) != Some(&old_iface)
                && self.ir.endpoints.remove(&old_iface).is_some()
            {
                delta.endpoints.insert(old_iface);
            }
            match new {
                Some(info) => {
                    self.ensure_ns_labels(&info.namespace);
                    self.ns_members
                        .entry(info.namespace.clone())
                        .or_default()
                        .insert(key.clone());
                    self.eps.insert(key.clone(), info);
                }
                None => {
                    self.eps.remove(&key);
                }
            }
            dirty_eps.insert(key);
        }
        sync_keys(&mut self.eps_in, &inputs.endpoints, &eps_changed);

        // 3. Policies: recompile the changed ones, move set references.
        let mut changed_policies = BTreeSet::new();
        let mut compiled = Vec::new();
        let np_changed = changed_keys(&self.np_in, &inputs.network_policies);
        for key in np_changed.iter().cloned() {
            let new = inputs
                .network_policies
                .get(&key)
                .map(|np| compile_network_policy(np));
            let pkey = format!("np/{}/{}", key.0, key.1);
            compiled.push((pkey, new));
        }
        let gnp_changed = changed_keys(&self.gnp_in, &inputs.global_policies);
        for key in &gnp_changed {
            let new = inputs
                .global_policies
                .get(key)
                .map(|g| compile_global_policy(g));
            compiled.push((format!("gnp/{key}"), new));
        }
        sync_keys(&mut self.np_in, &inputs.network_policies, &np_changed);
        sync_keys(&mut self.gnp_in, &inputs.global_policies, &gnp_changed);
        let mut new_sets: BTreeSet<String> = BTreeSet::new();
        let mut touched_sets: BTreeSet<String> = BTreeSet::new();
        for (pkey, new) in compiled {
            if self.policies.get(&pkey) == new.as_ref() {
                continue;
            }
            if let Some(old) = self.policies.remove(&pkey) {
                for name in old.sets.keys() {
                    if let Some(s) = self.sets.get_mut(name) {
                        s.refs -= 1;
                        touched_sets.insert(name.clone());
                    }
                }
            }
            if let Some(new) = new {
                for (name, spec) in &new.sets {
                    let state = self.sets.entry(name.clone()).or_insert_with(|| {
                        new_sets.insert(name.clone());
                        SetState {
                            spec: spec.clone(),
                            refs: 0,
                            members: BTreeMap::new(),
                            counts: BTreeMap::new(),
                        }
                    });
                    state.refs += 1;
                }
                self.policies.insert(pkey.clone(), new);
            }
            changed_policies.insert(pkey);
        }
        for name in touched_sets {
            if self.sets.get(&name).is_some_and(|s| s.refs == 0) {
                self.sets.remove(&name);
                self.ir.sets.remove(&name);
                delta.elements_added.remove(&name);
                delta.elements_removed.remove(&name);
                if !new_sets.remove(&name) {
                    delta.sets_removed.insert(name);
                }
            }
        }
        if !changed_policies.is_empty() {
            let mut order: Vec<(&Option<f64>, &str)> = self
                .policies
                .values()
                .filter(|p| p.ir.tier == Tier::Global)
                .map(|p| (&p.order, p.key.as_str()))
                .collect();
            order.sort_by(|a, b| global_order(*a, *b));
            self.global_order = order.into_iter().map(|(_, k)| k.to_owned()).collect();
            for key in &changed_policies {
                match self.policies.get(key) {
                    Some(p) => self.ir.policies.insert(key.clone(), p.ir.clone()),
                    None => self.ir.policies.remove(key),
                };
            }
            delta.policies.extend(changed_policies.iter().cloned());
        }

        // 4. Memberships of sets that existed before, for the endpoints that changed
        // (none when every set is new, as on the first update).
        let any_old_set = new_sets.len() < self.sets.len();
        for key in dirty_eps.iter().filter(|_| any_old_set) {
            let info = self.eps.get(key);
            let ns_labels = info.map(|i| self.ns_labels_of(&i.namespace));
            for (name, state) in self.sets.iter_mut() {
                if !new_sets.is_empty() && new_sets.contains(name) {
                    continue;
                }
                let elements = match (info, &ns_labels) {
                    (Some(i), Some(l)) => contribution(&state.spec, i, l),
                    _ => Vec::new(),
                };
                set_member(state, name, key, elements, &mut self.ir, Some(&mut delta));
            }
        }

        // 5. New sets: scan the endpoints that can be members.
        for name in &new_sets {
            let Calculator {
                sets,
                eps,
                ns_members,
                ns_labels,
                ir,
                ..
            } = self;
            let Some(state) = sets.get_mut(name) else {
                continue;
            };
            ir.sets.insert(
                name.clone(),
                IrSet {
                    def: state.spec.def.clone(),
                    elements: BTreeSet::new(),
                },
            );
            let candidates: Vec<&ObjectKey> =
                match state.spec.members.as_ref().map(|m| &m.namespaces) {
                    Some(NsConstraint::Name(ns)) => {
                        ns_members.get(ns).into_iter().flatten().collect()
                    }
                    Some(NsConstraint::Selector(sel)) => ns_members
                        .iter()
                        .filter(|(ns, _)| ns_labels.get(*ns).is_some_and(|l| sel.matches(l)))
                        .flat_map(|(_, keys)| keys.iter())
                        .collect(),
                    Some(NsConstraint::Any) | None => eps.keys().collect(),
                };
            for key in candidates {
                let Some(info) = eps.get(key) else { continue };
                let Some(l) = ns_labels.get(&info.namespace) else {
                    continue;
                };
                let elements = contribution(&state.spec, info, l);
                set_member(state, name, key, elements, ir, None);
            }
            delta.sets_added.insert(name.clone());
        }

        // 6. Local endpoints whose policy lists may have changed.
        let recheck: Vec<ObjectKey> = if changed_policies.is_empty() {
            dirty_eps.iter().cloned().collect()
        } else {
            self.eps
                .iter()
                .filter(|(_, i)| i.iface.is_some())
                .map(|(k, _)| k.clone())
                .collect()
        };
        for key in recheck {
            let Some(info) = self.eps.get(&key) else {
                continue;
            };
            let Some(iface) = info.iface.clone() else {
                continue;
            };
            let ep = self.endpoint_ir(&key, info);
            if self.ir.endpoints.get(&iface) != Some(&ep) {
                self.ir.endpoints.insert(iface.clone(), ep);
                delta.endpoints.insert(iface);
            }
        }

        // 7. Pools.
        let pools_changed = changed_keys(&self.pools_in, &inputs.pools);
        if !pools_changed.is_empty() {
            sync_keys(&mut self.pools_in, &inputs.pools, &pools_changed);
            let mut nat = IrNat::default();
            for pool in self.pools_in.values() {
                if let Ok(net) = pool.spec.cidr.parse::<IpNet>() {
                    nat.pools.insert(net.trunc());
                    if pool.spec.nat_outgoing == Some(true) {
                        nat.nat_outgoing.insert(net.trunc());
                    }
                }
            }
            if nat != self.ir.nat {
                self.ir.nat = nat;
                delta.nat = true;
            }
        }

        // 8. The host-facing policy lives in the base chains: rare, rebuilt whole.
        if inputs.host != self.ir.host {
            self.ir.host = inputs.host.clone();
            delta.reset = true;
        }
        delta
    }

    fn endpoint_ir(&self, key: &ObjectKey, info: &EpInfo) -> IrEndpoint {
        let ns_labels = self.ns_labels_of(&info.namespace);
        let applies = |p: &CompiledPolicy| {
            p.applies
                .as_ref()
                .is_some_and(|a| a.matches(&info.namespace, &ns_labels, &info.labels))
        };
        let mut dirs = [EndpointDirection::default(), EndpointDirection::default()];
        for key in &self.global_order {
            let Some(p) = self.policies.get(key) else {
                continue;
            };
            if applies(p) {
                for (i, dir) in Direction::BOTH.iter().enumerate() {
                    if p.ir.rules(*dir).is_some() {
                        dirs[i].global.push(key.clone());
                    }
                }
            }
        }
        // Only policies of the endpoint's namespace can select it.
        let prefix = format!("np/{}/", info.namespace);
        for (key, p) in self.policies.range(prefix.clone()..) {
            if !key.starts_with(&prefix) {
                break;
            }
            if applies(p) {
                for (i, dir) in Direction::BOTH.iter().enumerate() {
                    if p.ir.rules(*dir).is_some() {
                        dirs[i].kubernetes.push(key.clone());
                    }
                }
            }
        }
        let [ingress, egress] = dirs;
        IrEndpoint {
            id: format!("{}/{}", key.0, key.1),
            ingress,
            egress,
        }
    }
}

/// The keys whose values differ (by pointer, then by value) between two maps, found by
/// walking both in key order (linear, no lookups).
fn changed_keys<K: Ord + Clone, V: PartialEq>(
    old: &BTreeMap<K, Arc<V>>,
    new: &BTreeMap<K, Arc<V>>,
) -> Vec<K> {
    let mut out = Vec::new();
    let mut a = old.iter().peekable();
    let mut b = new.iter().peekable();
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some((k, _)), None) => {
                out.push((*k).clone());
                a.next();
            }
            (None, Some((k, _))) => {
                out.push((*k).clone());
                b.next();
            }
            (Some((ka, va)), Some((kb, vb))) => match ka.cmp(kb) {
                Ordering::Less => {
                    out.push((*ka).clone());
                    a.next();
                }
                Ordering::Greater => {
                    out.push((*kb).clone());
                    b.next();
                }
                Ordering::Equal => {
                    if !Arc::ptr_eq(va, vb) && va != vb {
                        out.push((*ka).clone());
                    }
                    a.next();
                    b.next();
                }
            },
        }
    }
    out
}

/// Makes `mine` equal to `theirs` for the given keys.
fn sync_keys<K: Ord + Clone, V>(
    mine: &mut BTreeMap<K, Arc<V>>,
    theirs: &BTreeMap<K, Arc<V>>,
    keys: &[K],
) {
    for k in keys {
        match theirs.get(k) {
            Some(v) => mine.insert(k.clone(), Arc::clone(v)),
            None => mine.remove(k),
        };
    }
}

/// The elements an endpoint contributes to a set.
fn contribution(spec: &SetSpec, info: &EpInfo, ns_labels: &Labels) -> Vec<Element> {
    let in_family = |a: &&IpAddr| Family::of(a) == spec.def.family();
    match &spec.def {
        SetDef::Members { .. } => {
            let member = spec
                .members
                .as_ref()
                .is_some_and(|m| m.matches(&info.namespace, ns_labels, &info.labels));
            if !member {
                return Vec::new();
            }
            info.addrs
                .iter()
                .filter(in_family)
                .map(|a| Element::Addr(*a))
                .collect()
        }
        SetDef::NamedPort { port, .. } => {
            let mut out = Vec::new();
            for (name, proto, number) in &info.ports {
                if name == port {
                    for a in info.addrs.iter().filter(in_family) {
                        out.push(Element::AddrPort(*a, *proto, *number));
                    }
                }
            }
            out
        }
        SetDef::Nets { .. } => Vec::new(),
    }
}

/// Records what `key` now contributes to a set, updating the IR (and the delta).
fn set_member(
    state: &mut SetState,
    name: &str,
    key: &ObjectKey,
    elements: Vec<Element>,
    ir: &mut Ir,
    mut delta: Option<&mut Delta>,
) {
    let old = state.members.get(key).cloned().unwrap_or_default();
    if old == elements {
        return;
    }
    let Some(ir_set) = ir.sets.get_mut(name) else {
        return;
    };
    for e in &old {
        if let Some(c) = state.counts.get_mut(e) {
            *c -= 1;
            if *c == 0 {
                state.counts.remove(e);
                ir_set.elements.remove(e);
                if let Some(d) = delta.as_deref_mut() {
                    d.remove_element(name, *e);
                }
            }
        }
    }
    for e in &elements {
        let c = state.counts.entry(*e).or_insert(0);
        *c += 1;
        if *c == 1 {
            ir_set.elements.insert(*e);
            if let Some(d) = delta.as_deref_mut() {
                d.add_element(name, *e);
            }
        }
    }
    if elements.is_empty() {
        state.members.remove(key);
    } else {
        state.members.insert(key.clone(), elements);
    }
}

/// The IR of `inputs` computed from scratch.
pub fn compute(inputs: &PolicyInputs) -> (Ir, Vec<String>) {
    let mut calc = Calculator::new(&inputs.node_name);
    calc.update(inputs);
    (calc.ir.clone(), calc.warnings())
}
