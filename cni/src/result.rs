//! The CNI result: one domain type, written in the shape the requested version expects
//! (0.3.x/0.4.0 carry `"version"` per IP, 1.x does not), and read back from `prevResult`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::spec::CniVersion;

/// An interface the plugin created (`sandbox` is the netns path for the pod side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    pub sandbox: Option<String>,
}

/// An address given to one of `interfaces` (by index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
    pub interface: Option<usize>,
}

/// A route inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
}

/// The result of an ADD.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
}

impl CniResult {
    /// The result JSON in `version`'s shape.
    pub fn to_json(&self, version: CniVersion) -> String {
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut v = json!({ "name": i.name, "mac": i.mac });
                if let Some(s) = &i.sandbox {
                    v["sandbox"] = json!(s);
                }
                v
            })
            .collect();
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut v = json!({ "address": ip.address.to_string() });
                if !version.is_1x() {
                    v["version"] = json!(if ip.address.addr().is_ipv4() {
                        "4"
                    } else {
                        "6"
                    });
                }
                if let Some(gw) = ip.gateway {
                    v["gateway"] = json!(gw.to_string());
                }
                if let Some(i) = ip.interface {
                    v["interface"] = json!(i);
                }
                v
            })
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|r| {
                let mut v = json!({ "dst": r.dst.to_string() });
                if let Some(gw) = r.gw {
                    v["gw"] = json!(gw.to_string());
                }
                v
            })
            .collect();
        json!({
            "cniVersion": version.as_str(),
            "interfaces": interfaces,
            "ips": ips,
            "routes": routes,
            "dns": {},
        })
        .to_string()
    }

    /// Reads a result (e.g. `prevResult`) of any supported shape.
    pub fn from_value(v: &Value) -> Result<CniResult, serde_json::Error> {
        #[derive(Deserialize, Serialize)]
        struct WireIf {
            name: String,
            #[serde(default)]
            mac: String,
            sandbox: Option<String>,
        }
        #[derive(Deserialize, Serialize)]
        struct WireIp {
            address: IpNet,
            gateway: Option<IpAddr>,
            interface: Option<usize>,
        }
        #[derive(Deserialize, Serialize)]
        struct WireRoute {
            dst: IpNet,
            gw: Option<IpAddr>,
        }
        #[derive(Deserialize, Serialize)]
        struct Wire {
            #[serde(default)]
            interfaces: Vec<WireIf>,
            #[serde(default)]
            ips: Vec<WireIp>,
            #[serde(default)]
            routes: Vec<WireRoute>,
        }
        let w: Wire = serde_json::from_value(v.clone())?;
        Ok(CniResult {
            interfaces: w
                .interfaces
                .into_iter()
                .map(|i| Interface {
                    name: i.name,
                    mac: i.mac,
                    sandbox: i.sandbox,
                })
                .collect(),
            ips: w
                .ips
                .into_iter()
                .map(|i| IpConfig {
                    address: i.address,
                    gateway: i.gateway,
                    interface: i.interface,
                })
                .collect(),
            routes: w
                .routes
                .into_iter()
                .map(|r| Route {
                    dst: r.dst,
                    gw: r.gw,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "tw0123456789a".into(),
                    mac: "ee:ee:ee:ee:ee:ee".into(),
                    sandbox: None,
                },
                Interface {
                    name: "eth0".into(),
                    mac: "02:00:00:00:00:01".into(),
                    sandbox: Some("/var/run/netns/p".into()),
                },
            ],
            ips: vec![IpConfig {
                address: "10.244.0.5/32".parse().unwrap(),
                gateway: Some("169.254.1.1".parse().unwrap()),
                interface: Some(1),
            }],
            routes: vec![Route {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: Some("169.254.1.1".parse().unwrap()),
            }],
        }
    }

    #[test]
    fn old_versions_carry_ip_version_and_1x_does_not() {
        let old: Value = serde_json::from_str(&sample().to_json(CniVersion::V040)).unwrap();
        assert_eq!(old["cniVersion"], "0.4.0");
        assert_eq!(old["ips"][0]["version"], "4");
        let new: Value = serde_json::from_str(&sample().to_json(CniVersion::V100)).unwrap();
        assert_eq!(new["cniVersion"], "1.0.0");
        assert!(new["ips"][0].get("version").is_none());
        assert_eq!(new["ips"][0]["interface"], 1);
        assert_eq!(new["interfaces"][1]["sandbox"], "/var/run/netns/p");
    }

    #[test]
    fn result_reads_back_from_either_shape() {
        for v in [CniVersion::V031, CniVersion::V110] {
            let json: Value = serde_json::from_str(&sample().to_json(v)).unwrap();
            assert_eq!(CniResult::from_value(&json).unwrap(), sample());
        }
    }
}
