//! The real `twill` binary on bad input and with felix away: the spec's error codes on
//! stdout with exit status 1, quickly, and nothing changed on the node.

mod common;

use std::os::unix::net::UnixListener;
use std::time::Duration;

use common::{Node, exec_plugin, twill_bin};
use twill_harness::netns::Netns;

fn add_env<'a>(netns: &'a str, container: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", container),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
    ]
}

type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, String, u64, &'a str);

#[tokio::test]
async fn bad_requests_get_spec_codes_and_change_nothing() {
    let node = Node::start(&["10.244.6.0/26"]).await;
    let pod = Netns::new("twcni-pod").unwrap();
    let netns = pod.path().display().to_string();
    let good = node.conf("1.0.0").to_string();
    let mut unknown_version = node.conf("1.0.0");
    unknown_version["cniVersion"] = "0.2.0".into();
    let mut no_name = node.conf("1.0.0");
    no_name.as_object_mut().unwrap().remove("name");

    // (what, environment, stdin, expected code, a word the error must mention)
    let cases: Vec<Case<'_>> = vec![
        (
            "malformed JSON",
            add_env(&netns, "c1"),
            "{\"cniVersion\": ".into(),
            6,
            "decode",
        ),
        (
            "bad container id",
            add_env(&netns, "-bad/id"),
            good.clone(),
            4,
            "CNI_CONTAINERID",
        ),
        (
            "unknown version",
            add_env(&netns, "c1"),
            unknown_version.to_string(),
            1,
            "0.2.0",
        ),
        (
            "missing name",
            add_env(&netns, "c1"),
            no_name.to_string(),
            7,
            "name",
        ),
        (
            "missing netns",
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_IFNAME", "eth0"),
            ],
            good.clone(),
            4,
            "CNI_NETNS",
        ),
        (
            "ifname with a slash",
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_NETNS", &netns),
                ("CNI_IFNAME", "eth/0"),
            ],
            good.clone(),
            4,
            "CNI_IFNAME",
        ),
        (
            "unknown command",
            vec![("CNI_COMMAND", "FROB")],
            good.clone(),
            4,
            "CNI_COMMAND",
        ),
    ];
    for (what, env, stdin, code, mentions) in cases {
        let run = exec_plugin(None, &twill_bin(), &env, &stdin);
        assert_eq!(run.error_code(), code, "{what}: {run:?}");
        let v = run.json();
        assert!(v["cniVersion"].is_string(), "{what}: {v}");
        let text = format!("{} {}", v["msg"], v["details"]);
        assert!(text.contains(mentions), "{what}: {text}");
    }
    // Nothing reached the dataplane or IPAM.
    assert!(node.tw_links().is_empty());
    assert!(node.ipam.used().await.is_empty());
    assert!(pod.ip(&["link", "show", "eth0"]).is_err());
}

#[test]
fn version_answers_without_an_agent() {
    let run = exec_plugin(
        None,
        &twill_bin(),
        &[("CNI_COMMAND", "VERSION")],
        r#"{"cniVersion":"0.3.1"}"#,
    );
    run.assert_ok();
    let v = run.json();
    assert_eq!(v["cniVersion"], "0.3.1");
    assert_eq!(
        v["supportedVersions"],
        serde_json::json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
}

fn conf_for(socket: &std::path::Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0", "name": "twill", "type": "twill", "agent_socket": socket
    })
    .to_string()
}

#[test]
fn agent_missing_is_code_11_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let pod = Netns::new("twcni-pod").unwrap();
    let netns = pod.path().display().to_string();
    let run = exec_plugin(
        None,
        &twill_bin(),
        &add_env(&netns, "c1"),
        &conf_for(&dir.path().join("agent.sock")),
    );
    assert_eq!(run.error_code(), 11, "{run:?}");
    assert!(run.elapsed < Duration::from_secs(3), "{:?}", run.elapsed);
    assert!(
        run.json()["msg"]
            .as_str()
            .unwrap()
            .contains("not reachable")
    );
}

#[test]
fn agent_that_never_answers_is_code_11_within_seconds() {
    // A socket that accepts connections (kernel backlog) but never speaks HTTP/2.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let _listener = UnixListener::bind(&path).unwrap();
    let pod = Netns::new("twcni-pod").unwrap();
    let netns = pod.path().display().to_string();
    let run = exec_plugin(None, &twill_bin(), &add_env(&netns, "c1"), &conf_for(&path));
    assert_eq!(run.error_code(), 11, "{run:?}");
    assert!(run.elapsed < Duration::from_secs(10), "{:?}", run.elapsed);
}

#[test]
fn del_without_agent_is_code_11_not_success() {
    // DEL must not pretend: the runtime retries a DEL that could not reach felix.
    let dir = tempfile::tempdir().unwrap();
    let run = exec_plugin(
        None,
        &twill_bin(),
        &[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ],
        &conf_for(&dir.path().join("agent.sock")),
    );
    assert_eq!(run.error_code(), 11, "{run:?}");
}

#[tokio::test]
async fn oversized_config_is_a_permanent_error_not_try_again() {
    let node = Node::start(&["10.244.7.0/26"]).await;
    let pod = Netns::new("twcni-pod").unwrap();
    let netns = pod.path().display().to_string();
    // 10 MB of otherwise valid configuration: a runtime's bug, never worth a retry.
    let mut big = node.conf("1.0.0");
    big["padding"] = "x".repeat(10 * 1024 * 1024).into();
    let run = exec_plugin(
        None,
        &twill_bin(),
        &add_env(&netns, "big"),
        &big.to_string(),
    );
    assert_eq!(run.error_code(), 7, "{run:?}");
    assert!(
        run.json()["msg"].as_str().unwrap().contains("larger than"),
        "{run:?}"
    );
    assert!(run.elapsed < Duration::from_secs(5), "{:?}", run.elapsed);
    assert!(node.tw_links().is_empty());
    assert!(node.ipam.used().await.is_empty());
}
