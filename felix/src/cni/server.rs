//! The agent gRPC service (`agent.proto`) on felix's unix socket (mode 0600: only root
//! may ask for pod networking). Converts protobuf ↔ domain at the boundary and hands the
//! request to [`CniService`].

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};
use twill_cni::request::{CniOutcome, CniRequest, outcome_to_pb};
use twill_proto::agent as pb;
use twill_proto::agent::agent_server::{Agent, AgentServer};

use super::service::CniService;

/// The tonic service.
#[derive(Debug, Clone)]
pub struct AgentService {
    cni: Arc<CniService>,
}

impl AgentService {
    pub fn new(cni: Arc<CniService>) -> AgentService {
        AgentService { cni }
    }

    /// The service ready to add to a tonic router (felix also serves bgpd's API there).
    pub fn into_server(self) -> AgentServer<AgentService> {
        AgentServer::new(self)
    }
}

type Reply = Result<Response<pb::CniReply>, Status>;

fn reply(outcome: CniOutcome) -> Reply {
    Ok(Response::new(outcome_to_pb(outcome)))
}

/// Logs a failed request (the runtime sees the error; the node's operator sees it here).
fn logged(command: &str, req: &CniRequest, outcome: CniOutcome) -> CniOutcome {
    if let Err(e) = &outcome {
        tracing::warn!(
            container = %req.container_id,
            ifname = %req.ifname,
            code = e.code,
            error = %e.msg,
            details = %e.details,
            "CNI {command} failed"
        );
    }
    outcome
}

fn decode(req: Request<pb::CniRequest>) -> Result<CniRequest, pb::CniReply> {
    CniRequest::try_from(req.into_inner()).map_err(|e| outcome_to_pb(Err(e)))
}

#[tonic::async_trait]
impl Agent for AgentService {
    async fn version(
        &self,
        _request: Request<pb::VersionRequest>,
    ) -> Result<Response<pb::VersionReply>, Status> {
        Ok(Response::new(pb::VersionReply {
            version: env!("CARGO_PKG_VERSION").to_string(),
        }))
    }

    async fn add(&self, request: Request<pb::CniRequest>) -> Reply {
        match decode(request) {
            Ok(req) => reply(logged("ADD", &req, self.cni.add(&req).await)),
            Err(err) => Ok(Response::new(err)),
        }
    }

    async fn del(&self, request: Request<pb::CniRequest>) -> Reply {
        match decode(request) {
            Ok(req) => reply(logged("DEL", &req, self.cni.del(&req).await)),
            Err(err) => Ok(Response::new(err)),
        }
    }

    async fn check(&self, request: Request<pb::CniRequest>) -> Reply {
        match decode(request) {
            Ok(req) => reply(logged("CHECK", &req, self.cni.check(&req).await)),
            Err(err) => Ok(Response::new(err)),
        }
    }

    async fn gc(&self, request: Request<pb::CniRequest>) -> Reply {
        match decode(request) {
            Ok(req) => reply(logged("GC", &req, self.cni.gc(&req).await)),
            Err(err) => Ok(Response::new(err)),
        }
    }

    async fn status(&self, request: Request<pb::CniRequest>) -> Reply {
        match decode(request) {
            Ok(req) => reply(logged("STATUS", &req, self.cni.status(&req).await)),
            Err(err) => Ok(Response::new(err)),
        }
    }
}

/// Binds `path` (replacing a stale socket file, creating the directory) with mode 0600.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves the agent service on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: UnixListener,
    service: AgentService,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
}
