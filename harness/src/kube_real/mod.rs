//! A real Kubernetes API server for one test: `kube-apiserver` v1.20.2 (built from Debian's
//! source package by `scripts/kube-apiserver.sh`, cached outside the work tree) on Debian's
//! etcd ([`EtcdServer`]), both on free ports of 127.0.0.1 in the calling thread's network
//! namespace (start it inside `Netns::run` for a server a node's processes can reach).
//!
//! At start it makes a CA, a serving certificate and ServiceAccount signing keys (openssl,
//! [`certs`]) and a token file with one admin user (`system:masters`); authorization is
//! RBAC, so every other identity gets exactly what the RBAC objects applied to it grant.
//! ServiceAccount tokens come from the real TokenRequest API ([`RealApiServer::token_for`]).
//! The ServiceAccount admission plugin is off (there is no controller-manager to create the
//! `default` ServiceAccounts Pods would need).
//!
//! Drop stops the API server by its PID (SIGTERM, then SIGKILL), then etcd, and removes the
//! temp dir. Nothing else is touched.

pub mod certs;

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;

use crate::etcd::{EtcdError, EtcdServer};
use crate::process::{ChildGuard, ProcessError};
use certs::Certs;

/// The version `scripts/kube-apiserver.sh` builds.
pub const KUBE_VERSION: &str = "v1.20.2";

/// The admin user's name (in `system:masters`: every request is allowed).
pub const ADMIN_USER: &str = "twill-test-admin";

/// How long the server may take to become ready on a loaded machine.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// Why a real API server could not be had or used.
#[derive(Debug, thiserror::Error)]
pub enum KubeRealError {
    #[error("cannot prepare the API server: {0}")]
    Setup(String),
    #[error("kube-apiserver binary: {0}")]
    Binary(String),
    #[error("etcd for the API server: {0}")]
    Etcd(#[from] EtcdError),
    #[error("kube-apiserver process: {0}")]
    Process(#[from] ProcessError),
    #[error("kube-apiserver did not become ready within {timeout:?}: {last}; log tail:\n{log}")]
    NotReady {
        timeout: Duration,
        last: String,
        log: String,
    },
    #[error("kubeconfig: {0}")]
    Config(String),
    #[error("{what}: {source}")]
    Api { what: String, source: kube::Error },
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> KubeRealError + '_ {
    move |e| KubeRealError::Setup(format!("{what}: {e}"))
}

/// The workspace root (this crate's parent directory).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The kube-apiserver binary: `$TWILL_KUBE_APISERVER`, or what `scripts/kube-apiserver.sh`
/// prints (the cached build; when there is none the script builds it, and a caller
/// arriving during a build waits for it). Resolved once per process.
pub fn apiserver_binary() -> Result<PathBuf, KubeRealError> {
    static BINARY: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BINARY
        .get_or_init(|| {
            let script = repo_root().join("scripts/kube-apiserver.sh");
            let out = Command::new("bash")
                .arg(&script)
                .output()
                .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
            if !out.status.success() {
                return Err(format!(
                    "{} failed ({}):\n{}",
                    script.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!("{} printed {path:?}, not a file", script.display()))
            }
        })
        .clone()
        .map_err(KubeRealError::Binary)
}

fn free_port() -> Result<u16, KubeRealError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io("cannot pick a free port"))
}

/// A running etcd + kube-apiserver pair, stopped and removed on Drop.
#[derive(Debug)]
pub struct RealApiServer {
    // Dropped in field order: the API server before its etcd, the temp dir last.
    apiserver: ChildGuard,
    etcd: EtcdServer,
    port: u16,
    admin_token: String,
    certs: Certs,
    dir: tempfile::TempDir,
}

impl RealApiServer {
    /// Starts etcd and kube-apiserver in the calling thread's network namespace and waits
    /// (bounded) until `/readyz` answers ok. Blocking: call it from a plain thread, from
    /// `Netns::run`, or through `tokio::task::spawn_blocking`.
    pub fn start() -> Result<RealApiServer, KubeRealError> {
        Self::start_with(&[])
    }

