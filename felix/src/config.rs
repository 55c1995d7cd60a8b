//! felix's command line and environment (docs/ARCHITECTURE.md "Binaries, flags and environment"),
//! parsed and checked before any runtime starts, so a bad setting exits 64 at once.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use twill_api::datastore::DatastoreArgs;

pub use crate::policy::DataplaneKind;
use crate::policy::ir::{EndpointToHostAction, HostPolicy, HostPort};

/// Calico's `DefaultEndpointToHostAction` values (`return` means `accept` here).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum EndpointToHostArg {
    #[default]
    Drop,
    Accept,
    Return,
}

impl From<EndpointToHostArg> for EndpointToHostAction {
    fn from(a: EndpointToHostArg) -> Self {
        match a {
            EndpointToHostArg::Drop => EndpointToHostAction::Drop,
            EndpointToHostArg::Accept | EndpointToHostArg::Return => EndpointToHostAction::Accept,
        }
    }
}

/// Twill's per-node agent: pods, routes, BGP and policy for this node.
#[derive(Parser, Debug, Clone)]
#[command(name = "twill-felix", version)]
pub struct Args {
    #[command(flatten)]
    pub datastore: DatastoreArgs,
    /// This node's name (default: the hostname).
    #[arg(long, env = "TWILL_NODE_NAME")]
    pub node_name: Option<String>,
    /// Unix socket for the CNI shim and the BGP control API (mode 0600).
    #[arg(
        long,
        env = "TWILL_AGENT_SOCKET",
        default_value = "/var/run/twill/agent.sock"
    )]
    pub agent_socket: PathBuf,
    /// This node's IPv4 address for peering and as next hop (default: detected from the
    /// interface of the default route, else the first global IPv4 address).
    #[arg(long, env = "TWILL_BGP_ADDRESS")]
    pub bgp_address: Option<Ipv4Addr>,
    /// This node's IPv6 address for peering (default: none, or detected like IPv4 when
    /// an IPv6 pool exists).
    #[arg(long, env = "TWILL_BGP_ADDRESS_V6")]
    pub bgp_address_v6: Option<Ipv6Addr>,
    /// Policy dataplane.
    #[arg(long, env = "TWILL_DATAPLANE", value_enum, default_value_t)]
    pub dataplane: DataplaneKind,
    /// Where `/livez`, `/readyz` and `/metrics` are served.
    #[arg(long, env = "TWILL_HEALTH_LISTEN", default_value = "127.0.0.1:9099")]
    pub health_listen: SocketAddr,
    /// Pod interface MTU when the CNI configuration gives none (default: the uplink's).
    #[arg(long, env = "TWILL_MTU")]
    pub mtu: Option<u32>,
    /// Seconds between full resyncs of routes, BGP and policy with the datastore.
    #[arg(long, env = "TWILL_RESYNC_SECONDS", default_value_t = 30)]
    pub resync_seconds: u64,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info`, `twill_felix=debug`.
    #[arg(long, env = "TWILL_LOG", default_value = "info")]
    pub log: String,
    /// What happens to traffic from pods to this host itself, after the pod's egress
    /// policy: `drop` (only the failsafe ports get through) or `accept`.
    #[arg(
        long,
        env = "TWILL_DEFAULT_ENDPOINT_TO_HOST_ACTION",
        value_enum,
        default_value_t
    )]
    pub default_endpoint_to_host_action: EndpointToHostArg,
    /// Host ports pods may always reach (comma-separated `tcp:53,udp:53`); never tcp:179.
    #[arg(
        long,
        env = "TWILL_FAILSAFE_INBOUND_HOST_PORTS",
        value_delimiter = ',',
        value_parser = HostPort::parse
    )]
    pub failsafe_inbound_host_ports: Vec<HostPort>,
    /// Where the host's writable `/proc/sys/net` is (in an unprivileged container the
    /// chart mounts it at `/host/proc/sys/net`).
    #[arg(long, env = "TWILL_PROC_SYS_NET", default_value = "/proc/sys/net")]
    pub proc_sys_net: PathBuf,
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--node-name: {0}")]
    NodeName(String),
    #[error("--etcd-endpoints: required with --datastore etcd")]
    NoEtcdEndpoints,
    #[error("--resync-seconds: must be at least 1")]
    Resync,
    #[error("--mtu: {0} is outside 576..=65535")]
    Mtu(u32),
}

/// felix's settings, checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub datastore: DatastoreArgs,
    pub node_name: String,
    pub agent_socket: PathBuf,
    pub bgp_address: Option<Ipv4Addr>,
    pub bgp_address_v6: Option<Ipv6Addr>,
    pub dataplane: DataplaneKind,
    pub health_listen: SocketAddr,
    pub mtu: Option<u32>,
    pub resync: Duration,
    /// Log filter (tracing `EnvFilter` syntax).
    pub log: String,
    /// The host's `/proc/sys/net`.
    pub proc_sys_net: PathBuf,
    /// The host-facing policy from the command line (FelixConfiguration may override it).
    pub host_policy: HostPolicy,
}

fn hostname() -> Result<String, ConfigError> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .map_err(|e| ConfigError::NodeName(format!("no name given and no hostname: {e}")))
}

/// Whether `name` is a valid node name (a DNS subdomain, as Kubernetes node names are).
fn check_node_name(name: &str) -> Result<(), ConfigError> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let ok_end = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.is_empty()
        || name.len() > 253
        || !name.chars().all(ok_char)
        || !ok_end(name.chars().next())
        || !ok_end(name.chars().last())
    {
        return Err(ConfigError::NodeName(format!(
            "{name:?} is not a valid node name (lowercase letters, digits, '-' and '.')"
        )));
    }
    Ok(())
}

impl Args {
    /// Checks the arguments and fills in defaults.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let node_name = match self.node_name {
            Some(n) => n,
            None => hostname()?.to_ascii_lowercase(),
        };
        check_node_name(&node_name)?;
        if self.datastore.datastore == twill_api::datastore::DatastoreType::Etcd
            && self.datastore.etcd_endpoints.is_empty()
        {
            return Err(ConfigError::NoEtcdEndpoints);
        }
        if self.resync_seconds == 0 {
            return Err(ConfigError::Resync);
        }
        if let Some(mtu) = self.mtu
            && !(576..=65535).contains(&mtu)
        {
            return Err(ConfigError::Mtu(mtu));
        }
        Ok(Config {
            datastore: self.datastore,
            node_name,
            agent_socket: self.agent_socket,
            bgp_address: self.bgp_address,
            bgp_address_v6: self.bgp_address_v6,
            dataplane: self.dataplane,
            health_listen: self.health_listen,
            mtu: self.mtu,
            resync: Duration::from_secs(self.resync_seconds),
            log: self.log,
            proc_sys_net: self.proc_sys_net,
            host_policy: HostPolicy {
                endpoint_to_host: self.default_endpoint_to_host_action.into(),
                failsafe_inbound: self.failsafe_inbound_host_ports,
            },
        })
    }
}

impl Config {
    /// This node's BGP addresses as `IpAddr`s (IPv4 first).
    pub fn bgp_addresses(&self) -> Vec<IpAddr> {
        self.bgp_address
            .map(IpAddr::V4)
            .into_iter()
            .chain(self.bgp_address_v6.map(IpAddr::V6))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["twill-felix"];
        argv.extend_from_slice(args);
        Args::try_parse_from(argv).unwrap().into_config()
    }

    #[test]
    fn etcd_mode_needs_endpoints() {
        let e = parse(&["--datastore", "etcd", "--node-name", "n1"]).unwrap_err();
        assert!(e.to_string().contains("--etcd-endpoints"), "{e}");
        let c = parse(&[
            "--datastore",
            "etcd",
            "--etcd-endpoints",
            "http://192.0.2.1:2379",
            "--node-name",
            "n1",
        ])
        .unwrap();
        assert_eq!(c.node_name, "n1");
        assert_eq!(c.health_listen.to_string(), "127.0.0.1:9099");
        assert_eq!(c.dataplane, DataplaneKind::Nftables);
    }

    #[test]
    fn bad_node_names_are_refused() {
        for bad in ["Node1", "n-", "n_1", ""] {
            let e = parse(&[&format!("--node-name={bad}")]).unwrap_err();
            assert!(e.to_string().starts_with("--node-name"), "{bad}: {e}");
        }
    }

    #[test]
    fn mtu_and_resync_are_checked() {
        assert!(parse(&["--node-name", "n", "--mtu", "100"]).is_err());
        assert!(parse(&["--node-name", "n", "--resync-seconds", "0"]).is_err());
        let c = parse(&[
            "--node-name",
            "n",
            "--mtu",
            "9000",
            "--dataplane",
            "iptables",
        ])
        .unwrap();
        assert_eq!(c.mtu, Some(9000));
        assert_eq!(c.dataplane, DataplaneKind::Iptables);
    }

    #[test]
    fn host_policy_defaults_to_drop_and_never_lets_bgp_through() {
        let c = parse(&["--node-name", "n"]).unwrap();
        assert_eq!(c.host_policy, HostPolicy::default());
        assert_eq!(c.host_policy.endpoint_to_host, EndpointToHostAction::Drop);
        let c = parse(&[
            "--node-name",
            "n",
            "--failsafe-inbound-host-ports",
            "tcp:22,udp:53",
            "--default-endpoint-to-host-action",
            "return",
        ])
        .unwrap();
        assert_eq!(
            c.host_policy.failsafe_inbound,
            vec![
                HostPort {
                    protocol: 6,
                    port: 22
                },
                HostPort {
                    protocol: 17,
                    port: 53
                }
            ]
        );
        assert_eq!(c.host_policy.endpoint_to_host, EndpointToHostAction::Accept);
        let argv = [
            "twill-felix",
            "--node-name",
            "n",
            "--failsafe-inbound-host-ports",
            "tcp:179",
        ];
        let e = Args::try_parse_from(argv).unwrap_err().to_string();
        assert!(e.contains("BGP"), "{e}");
    }
}
