//! A policy test node: a "node" namespace with pods (each its own namespace, joined by a
//! veth `tw…` ↔ `eth0`, a /32 and a route, proxy ARP on the host side) and an "outside"
//! host on 192.0.2.0/24. Pods run TCP and UDP echo servers; reachability is checked with
//! real `nc` (netcat-openbsd) clients.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;

use twill_harness::netns::{Netns, NsRuntime};

pub const NODE_IP: &str = "192.0.2.1";
pub const OUTSIDE_IP: &str = "192.0.2.2";
pub const TCP_PORTS: [u16; 3] = [80, 8080, 5432];
pub const UDP_PORTS: [u16; 2] = [5000, 5005];

pub struct Pod {
    pub name: String,
    pub ip: String,
    pub iface: String,
    pub ns: Netns,
    _servers: NsRuntime,
}

pub struct Topo {
    pub node: Netns,
    pub outside: Netns,
    pub pods: BTreeMap<String, Pod>,
    _outside_server: NsRuntime,
}

/// Port of the outside host's "who am I" server (answers with the client's address).
pub const WHOAMI_PORT: u16 = 7000;

async fn whoami(ready: std::sync::mpsc::Sender<()>) {
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", WHOAMI_PORT))
        .await
        .unwrap();
    ready.send(()).unwrap();
    loop {
        if let Ok((mut sock, peer)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = sock.write_all(format!("{}\n", peer.ip()).as_bytes()).await;
            });
        }
    }
}

async fn tcp_server(port: u16, ready: std::sync::mpsc::Sender<()>) {
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
        .await
        .unwrap();
    ready.send(()).unwrap();
    loop {
        if let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = sock.write_all(b"hello\n").await;
            });
        }
    }
}

async fn udp_echo(port: u16, ready: std::sync::mpsc::Sender<()>) {
    let sock = tokio::net::UdpSocket::bind(("0.0.0.0", port))
        .await
        .unwrap();
    ready.send(()).unwrap();
    let mut buf = [0u8; 1500];
    loop {
        if let Ok((n, peer)) = sock.recv_from(&mut buf).await {
            let _ = sock.send_to(&buf[..n], peer).await;
        }
    }
}

impl Topo {
    /// Builds the node with pods `(name, last octet)`: pod `name` gets 10.244.0.OCTET and
    /// host interface `tw000000000OCTET` (hex).
    pub fn new(prefix: &str, pods: &[(&str, u8)]) -> Topo {
        let node = Netns::new(&format!("{prefix}n")).unwrap();
        node.enable_forwarding().unwrap();
        let outside = Netns::new(&format!("{prefix}o")).unwrap();
        node.veth(
            &[&format!("{NODE_IP}/24")],
            &outside,
            &[&format!("{OUTSIDE_IP}/24")],
        )
        .unwrap();
        outside
            .ip(&["route", "add", "10.244.0.0/16", "via", NODE_IP])
            .unwrap();
        // Proxy ARP answers for the pods' gateway 169.254.1.1 only if the node has a
        // route for it through another interface.
        node.ip(&["route", "add", "default", "via", OUTSIDE_IP])
            .unwrap();
        let outside_server = NsRuntime::start(&outside).unwrap();
        let (ready, bound) = std::sync::mpsc::channel();
        outside_server.spawn(whoami(ready));
        bound
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("whoami server bound");
        let mut map = BTreeMap::new();
        for (name, octet) in pods {
            let ns = Netns::new(&format!("{prefix}p")).unwrap();
            let iface = format!("tw{:011x}", octet);
            let ip = format!("10.244.0.{octet}");
            node.veth_named(&iface, &[], &ns, "eth0", &[]).unwrap();
            ns.add_addr("eth0", &format!("{ip}/32")).unwrap();
            ns.ip(&[
                "route",
                "add",
                "169.254.1.1",
                "dev",
                "eth0",
                "scope",
                "link",
            ])
            .unwrap();
            ns.ip(&[
                "route",
                "add",
                "default",
                "via",
                "169.254.1.1",
                "dev",
                "eth0",
            ])
            .unwrap();
            // Answer at once (the default waits up to 0.8 s), as Calico configures it.
            node.sysctl(&format!("net.ipv4.neigh.{iface}.proxy_delay"), "0")
                .unwrap();
            node.sysctl(&format!("net.ipv4.conf.{iface}.proxy_arp"), "1")
                .unwrap();
            node.ip(&["route", "add", &format!("{ip}/32"), "dev", &iface])
                .unwrap();
            let servers = NsRuntime::start(&ns).unwrap();
            let (ready, bound) = std::sync::mpsc::channel();
            for port in TCP_PORTS {
                servers.spawn(tcp_server(port, ready.clone()));
            }
            for port in UDP_PORTS {
                servers.spawn(udp_echo(port, ready.clone()));
            }
            for _ in 0..TCP_PORTS.len() + UDP_PORTS.len() {
                bound
                    .recv_timeout(std::time::Duration::from_secs(10))
                    .expect("servers bound");
            }
            map.insert(
                name.to_string(),
                Pod {
                    name: name.to_string(),
                    ip,
                    iface,
                    ns,
                    _servers: servers,
                },
            );
        }
        Topo {
            node,
            outside,
            pods: map,
            _outside_server: outside_server,
        }
    }

    pub fn pod(&self, name: &str) -> &Pod {
        &self.pods[name]
    }

    /// The namespace a source name refers to: a pod, `outside` or `node`.
    fn source(&self, from: &str) -> &Netns {
        match from {
            "outside" => &self.outside,
            "node" => &self.node,
            pod => &self.pods[pod].ns,
        }
    }

    /// Whether a TCP connection from `from` to pod `to` on `port` is established (the
    /// server's greeting comes back, so replies pass too).
    pub fn tcp(&self, from: &str, to: &str, port: u16) -> bool {
        let ip = self.pod(to).ip.clone();
        let out = self
            .source(from)
            .command("nc")
            .args(["-n", "-w", "1", &ip, &port.to_string()])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("hello")
    }

    /// Starts greeting TCP servers on the node itself (all addresses) on `ports`; they stop
    /// when the returned runtime is dropped.
    pub fn serve_on_node(&self, ports: &[u16]) -> NsRuntime {
        let rt = NsRuntime::start(&self.node).unwrap();
        let (ready, bound) = std::sync::mpsc::channel();
        for port in ports {
            rt.spawn(tcp_server(*port, ready.clone()));
        }
        for _ in ports {
            bound
                .recv_timeout(std::time::Duration::from_secs(10))
                .expect("node servers bound");
        }
        rt
    }

    /// Whether pod `from` gets a TCP connection to the node's own address on `port`.
    pub fn tcp_to_node(&self, from: &str, port: u16) -> bool {
        let out = self.pods[from]
            .ns
            .command("nc")
            .args(["-n", "-w", "1", NODE_IP, &port.to_string()])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("hello")
    }

    /// The source address the outside host sees for a TCP connection from pod `from`.
    pub fn seen_by_outside(&self, from: &str) -> String {
        let out = self.pods[from]
            .ns
            .command("nc")
            .args(["-n", "-w", "1", OUTSIDE_IP, &WHOAMI_PORT.to_string()])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Whether a UDP datagram from `from` to pod `to` on `port` is echoed back.
    pub fn udp(&self, from: &str, to: &str, port: u16) -> bool {
        use std::io::Write;
        let ip = self.pod(to).ip.clone();
        let mut child = self
            .source(from)
            .command("nc")
            .args(["-n", "-u", "-w", "1", &ip, &port.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"ping\n").unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).contains("ping")
    }
}