    /// Like [`start`](Self::start), with extra kube-apiserver flags (`--watch-cache=false`:
    /// watches read etcd directly, so compacting etcd makes an old watch get 410 Gone).
    pub fn start_with(extra_args: &[&str]) -> Result<RealApiServer, KubeRealError> {
        let binary = apiserver_binary()?;
        let etcd = EtcdServer::start()?;
        let dir = tempfile::Builder::new()
            .prefix("twill-kube-real-")
            .tempdir()
            .map_err(io("cannot make a temp dir"))?;
        let certs = Certs::make(dir.path())?;
        let admin_token = format!("admin-{:016x}", rand::random::<u64>());
        // Every request is audited (Metadata level): tests read who was refused what.
        std::fs::write(
            dir.path().join("audit-policy.yaml"),
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\n\
             rules:\n- level: Metadata\n",
        )
        .map_err(io("cannot write the audit policy"))?;
        std::fs::write(
            dir.path().join("tokens.csv"),
            format!("{admin_token},{ADMIN_USER},{ADMIN_USER},\"system:masters\"\n"),
        )
        .map_err(io("cannot write tokens.csv"))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut attempts = 0;
        let (apiserver, port) = loop {
            attempts += 1;
            // A port picked by binding :0 can be taken before the server binds it: then it
            // exits at once and we try another.
            let port = free_port()?;
            let mut apiserver = Self::spawn(&binary, &etcd, &certs, dir.path(), port, extra_args)?;
            let kubeconfig = kubeconfig_text(port, &certs.ca_cert, &admin_token, "default");
            match wait_ready(&mut apiserver, &kubeconfig, deadline) {
                Ok(()) => break (apiserver, port),
                Err((true, _)) if attempts < 3 && Instant::now() < deadline => continue,
                Err((_, last)) => {
                    return Err(KubeRealError::NotReady {
                        timeout: READY_TIMEOUT,
                        last,
                        log: apiserver.log_tail(40),
                    });
                }
            }
        };
        Ok(RealApiServer {
            apiserver,
            etcd,
            port,
            admin_token,
            certs,
            dir,
        })
    }

    fn spawn(
        binary: &Path,
        etcd: &EtcdServer,
        certs: &Certs,
        dir: &Path,
        port: u16,
        extra_args: &[&str],
    ) -> Result<ChildGuard, KubeRealError> {
        let path = |p: &Path| p.display().to_string();
        let mut cmd = Command::new(binary);
        cmd.args([
            format!("--etcd-servers={}", etcd.endpoint()),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            "--insecure-port=0".into(),
            format!("--cert-dir={}", dir.join("cert-dir").display()),
            format!("--tls-cert-file={}", path(&certs.server_cert)),
            format!("--tls-private-key-file={}", path(&certs.server_key)),
            format!("--client-ca-file={}", path(&certs.ca_cert)),
            format!("--token-auth-file={}", dir.join("tokens.csv").display()),
            "--authorization-mode=Node,RBAC".into(),
            "--anonymous-auth=false".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            "--api-audiences=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", path(&certs.sa_pub)),
            format!("--service-account-signing-key-file={}", path(&certs.sa_key)),
            // Only an address range for the Service allocator (no network is configured).
            "--service-cluster-ip-range=198.51.100.0/24".into(),
            // No kubelets, no controller-manager: nothing to reconcile the `kubernetes`
            // Endpoints against, and nobody to create `default` ServiceAccounts.
            "--endpoint-reconciler-type=none".into(),
            "--disable-admission-plugins=ServiceAccount".into(),
            "--allow-privileged=true".into(),
            format!(
                "--audit-policy-file={}",
                dir.join("audit-policy.yaml").display()
            ),
            format!("--audit-log-path={}", dir.join("audit.log").display()),
            "--audit-log-mode=blocking".into(),
            "--profiling=false".into(),
            "--logtostderr=true".into(),
            "--v=1".into(),
        ]);
        cmd.args(extra_args);
        Ok(ChildGuard::spawn("kube-apiserver", cmd)?.with_grace(Duration::from_secs(5)))
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA that signed the serving certificate (PEM file).
    pub fn ca_cert(&self) -> &Path {
        &self.certs.ca_cert
    }

    /// The certificates and keys made at start.
    pub fn certs(&self) -> &Certs {
        &self.certs
    }

    /// The token of the `system:masters` admin.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The API server's PID.
    pub fn pid(&self) -> u32 {
        self.apiserver.pid()
    }

    /// The API server's log so far.
    pub fn log(&self) -> String {
        self.apiserver.log()
    }

