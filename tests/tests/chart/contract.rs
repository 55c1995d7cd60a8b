//! The chart's contract with the binaries: every environment variable the chart gives a
//! container is one that container's binary reads (clap lists each flag's variable in
//! `--help` as `[env: NAME=...]`), and every command exists. A renamed flag breaks this
//! test, not a cluster.

use super::*;

fn help_of(binary: &str) -> String {
    let bin = twillctl::lab::default_bin_dir()
        .expect("bin dir")
        .join(binary);
    let out = std::process::Command::new(&bin)
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("{} (build the binaries first): {e}", bin.display()));
    assert!(out.status.success(), "{binary} --help: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check(container: &Container) {
    let command = container.command.as_ref().expect("a command");
    let binary = command[0].as_str();
    let help = help_of(binary);
    for var in container.env.iter().flatten() {
        assert!(
            help.contains(&format!("[env: {}=", var.name)),
            "container {} sets {} but {binary} reads no such variable",
            container.name,
            var.name
        );
    }
}

#[test]
fn every_variable_the_chart_sets_is_read_by_its_binary() {
    for render in [defaults(), full(), minimal()] {
        let objects = render.render();
        let node = pod_spec_of_daemonset(&objects);
        check(container(&node.containers, "felix"));
        let deployment: k8s_openapi::api::apps::v1::Deployment = objects.typed("Deployment", IPAM);
        let pod = deployment.spec.template.spec.unwrap();
        check(container(&pod.containers, "ipam-controller"));
    }
}
