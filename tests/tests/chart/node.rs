//! The node DaemonSet: felix and the CNI install init container, and the conflist.

use super::*;

#[test]
fn node_daemonset_runs_everywhere_on_the_host_network_one_node_at_a_time() {
    let objects = defaults().render();
    let ds: DaemonSet = objects.typed("DaemonSet", NODE);
    let spec = ds.spec;
    let strategy = spec.update_strategy.expect("updateStrategy");
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let rolling = strategy.rolling_update.expect("rollingUpdate");
    assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(1)));
    assert_eq!(
        rolling.max_surge,
        Some(IntOrString::Int(0)),
        "a second agent cannot share the host network"
    );

    let labels = spec
        .template
        .metadata
        .and_then(|m| m.labels)
        .expect("pod labels");
    let selector = spec.selector.match_labels.expect("matchLabels");
    for (k, v) in &selector {
        assert_eq!(labels.get(k), Some(v), "the selector matches the pods");
    }
    let pod = spec.template.spec.expect("pod spec");
    assert_eq!(pod.host_network, Some(true));
    // felix must not depend on cluster DNS, whose pods need felix to get an address.
    assert_eq!(
        pod.dns_policy, None,
        "a host-network pod then uses the node's resolv.conf"
    );
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
    assert_eq!(pod.service_account_name.as_deref(), Some(NODE));
    let tolerations = pod.tolerations.expect("tolerations");
    assert!(
        tolerations
            .iter()
            .any(|t| t.operator.as_deref() == Some("Exists")
                && t.key.is_none()
                && t.effect.is_none()),
        "no toleration of every taint: {tolerations:?}"
    );
}

#[test]
fn init_container_installs_the_plugin_and_conflist_into_the_host_cni_dirs() {
    let objects = defaults().render();
    let pod = pod_spec_of_daemonset(&objects);
    let install = container(
        pod.init_containers.as_deref().unwrap_or_default(),
        "install-cni",
    );
    let script = install.command.as_ref().expect("command").join(" ");
    let (bin_mount, bin_host) = host_mount(&pod, install, "/host/opt/cni/bin");
    let (_, conf_host) = host_mount(&pod, install, "/host/etc/cni/net.d");
    assert_eq!(bin_host, "/opt/cni/bin");
    assert_eq!(conf_host, "/etc/cni/net.d");
    assert_ne!(bin_mount.read_only, Some(true));
    assert!(
        script.contains("/usr/local/bin/twill /host/opt/cni/bin/.twill.tmp"),
        "{script}"
    );
    assert!(
        script.contains("mv -f /host/opt/cni/bin/.twill.tmp /host/opt/cni/bin/twill"),
        "{script}"
    );
    assert!(
        script.contains("\"/host/etc/cni/net.d/$CNI_CONF_NAME\""),
        "{script}"
    );
    // The conflist comes from the chart's ConfigMap.
    let config_mount = install
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| {
            script.contains(&format!(
                "install -m 0644 \"{}/$CNI_CONF_NAME\"",
                m.mount_path
            ))
        })
        .expect("the script copies the conflist from a mount");
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == config_mount.name)
        .expect("volume");
    assert_eq!(
        volume.config_map.as_ref().map(|c| c.name.as_str()),
        Some("twill-cni-config")
    );
    let security = install.security_context.as_ref().expect("securityContext");
    assert_ne!(security.privileged, Some(true));
    let caps = security.capabilities.as_ref().expect("capabilities");
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert!(
        caps.add.as_ref().is_none_or(|a| a.is_empty()),
        "the installer needs no capability"
    );

    // The full values install a differently named conflist and the plugin into another dir.
    let objects = full().render();
    let pod = pod_spec_of_daemonset(&objects);
    let install = container(
        pod.init_containers.as_deref().unwrap_or_default(),
        "install-cni",
    );
    assert_eq!(
        host_mount(&pod, install, "/host/opt/cni/bin").1,
        "/home/kubernetes/bin"
    );
    assert_eq!(
        env(install, "CNI_CONF_NAME").as_deref(),
        Some("05-twill.conflist")
    );
}

