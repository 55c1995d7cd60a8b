//! The shim's side of `agent.proto`: one gRPC call to felix over its unix socket, bounded
//! by a connect deadline and a request deadline.
//!
//! Never waits without a deadline: an unreachable or stuck felix becomes code 11 ("try
//! again later") so the runtime retries instead of hanging a pod start.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Endpoint, Uri};
use twill_proto::agent as pb;
use twill_proto::agent::agent_client::AgentClient;

use twill_cni::request::{CniOutcome, CniRequest, outcome_from_pb};
use twill_cni::spec::{CniError, Command, code};

/// Connects to felix's agent socket; `connect_timeout` bounds the whole handshake.
pub async fn connect(
    socket: &Path,
    connect_timeout: Duration,
) -> Result<AgentClient<tonic::transport::Channel>, CniError> {
    let path: PathBuf = socket.to_path_buf();
    let unreachable = |why: String| {
        CniError::new(
            code::TRY_AGAIN_LATER,
            format!("twill-felix is not reachable at {}", socket.display()),
        )
        .with_details(why)
    };
    // The URI is required by tonic but unused: the connector always dials the socket.
    let endpoint = Endpoint::from_static("http://[::1]:50051").connect_timeout(connect_timeout);
    let connecting = endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
    }));
    // HTTP/2 does not wait for the server's preface, so a socket whose listener is stuck
    // "connects"; a Version round trip within the deadline proves felix is serving.
    let probe = async {
        let mut client = AgentClient::new(
            connecting
                .await
                .map_err(|e| format!("{e}: {:?}", std::error::Error::source(&e)))?,
        );
        client
            .version(pb::VersionRequest {})
            .await
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
        Ok::<_, String>(client)
    };
    match tokio::time::timeout(connect_timeout, probe).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(why)) => Err(unreachable(why)),
        Err(_) => Err(unreachable(format!("no answer within {connect_timeout:?}"))),
    }
}

/// Sends one request for `command` and waits at most `timeout` for felix's answer.
pub async fn call(
    socket: &Path,
    command: Command,
    request: CniRequest,
    connect_timeout: Duration,
    timeout: Duration,
) -> CniOutcome {
    let mut client = connect(socket, connect_timeout).await?;
    let req = pb::CniRequest::from(request);
    let call = async {
        match command {
            Command::Add => client.add(req).await,
            Command::Del => client.del(req).await,
            Command::Check => client.check(req).await,
            Command::Gc => client.gc(req).await,
            Command::Status => client.status(req).await,
            Command::Version => Err(tonic::Status::invalid_argument(
                "VERSION is answered by the shim",
            )),
        }
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(reply)) => outcome_from_pb(reply.into_inner()),
        Ok(Err(status)) => Err(status_to_error(&status)),
        Err(_) => Err(CniError::new(
            code::TRY_AGAIN_LATER,
            format!(
                "twill-felix did not answer {} within {timeout:?}",
                command.as_str()
            ),
        )),
    }
}

/// gRPC failures are transport trouble from the runtime's point of view: retry later,
/// except a request felix says it cannot understand.
fn status_to_error(status: &tonic::Status) -> CniError {
    let code = match status.code() {
        tonic::Code::InvalidArgument => code::INVALID_CONFIG,
        tonic::Code::Unimplemented => code::INCOMPATIBLE_VERSION,
        _ => code::TRY_AGAIN_LATER,
    };
    CniError::new(code, "twill-felix failed the request").with_details(format!(
        "{:?}: {}",
        status.code(),
        status.message()
    ))
}
