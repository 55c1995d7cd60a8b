//! The registry of kinds: names (singular, plural, short), scope, API version, the CRD of
//! Twill's kinds, and the check every object passes before it is stored (parse into the
//! typed struct, validate, write back normalised).
//!
//! The datastore backends work on JSON values and a `&'static KindInfo`; the typed layer
//! finds the `KindInfo` through the [`Resource`] trait.

use std::fmt;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::native::{EndpointSlice, KubeNode, Namespace, NetworkPolicy, Pod, Service};
use super::unknown::{UnknownFieldCounter, decode_noting_unknown};
use super::{
    BFDProfile, BGPConfiguration, BGPFilter, BGPPeer, BlockAffinity, FelixConfiguration,
    GlobalNetworkPolicy, IPAMBlock, IPAMConfig, IPAMHandle, IPPool, IPReservation, Node,
    WorkloadEndpoint,
};
use crate::validate::{Validate, ValidationError};

/// Everything the datastore and the CLI need to know about one kind.
pub struct KindInfo {
    /// `IPPool`.
    pub kind: &'static str,
    /// `networking.twill.dev/v1`, `v1`, `networking.k8s.io/v1`.
    pub api_version: &'static str,
    /// API group (`""` for core).
    pub group: &'static str,
    pub version: &'static str,
    /// `ippools`: the Kubernetes resource name.
    pub plural: &'static str,
    /// Other names twillctl accepts (singular lowercase, short names).
    pub aliases: &'static [&'static str],
    pub namespaced: bool,
    /// Parses, validates and normalises an object of this kind.
    pub check: fn(Value) -> Result<Value, ValidationError>,
    /// The CRD, for Twill's own kinds; `None` for native Kubernetes kinds.
    pub crd: Option<fn() -> CustomResourceDefinition>,
    /// The paths of the fields of an object this kind does not know (`spec.natOutgoin`).
    pub unknown_fields: fn(&Value) -> Vec<String>,
    /// Unknown fields met while reading objects of this kind, in this process.
    pub unknown_fields_seen: UnknownFieldCounter,
}

impl fmt::Debug for KindInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.kind, self.api_version)
    }
}

impl PartialEq for KindInfo {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.api_version == other.api_version
    }
}

impl KindInfo {
    /// The etcd key segment (`/twill/v1/<segment>/...`): the lowercase kind
    /// (`ippool`, `namespace`, `networkpolicy`), except that a native kind whose name a
    /// Twill kind also uses gets a `kube` prefix (Kubernetes' Node is `kubenode`).
    pub fn key_segment(&self) -> String {
        let lower = self.kind.to_ascii_lowercase();
        let twill = self.group == super::GROUP;
        let clashes = ALL_KINDS
            .iter()
            .any(|other| other.group == super::GROUP && other.kind == self.kind);
        if !twill && clashes {
            format!("kube{lower}")
        } else {
            lower
        }
    }

    /// Whether `name` (case-insensitive) names this kind.
    pub fn is_called(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        name == self.kind.to_ascii_lowercase()
            || name == self.plural
            || self.aliases.iter().any(|alias| *alias == name)
    }
}

/// A typed resource the datastore can store.
pub trait Resource:
    kube::Resource<DynamicType = ()>
    + Clone
    + fmt::Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The registry entry of this type.
    fn kind_info() -> &'static KindInfo;
}

/// Parse (naming the field at fault), validate and re-serialise an object of type `T`.
fn check<T: DeserializeOwned + Serialize + Validate>(
    value: Value,
) -> Result<Value, ValidationError> {
    let object: T = from_value_with_path(value)?;
    object.validate()?;
    serde_json::to_value(&object).map_err(|e| ValidationError::new("", e.to_string()))
}

/// The fields of `value` that `T` does not know (none when it does not decode at all: the
/// decoding error says more).
fn unknown_fields<T: DeserializeOwned>(value: &Value) -> Vec<String> {
    decode_noting_unknown::<T>(value)
        .map(|(_, unknown)| unknown)
        .unwrap_or_default()
}