#[test]
fn conflist_carries_the_mtu_and_chained_plugins_from_values() {
    let (name, default) = conflist(&defaults().render());
    assert_eq!(name, "10-twill.conflist");
    assert_eq!(
        default,
        json!({
            "cniVersion": "1.0.0",
            "name": "twill",
            "plugins": [
                { "type": "twill", "agent_socket": "/var/run/twill/agent.sock", "mtu": 1500 },
                { "type": "portmap", "capabilities": { "portMappings": true }, "snat": true }
            ]
        }),
        "the default conflist is the one docs/ARCHITECTURE.md gives"
    );

    let (name, full_conf) = conflist(&full().render());
    assert_eq!(name, "05-twill.conflist");
    assert_eq!(
        full_conf,
        json!({
            "cniVersion": "1.1.0",
            "name": "twill",
            "plugins": [
                { "type": "twill", "agent_socket": "/var/run/twill/agent.sock", "mtu": 9000 },
                { "type": "bandwidth", "capabilities": { "bandwidth": true } },
                { "type": "tuning", "sysctl": { "net.core.somaxconn": "1024" } }
            ]
        })
    );

    let (_, minimal_conf) = conflist(&minimal().render());
    assert_eq!(
        minimal_conf["plugins"],
        json!([{ "type": "twill", "agent_socket": "/var/run/twill/agent.sock" }]),
        "mtu 0 leaves the MTU to felix; no chained plugins"
    );

    let (_, jumbo) = conflist(
        &defaults()
            .set("mtu=9001")
            .set("cni.portmap.snat=false")
            .render(),
    );
    assert_eq!(jumbo["plugins"][0]["mtu"], 9001);
    assert_eq!(jumbo["plugins"][1]["snat"], false);
}

#[test]
fn a_changed_conflist_rolls_the_agents() {
    let checksum = |render: Render| {
        let ds = render.render().get("DaemonSet", NODE).clone();
        ds["spec"]["template"]["metadata"]["annotations"]["checksum/cni-config"].clone()
    };
    let base = checksum(defaults());
    assert!(base.is_string());
    assert_eq!(base, checksum(defaults()), "rendering is deterministic");
    assert_ne!(base, checksum(defaults().set("mtu=1400")));
}

#[test]
fn felix_has_exactly_the_capabilities_it_needs_and_is_never_privileged() {
    for render in [defaults(), full(), minimal()] {
        let objects = render.render();
        let pod = pod_spec_of_daemonset(&objects);
        assert_eq!(pod.containers.len(), 1, "felix only");
        let felix = container(&pod.containers, "felix");
        let security = felix.security_context.as_ref().expect("securityContext");
        assert_eq!(security.privileged, Some(false));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        let caps = security.capabilities.as_ref().expect("capabilities");
        let added: BTreeSet<&str> = caps.add.iter().flatten().map(String::as_str).collect();
        assert_eq!(added, BTreeSet::from(["NET_ADMIN", "NET_RAW", "SYS_ADMIN"]));
        assert_eq!(
            caps.add.as_ref().map(Vec::len),
            Some(3),
            "no capability twice"
        );
        assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert!(pod.host_pid.is_none_or(|b| !b) && pod.host_ipc.is_none_or(|b| !b));
        for c in pod
            .containers
            .iter()
            .chain(pod.init_containers.iter().flatten())
        {
            let privileged = c.security_context.as_ref().and_then(|s| s.privileged);
            assert_ne!(privileged, Some(true), "{} is privileged", c.name);
        }
    }
}

