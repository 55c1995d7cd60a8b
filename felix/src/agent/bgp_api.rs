//! The BGP control API (`twill.bgp.v1.Bgp`) on felix's agent socket, served by whichever
//! speaker is current: felix replaces its embedded speaker when the node's AS, router id,
//! listen port or cluster id change, and `twillctl` must not notice.

use std::sync::Arc;

use tokio::sync::RwLock;
use tonic::{Request, Response, Status};
use twill_bgpd::Speaker;
use twill_bgpd::control::BgpService;
use twill_proto::bgp as pb;
use twill_proto::bgp::bgp_server::{Bgp, BgpServer};

/// The current speaker, swappable.
pub type SpeakerSlot = Arc<RwLock<Arc<Speaker>>>;

/// Forwards every call to the current speaker's service.
#[derive(Clone, Debug)]
pub struct CurrentSpeakerApi {
    slot: SpeakerSlot,
}

impl CurrentSpeakerApi {
    pub fn new(slot: SpeakerSlot) -> Self {
        Self { slot }
    }

    pub fn into_server(self) -> BgpServer<Self> {
        BgpServer::new(self)
    }

    async fn current(&self) -> BgpService {
        BgpService::new(self.slot.read().await.clone())
    }
}

#[tonic::async_trait]
impl Bgp for CurrentSpeakerApi {
    async fn list_peers(
        &self,
        req: Request<pb::ListPeersRequest>,
    ) -> Result<Response<pb::ListPeersReply>, Status> {
        self.current().await.list_peers(req).await
    }

    async fn list_routes(
        &self,
        req: Request<pb::ListRoutesRequest>,
    ) -> Result<Response<pb::ListRoutesReply>, Status> {
        self.current().await.list_routes(req).await
    }

    async fn originate(
        &self,
        req: Request<pb::OriginateRequest>,
    ) -> Result<Response<pb::OriginateReply>, Status> {
        self.current().await.originate(req).await
    }

    async fn withdraw(
        &self,
        req: Request<pb::WithdrawRequest>,
    ) -> Result<Response<pb::WithdrawReply>, Status> {
        self.current().await.withdraw(req).await
    }

    type WatchStream = <BgpService as Bgp>::WatchStream;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.current().await.watch(req).await
    }
}