/// Deserialises a JSON value, naming the field path of the first error
/// (serde_yaml tracks paths; JSON text is YAML).
pub fn from_value_with_path<T: DeserializeOwned>(value: Value) -> Result<T, ValidationError> {
    match serde_json::from_value::<T>(value.clone()) {
        Ok(object) => Ok(object),
        Err(json_error) => {
            let text = serde_json::to_string(&value).unwrap_or_default();
            match serde_yaml::from_str::<T>(&text) {
                Err(yaml_error) => Err(ValidationError::from_serde_yaml(&yaml_error)),
                Ok(_) => Err(ValidationError::new("", json_error.to_string())),
            }
        }
    }
}

macro_rules! kinds {
    ($( $name:ident : $ty:ty = {
        kind: $kind:literal, api_version: $av:expr, group: $group:literal, plural: $plural:literal,
        aliases: [$($alias:literal),*], namespaced: $ns:literal, crd: $crd:expr $(,)?
    } ),* $(,)?) => {
        $(
            #[doc = concat!("Registry entry of `", $kind, "`.")]
            pub static $name: KindInfo = KindInfo {
                kind: $kind,
                api_version: $av,
                group: $group,
                version: "v1",
                plural: $plural,
                aliases: &[$($alias),*],
                namespaced: $ns,
                check: check::<$ty>,
                crd: $crd,
                unknown_fields: unknown_fields::<$ty>,
                unknown_fields_seen: UnknownFieldCounter::new(),
            };

            impl Resource for $ty {
                fn kind_info() -> &'static KindInfo {
                    &$name
                }
            }
        )*

        /// Every kind, Twill's first, in the order `twillctl crds` prints them.
        pub static ALL_KINDS: &[&KindInfo] = &[$(&$name),*];
    };
}

const TW: &str = super::API_VERSION;