#[test]
fn felix_is_probed_on_its_health_endpoints() {
    for (render, port) in [(defaults(), 9099), (full(), 19099)] {
        let objects = render.render();
        let pod = pod_spec_of_daemonset(&objects);
        let felix = container(&pod.containers, "felix");
        let live = felix
            .liveness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("liveness httpGet");
        let ready = felix
            .readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("readiness httpGet");
        assert_eq!(live.path.as_deref(), Some("/livez"));
        assert_eq!(ready.path.as_deref(), Some("/readyz"));
        assert_eq!(port_number(&live.port), port);
        assert_eq!(port_number(&ready.port), port);
        // felix listens where the kubelet probes.
        let listen = env(felix, "TWILL_HEALTH_LISTEN").expect("TWILL_HEALTH_LISTEN");
        for probe in [live, ready] {
            let host = probe.host.as_deref().unwrap_or("<pod IP>");
            assert_eq!(
                listen,
                format!("{host}:{port}"),
                "probe and listener disagree"
            );
        }
    }
}

#[test]
fn felix_runs_in_kubernetes_mode_with_its_node_name_and_dataplane() {
    let objects = defaults().render();
    let pod = pod_spec_of_daemonset(&objects);
    let felix = container(&pod.containers, "felix");
    assert_eq!(
        felix.command.as_deref(),
        Some(&["twill-felix".to_string()][..])
    );
    assert_eq!(env(felix, "TWILL_DATASTORE").as_deref(), Some("kubernetes"));
    assert_eq!(
        env_field_ref(felix, "TWILL_NODE_NAME").as_deref(),
        Some("spec.nodeName")
    );
    assert_eq!(env(felix, "TWILL_DATAPLANE").as_deref(), Some("nftables"));
    assert_eq!(env(felix, "TWILL_LOG").as_deref(), Some("info"));
    assert_eq!(
        env(felix, "TWILL_AGENT_SOCKET").as_deref(),
        Some("/var/run/twill/agent.sock")
    );
    assert_eq!(
        felix.image.as_deref(),
        Some("ghcr.io/twill-net/twill:0.1.0"),
        "the tag defaults to appVersion"
    );

    let objects = full().render();
    let pod = pod_spec_of_daemonset(&objects);
    let felix = container(&pod.containers, "felix");
    assert_eq!(env(felix, "TWILL_DATAPLANE").as_deref(), Some("iptables"));
    assert_eq!(env(felix, "TWILL_LOG").as_deref(), Some("debug"));
    assert_eq!(
        felix.image.as_deref(),
        Some("registry.example.com/net/twill:1.2.3-debug")
    );
    assert_eq!(felix.image_pull_policy.as_deref(), Some("Always"));
    let resources = felix.resources.as_ref().expect("resources");
    assert_eq!(
        resources.limits.as_ref().expect("limits")["memory"].0,
        "1Gi"
    );
    assert_eq!(
        pod.image_pull_secrets.expect("pull secrets")[0].name,
        "registry-creds"
    );
}

#[test]
fn felix_mounts_the_host_paths_the_cni_flow_needs() {
    let objects = defaults().render();
    let pod = pod_spec_of_daemonset(&objects);
    let felix = container(&pod.containers, "felix");
    let (socket, host) = host_mount(&pod, felix, "/var/run/twill");
    assert_eq!(host, "/var/run/twill");
    assert_ne!(socket.read_only, Some(true));
    let (netns, host) = host_mount(&pod, felix, "/run/netns");
    assert_eq!(host, "/run/netns");
    assert_eq!(
        netns.mount_propagation.as_deref(),
        Some("HostToContainer"),
        "pods' netns appear after felix starts"
    );
    let (modules, host) = host_mount(&pod, felix, "/lib/modules");
    assert_eq!(host, "/lib/modules");
    assert_eq!(modules.read_only, Some(true));
    let (sysctl, host) = host_mount(&pod, felix, "/host/proc/sys/net");
    assert_eq!(host, "/proc/sys/net");
    assert_eq!(
        env(felix, "TWILL_PROC_SYS_NET").as_deref(),
        Some(sysctl.mount_path.as_str())
    );
    // The socket directory is the one the conflist points the plugin at.
    let (_, conf) = conflist(&objects);
    assert_eq!(
        conf["plugins"][0]["agent_socket"],
        "/var/run/twill/agent.sock"
    );
}
