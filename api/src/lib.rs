//! Twill's resource model (group `networking.twill.dev`, version `v1`) and the `Datastore`
//! that stores it in etcd v3 or Kubernetes.