kinds! {
    IPPOOL: IPPool = { kind: "IPPool", api_version: TW, group: "networking.twill.dev", plural: "ippools",
        aliases: ["ippool", "pool", "pools"], namespaced: false, crd: Some(IPPool::crd) },
    IPAMBLOCK: IPAMBlock = { kind: "IPAMBlock", api_version: TW, group: "networking.twill.dev", plural: "ipamblocks",
        aliases: ["ipamblock", "block", "blocks"], namespaced: false, crd: Some(IPAMBlock::crd) },
    BLOCKAFFINITY: BlockAffinity = { kind: "BlockAffinity", api_version: TW, group: "networking.twill.dev",
        plural: "blockaffinities", aliases: ["blockaffinity", "affinity", "affinities"], namespaced: false,
        crd: Some(BlockAffinity::crd) },
    IPAMHANDLE: IPAMHandle = { kind: "IPAMHandle", api_version: TW, group: "networking.twill.dev", plural: "ipamhandles",
        aliases: ["ipamhandle", "handle", "handles"], namespaced: false, crd: Some(IPAMHandle::crd) },
    IPAMCONFIG: IPAMConfig = { kind: "IPAMConfig", api_version: TW, group: "networking.twill.dev", plural: "ipamconfigs",
        aliases: ["ipamconfig", "ipamconfiguration", "ipamconfigurations"], namespaced: false,
        crd: Some(IPAMConfig::crd) },
    IPRESERVATION: IPReservation = { kind: "IPReservation", api_version: TW, group: "networking.twill.dev",
        plural: "ipreservations", aliases: ["ipreservation", "reservation", "reservations"], namespaced: false,
        crd: Some(IPReservation::crd) },
    BGPCONFIGURATION: BGPConfiguration = { kind: "BGPConfiguration", api_version: TW, group: "networking.twill.dev",
        plural: "bgpconfigurations", aliases: ["bgpconfiguration", "bgpconfig", "bgpconfigs"], namespaced: false,
        crd: Some(BGPConfiguration::crd) },
    BGPPEER: BGPPeer = { kind: "BGPPeer", api_version: TW, group: "networking.twill.dev", plural: "bgppeers",
        aliases: ["bgppeer", "peer", "peers", "bgpp"], namespaced: false, crd: Some(BGPPeer::crd) },
    BGPFILTER: BGPFilter = { kind: "BGPFilter", api_version: TW, group: "networking.twill.dev", plural: "bgpfilters",
        aliases: ["bgpfilter", "filter", "filters"], namespaced: false, crd: Some(BGPFilter::crd) },
    BFDPROFILE: BFDProfile = { kind: "BFDProfile", api_version: TW, group: "networking.twill.dev", plural: "bfdprofiles",
        aliases: ["bfdprofile", "bfd"], namespaced: false, crd: Some(BFDProfile::crd) },
    NODE: Node = { kind: "Node", api_version: TW, group: "networking.twill.dev", plural: "nodes",
        aliases: ["node", "no", "twnode", "twnodes"], namespaced: false, crd: Some(Node::crd) },
    WORKLOADENDPOINT: WorkloadEndpoint = { kind: "WorkloadEndpoint", api_version: TW, group: "networking.twill.dev",
        plural: "workloadendpoints", aliases: ["workloadendpoint", "wep", "weps"], namespaced: true,
        crd: Some(WorkloadEndpoint::crd) },
    GLOBALNETWORKPOLICY: GlobalNetworkPolicy = { kind: "GlobalNetworkPolicy", api_version: TW,
        group: "networking.twill.dev", plural: "globalnetworkpolicies",
        aliases: ["globalnetworkpolicy", "gnp", "gnps", "globalpolicy", "globalpolicies"], namespaced: false,
        crd: Some(GlobalNetworkPolicy::crd) },
    FELIXCONFIGURATION: FelixConfiguration = { kind: "FelixConfiguration", api_version: TW,
        group: "networking.twill.dev", plural: "felixconfigurations",
        aliases: ["felixconfiguration", "felixconfig", "felixconfigs"], namespaced: false,
        crd: Some(FelixConfiguration::crd) },
    NAMESPACE: Namespace = { kind: "Namespace", api_version: "v1", group: "", plural: "namespaces",
        aliases: ["namespace", "ns"], namespaced: false, crd: None },
    NETWORKPOLICY: NetworkPolicy = { kind: "NetworkPolicy", api_version: "networking.k8s.io/v1",
        group: "networking.k8s.io", plural: "networkpolicies",
        aliases: ["networkpolicy", "netpol", "netpols", "policy", "policies"], namespaced: true, crd: None },
    POD: Pod = { kind: "Pod", api_version: "v1", group: "", plural: "pods",
        aliases: ["pod", "po"], namespaced: true, crd: None },
    KUBENODE: KubeNode = { kind: "Node", api_version: "v1", group: "", plural: "nodes",
        aliases: ["kubenode", "kubenodes"], namespaced: false, crd: None },
    SERVICE: Service = { kind: "Service", api_version: "v1", group: "", plural: "services",
        aliases: ["service", "svc"], namespaced: true, crd: None },
    ENDPOINTSLICE: EndpointSlice = { kind: "EndpointSlice", api_version: "discovery.k8s.io/v1",
        group: "discovery.k8s.io", plural: "endpointslices", aliases: ["endpointslice"],
        namespaced: true, crd: None },
}

/// Looks a kind up by any of its names (`ippool`, `ippools`, `pool`, `IPPool`). Twill's
/// own `Node` wins over Kubernetes' for `node`/`nodes`.
pub fn find_kind(name: &str) -> Option<&'static KindInfo> {
    ALL_KINDS.iter().copied().find(|kind| kind.is_called(name))
}

/// Looks a kind up by `apiVersion` and `kind` as written in a manifest.
pub fn find_kind_by_type(api_version: &str, kind: &str) -> Option<&'static KindInfo> {
    ALL_KINDS
        .iter()
        .copied()
        .find(|info| info.api_version == api_version && info.kind == kind)
}

/// Every CRD of Twill's kinds.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    ALL_KINDS
        .iter()
        .filter_map(|kind| kind.crd)
        .map(|crd| crd())
        .collect()
}
