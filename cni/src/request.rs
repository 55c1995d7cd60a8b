//! One CNI invocation as a domain type, and its conversion to and from `agent.proto`.
//!
//! Conversions destructure exhaustively, so a new protobuf field breaks the build here
//! instead of being silently dropped.

use twill_proto::agent as pb;

use crate::env::{CniArgs, CniEnv};
use crate::spec::{CniError, CniVersion, code};

/// What the shim forwards to felix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniRequest {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: CniArgs,
    /// The configuration exactly as read from stdin.
    pub config: Vec<u8>,
    pub cni_version: CniVersion,
}

impl CniRequest {
    pub fn new(env: &CniEnv, config: Vec<u8>, cni_version: CniVersion) -> CniRequest {
        CniRequest {
            container_id: env.container_id.clone(),
            netns: env.netns.clone(),
            ifname: env.ifname.clone(),
            args: env.args.clone(),
            config,
            cni_version,
        }
    }
}

/// felix's answer: `Ok(Some(json))` is printed, `Ok(None)` means success with no output.
pub type CniOutcome = Result<Option<String>, CniError>;

impl From<CniRequest> for pb::CniRequest {
    fn from(r: CniRequest) -> pb::CniRequest {
        let CniRequest {
            container_id,
            netns,
            ifname,
            args:
                CniArgs {
                    k8s_pod_namespace,
                    k8s_pod_name,
                    k8s_pod_infra_container_id,
                    other,
                },
            config,
            cni_version,
        } = r;
        pb::CniRequest {
            container_id,
            netns,
            ifname,
            k8s_pod_namespace,
            k8s_pod_name,
            k8s_pod_infra_container_id,
            other_args: other
                .into_iter()
                .map(|(key, value)| pb::CniArg { key, value })
                .collect(),
            config,
            cni_version: cni_version.as_str().to_string(),
        }
    }
}

impl TryFrom<pb::CniRequest> for CniRequest {
    type Error = CniError;

    fn try_from(r: pb::CniRequest) -> Result<CniRequest, CniError> {
        let pb::CniRequest {
            container_id,
            netns,
            ifname,
            k8s_pod_namespace,
            k8s_pod_name,
            k8s_pod_infra_container_id,
            other_args,
            config,
            cni_version,
        } = r;
        let cni_version = CniVersion::parse(&cni_version).ok_or_else(|| {
            CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!("cniVersion {cni_version:?} is not supported"),
            )
        })?;
        Ok(CniRequest {
            container_id,
            netns,
            ifname,
            args: CniArgs {
                k8s_pod_namespace,
                k8s_pod_name,
                k8s_pod_infra_container_id,
                other: other_args
                    .into_iter()
                    .map(|pb::CniArg { key, value }| (key, value))
                    .collect(),
            },
            config,
            cni_version,
        })
    }
}

/// Encodes felix's answer.
pub fn outcome_to_pb(outcome: CniOutcome) -> pb::CniReply {
    pb::CniReply {
        outcome: match outcome {
            Ok(None) => None,
            Ok(Some(json)) => Some(pb::cni_reply::Outcome::ResultJson(json)),
            Err(CniError { code, msg, details }) => {
                Some(pb::cni_reply::Outcome::Error(pb::CniError {
                    code,
                    msg,
                    details,
                }))
            }
        },
    }
}

/// Decodes felix's answer.
pub fn outcome_from_pb(reply: pb::CniReply) -> CniOutcome {
    let pb::CniReply { outcome } = reply;
    match outcome {
        None => Ok(None),
        Some(pb::cni_reply::Outcome::ResultJson(json)) if json.is_empty() => Ok(None),
        Some(pb::cni_reply::Outcome::ResultJson(json)) => Ok(Some(json)),
        Some(pb::cni_reply::Outcome::Error(pb::CniError { code, msg, details })) => {
            Err(CniError { code, msg, details })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_through_protobuf() {
        let req = CniRequest {
            container_id: "c1".into(),
            netns: "/var/run/netns/p".into(),
            ifname: "eth0".into(),
            args: CniArgs {
                k8s_pod_namespace: "ns".into(),
                k8s_pod_name: "p".into(),
                k8s_pod_infra_container_id: "c1".into(),
                other: vec![("IgnoreUnknown".into(), "1".into())],
            },
            config: b"{}".to_vec(),
            cni_version: CniVersion::V031,
        };
        let back = CniRequest::try_from(pb::CniRequest::from(req.clone())).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn outcomes_round_trip() {
        for o in [
            Ok(None),
            Ok(Some("{}".to_string())),
            Err(CniError::new(11, "later").with_details("d")),
        ] {
            assert_eq!(outcome_from_pb(outcome_to_pb(o.clone())), o);
        }
    }
}