    /// The audit events so far (one JSON object per request: `user.username`, `verb`,
    /// `objectRef`, `responseStatus.code`, ...).
    pub fn audit_events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("audit.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Audit events answered 403 Forbidden, as `user verb resource ns/name` lines.
    pub fn forbidden(&self) -> Vec<String> {
        self.audit_events()
            .iter()
            .filter(|e| e.pointer("/responseStatus/code").and_then(Value::as_u64) == Some(403))
            .map(|e| {
                let s = |p: &str| {
                    e.pointer(p)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                format!(
                    "{} {} {}/{} {}/{} ({})",
                    s("/user/username"),
                    s("/verb"),
                    s("/objectRef/apiGroup"),
                    s("/objectRef/resource"),
                    s("/objectRef/namespace"),
                    s("/objectRef/name"),
                    s("/requestURI")
                )
            })
            .collect()
    }

    pub fn etcd(&self) -> &EtcdServer {
        &self.etcd
    }

    /// The server's temp dir (certificates, token file).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A kubeconfig for this server authenticating with `token`, default `namespace`.
    pub fn kubeconfig_yaml(&self, token: &str, namespace: &str) -> String {
        kubeconfig_text(self.port, &self.certs.ca_cert, token, namespace)
    }

    /// Writes [`kubeconfig_yaml`](Self::kubeconfig_yaml) to `<dir>/<name>.kubeconfig`.
    pub fn write_kubeconfig(
        &self,
        name: &str,
        token: &str,
        namespace: &str,
    ) -> Result<PathBuf, KubeRealError> {
        let path = self.dir.path().join(format!("{name}.kubeconfig"));
        std::fs::write(&path, self.kubeconfig_yaml(token, namespace))
            .map_err(io("cannot write a kubeconfig"))?;
        Ok(path)
    }

    /// A client authenticating with `token`. Its connections are made on the current tokio
    /// runtime (from inside a `NsRuntime` for a server in a namespace).
    pub async fn client_with_token(&self, token: &str) -> Result<kube::Client, KubeRealError> {
        client_from_yaml(&self.kubeconfig_yaml(token, "default")).await
    }

    /// A `system:masters` client.
    pub async fn admin_client(&self) -> Result<kube::Client, KubeRealError> {
        self.client_with_token(&self.admin_token).await
    }

    /// A token for ServiceAccount `namespace/name` through the TokenRequest API (the
    /// ServiceAccount must exist), valid for an hour.
    pub async fn token_for(
        &self,
        admin: &kube::Client,
        namespace: &str,
        name: &str,
    ) -> Result<String, KubeRealError> {
        service_account_token(admin, namespace, name).await
    }
}

impl Drop for RealApiServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "kube-apiserver (pid {}) log tail:\n{}",
                self.apiserver.pid(),
                self.apiserver.log_tail(30)
            );
        }
        // The fields drop next: the API server (SIGTERM, SIGKILL after 5 s, by PID), etcd
        // (SIGKILL by PID, data dir removed), then the temp dir.
    }
}

/// A kubeconfig for the server on `port` (CA file `ca`) with `token`, default `namespace`.
fn kubeconfig_text(port: u16, ca: &Path, token: &str, namespace: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: real\n  cluster:\n    \
         server: https://127.0.0.1:{port}\n    certificate-authority: {}\nusers:\n- name: user\n  \
         user:\n    token: {token}\ncontexts:\n- name: real\n  context:\n    cluster: real\n    \
         user: user\n    namespace: {namespace}\ncurrent-context: real\n",
        ca.display()
    )
}

/// Ok when `/readyz` answers ok; Err((exited, last problem)).
fn wait_ready(
    apiserver: &mut ChildGuard,
    kubeconfig: &str,
    deadline: Instant,
) -> Result<(), (bool, String)> {
    let mut last = String::from("not polled yet");
    while Instant::now() < deadline {
        if !apiserver.is_running() {
            return Err((true, format!("exited: {:?}", apiserver.try_status())));
        }
        match probe_readyz(kubeconfig) {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err((false, last))
}

/// A client from a kubeconfig's text.
pub async fn client_from_yaml(yaml: &str) -> Result<kube::Client, KubeRealError> {
    let kubeconfig =
        Kubeconfig::from_yaml(yaml).map_err(|e| KubeRealError::Config(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| KubeRealError::Config(e.to_string()))?;
    kube::Client::try_from(config).map_err(|source| KubeRealError::Api {
        what: "cannot build a client".into(),
        source,
    })
}

/// One `/readyz` probe on a thread of its own (it inherits the caller's network namespace)
/// with a current-thread runtime, so it works from inside or outside a runtime.
fn probe_readyz(kubeconfig: &str) -> Result<(), String> {
    let kubeconfig = kubeconfig.to_string();
    let probe = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("no runtime: {e}"))?;
        runtime.block_on(async move {
            let client = client_from_yaml(&kubeconfig)
                .await
                .map_err(|e| e.to_string())?;
            let request = http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(|e| e.to_string())?;
            let answer = tokio::time::timeout(Duration::from_secs(5), client.request_text(request))
                .await
                .map_err(|_| "readyz timed out".to_string())?
                .map_err(|e| e.to_string())?;
            if answer.trim() == "ok" {
                Ok(())
            } else {
                Err(answer)
            }
        })
    });
    probe
        .join()
        .map_err(|_| "the probe thread panicked".to_string())?
}

