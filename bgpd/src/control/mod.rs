//! The control API: the `twill.bgp.v1.Bgp` gRPC service over a unix socket (felix mounts
//! the same [`BgpService`] on its agent socket), and a plain-HTTP `/metrics` endpoint.
//! It only asks the speaker; it never holds protocol state of its own.

mod convert;

use std::path::Path;
use std::sync::Arc;

use ipnet::IpNet;
use tokio::net::UnixListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{BroadcastStream, UnixListenerStream};
use tonic::{Request, Response, Status};
use twill_proto::bgp as pb;
use twill_proto::bgp::bgp_server::{Bgp, BgpServer};

use crate::speaker::{RouteQuery, RouteTable, Speaker, SpeakerError};
use crate::task::TaskGuard;

pub use convert::as_path;

/// The gRPC service over a speaker.
#[derive(Clone, Debug)]
pub struct BgpService {
    speaker: Arc<Speaker>,
}

impl BgpService {
    pub fn new(speaker: Arc<Speaker>) -> Self {
        Self { speaker }
    }

    /// The tonic service, ready for `Server::builder().add_service(..)`.
    pub fn into_server(self) -> BgpServer<Self> {
        BgpServer::new(self)
    }
}

fn unavailable(e: SpeakerError) -> Status {
    Status::unavailable(e.to_string())
}

fn parse_prefixes(v: &[String]) -> Result<Vec<IpNet>, Status> {
    v.iter()
        .map(|s| {
            s.parse::<IpNet>()
                .map_err(|e| Status::invalid_argument(format!("prefixes: {s:?}: {e}")))
        })
        .collect()
}

#[tonic::async_trait]
impl Bgp for BgpService {
    async fn list_peers(
        &self,
        _: Request<pb::ListPeersRequest>,
    ) -> Result<Response<pb::ListPeersReply>, Status> {
        let peers = self.speaker.peers().await.map_err(unavailable)?;
        Ok(Response::new(pb::ListPeersReply {
            peers: peers.into_iter().map(convert::peer).collect(),
        }))
    }

    async fn list_routes(
        &self,
        req: Request<pb::ListRoutesRequest>,
    ) -> Result<Response<pb::ListRoutesReply>, Status> {
        let pb::ListRoutesRequest {
            table,
            peer,
            prefix,
        } = req.into_inner();
        let peer_addr = || {
            peer.parse()
                .map_err(|_| Status::invalid_argument(format!("peer: {peer:?} is not an address")))
        };
        let table = match pb::Table::try_from(table) {
            Ok(pb::Table::LocRib) => RouteTable::LocRib,
            Ok(pb::Table::AdjRibIn) => RouteTable::AdjRibIn(peer_addr()?),
            Ok(pb::Table::AdjRibOut) => RouteTable::AdjRibOut(peer_addr()?),
            Err(_) => return Err(Status::invalid_argument("table: unknown value")),
        };
        let prefix = if prefix.is_empty() {
            None
        } else {
            Some(parse_prefixes(std::slice::from_ref(&prefix))?[0])
        };
        let routes = self
            .speaker
            .routes(RouteQuery { table, prefix })
            .await
            .map_err(unavailable)?;
        Ok(Response::new(pb::ListRoutesReply {
            routes: routes.into_iter().map(convert::route).collect(),
        }))
    }

    async fn originate(
        &self,
        req: Request<pb::OriginateRequest>,
    ) -> Result<Response<pb::OriginateReply>, Status> {
        let p = parse_prefixes(&req.into_inner().prefixes)?;
        self.speaker.originate(p).map_err(unavailable)?;
        Ok(Response::new(pb::OriginateReply {}))
    }

    async fn withdraw(
        &self,
        req: Request<pb::WithdrawRequest>,
    ) -> Result<Response<pb::WithdrawReply>, Status> {
        let p = parse_prefixes(&req.into_inner().prefixes)?;
        self.speaker.withdraw(p).map_err(unavailable)?;
        Ok(Response::new(pb::WithdrawReply {}))
    }

    type WatchStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

    async fn watch(
        &self,
        _: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let rx = self.speaker.subscribe();
        let s = BroadcastStream::new(rx).map(|r| {
            Ok(match r {
                Ok(e) => convert::event(e),
                Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                    pb::WatchEvent {
                        event: Some(pb::watch_event::Event::Lagged(n)),
                    }
                }
            })
        });
        Ok(Response::new(Box::pin(s)))
    }
}

/// Serves the control API on a unix socket (mode 0600) until the guard is dropped.
pub async fn serve_unix(speaker: Arc<Speaker>, path: &Path) -> std::io::Result<TaskGuard> {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let svc = BgpService::new(speaker).into_server();
    Ok(TaskGuard::spawn(async move {
        let r = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(UnixListenerStream::new(listener))
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "control API stopped");
        }
    }))
}
