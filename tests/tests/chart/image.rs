//! The image the chart runs (`Dockerfile`, which cannot be built on these machines): it must
//! carry every binary the chart's containers execute, each one a binary of the workspace.

use super::*;

/// Binary names the Dockerfile copies out of `target/release/`.
fn binaries_in_image() -> BTreeSet<String> {
    let dockerfile = std::fs::read_to_string(support::repo_root().join("Dockerfile"))
        .expect("Dockerfile at the repository root");
    assert!(
        dockerfile.contains("COPY --from=build /out/ /usr/local/bin/"),
        "the binaries land in /usr/local/bin"
    );
    dockerfile
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("target/release/"))
        .map(str::to_string)
        .collect()
}

/// `[[bin]]` names declared by the workspace's crates.
fn workspace_binaries() -> BTreeSet<String> {
    let root = support::repo_root();
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(&root).expect("read repo root") {
        let manifest = entry.expect("entry").path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        for section in text.split("[[bin]]").skip(1) {
            let name = section
                .lines()
                .find_map(|l| l.trim().strip_prefix("name = "))
                .map(|n| n.trim_matches('"').to_string());
            names.extend(name);
        }
    }
    names
}

#[test]
fn the_image_carries_every_binary_the_chart_runs() {
    let image = binaries_in_image();
    let workspace = workspace_binaries();
    for bin in [
        "twill",
        "twill-felix",
        "twill-ipam-controller",
        "twill-bgpd",
        "twillctl",
    ] {
        assert!(image.contains(bin), "the image lacks {bin}: {image:?}");
        assert!(
            workspace.contains(bin),
            "{bin} is no [[bin]] of the workspace: {workspace:?}"
        );
    }
    for render in [defaults(), full()] {
        let objects = render.render();
        let ds: DaemonSet = objects.typed("DaemonSet", NODE);
        let deploy: Deployment = objects.typed("Deployment", IPAM);
        let pods = [ds.spec.template.spec, deploy.spec.template.spec];
        for pod in pods.iter().flatten() {
            for c in &pod.containers {
                let command = c
                    .command
                    .as_ref()
                    .expect("every container names its command");
                assert!(
                    image.contains(&command[0]),
                    "{} runs {}, not in the image",
                    c.name,
                    command[0]
                );
            }
        }
        let pod = pod_spec_of_daemonset(&objects);
        let install = container(
            pod.init_containers.as_deref().unwrap_or_default(),
            "install-cni",
        );
        let script = install.command.as_ref().expect("command").join(" ");
        assert!(
            script.contains("/usr/local/bin/twill "),
            "the plugin is copied from the image"
        );
    }
}