/// A token for ServiceAccount `namespace/name` through TokenRequest.
pub async fn service_account_token(
    admin: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<String, KubeRealError> {
    let api: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec!["https://kubernetes.default.svc.cluster.local".into()]),
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let answer: TokenRequest = api
        .create_subresource("token", name, &PostParams::default(), &request)
        .await
        .map_err(|source| KubeRealError::Api {
            what: format!("TokenRequest for {namespace}/{name}"),
            source,
        })?;
    answer.status.and_then(|s| s.token).ok_or_else(|| {
        KubeRealError::Setup(format!(
            "TokenRequest for {namespace}/{name}: no token in the answer"
        ))
    })
}

/// Server-side applies `object` (any kind the server serves; its plural and scope found by
/// discovery) as field manager `twill-test`, and returns it as stored.
pub async fn apply(client: &kube::Client, object: &Value) -> Result<Value, KubeRealError> {
    apply_in(client, object, "default").await
}

/// [`apply`], with namespaced objects that name no namespace going to `namespace` (as
/// `kubectl apply -n` does) and cluster-scoped ones applied without one.
pub async fn apply_in(
    client: &kube::Client,
    object: &Value,
    namespace: &str,
) -> Result<Value, KubeRealError> {
    let what = format!(
        "apply {} {}",
        object["kind"].as_str().unwrap_or("?"),
        object["metadata"]["name"].as_str().unwrap_or("?")
    );
    let dynamic: DynamicObject = serde_json::from_value(object.clone())
        .map_err(|e| KubeRealError::Setup(format!("{what}: {e}")))?;
    let types = dynamic
        .types
        .clone()
        .ok_or_else(|| KubeRealError::Setup(format!("{what}: no apiVersion/kind")))?;
    let gvk = kube::api::GroupVersionKind::try_from(&types)
        .map_err(|e| KubeRealError::Setup(format!("{what}: {e}")))?;
    let (resource, caps) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|source| KubeRealError::Api {
            what: what.clone(),
            source,
        })?;
    let name = dynamic
        .metadata
        .name
        .clone()
        .ok_or_else(|| KubeRealError::Setup(format!("{what}: no name")))?;
    let api: Api<DynamicObject> = match (&caps.scope, &dynamic.metadata.namespace) {
        (kube::discovery::Scope::Namespaced, Some(ns)) => {
            Api::namespaced_with(client.clone(), ns, &resource)
        }
        (kube::discovery::Scope::Namespaced, None) => {
            Api::namespaced_with(client.clone(), namespace, &resource)
        }
        (kube::discovery::Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
    };
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        match caps.scope {
            kube::discovery::Scope::Cluster => {
                meta.remove("namespace");
            }
            kube::discovery::Scope::Namespaced => {
                meta.entry("namespace").or_insert_with(|| namespace.into());
            }
        }
    }
    let stored = api
        .patch(
            &name,
            &PatchParams::apply("twill-test").force(),
            &Patch::Apply(&object),
        )
        .await
        .map_err(|source| KubeRealError::Api { what, source })?;
    serde_json::to_value(stored).map_err(|e| KubeRealError::Setup(e.to_string()))
}

/// Applies every CustomResourceDefinition in `crds` and waits (bounded) until each is
/// Established, so its kind can be served.
pub async fn install_crds(client: &kube::Client, crds: &[Value]) -> Result<(), KubeRealError> {
    for crd in crds {
        apply(client, crd).await?;
    }
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds {
        let name = crd["metadata"]["name"].as_str().unwrap_or_default();
        crate::wait::wait_until_async(
            &format!("CRD {name} to be Established"),
            Duration::from_secs(60),
            Duration::from_millis(200),
            || async {
                let crd = api.get(name).await.map_err(|e| e.to_string())?;
                let established = crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                if established {
                    Ok(())
                } else {
                    Err("not yet".to_string())
                }
            },
        )
        .await
        .map_err(|e| KubeRealError::Setup(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gone(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
    }

    #[test]
    fn starts_authenticates_and_stops_on_drop() {
        let server = RealApiServer::start().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let admin = server.admin_client().await.unwrap();
            let version = admin.apiserver_version().await.unwrap();
            assert_eq!(version.git_version, KUBE_VERSION);
            // A token the server does not know is refused (401), not treated as anonymous.
            let stranger = server.client_with_token("not-a-token").await.unwrap();
            let err = Api::<ServiceAccount>::namespaced(stranger, "default")
                .list(&Default::default())
                .await
                .unwrap_err();
            assert!(
                matches!(&err, kube::Error::Api(s) if s.code == 401),
                "{err:?}"
            );
        });
        let (pid, etcd_pid, dir) = (server.pid(), server.etcd().pid(), server.dir().to_owned());
        drop(server);
        assert!(gone(pid), "kube-apiserver still running");
        assert!(gone(etcd_pid), "etcd still running");
        assert!(!dir.exists(), "temp dir left behind");
    }
}
