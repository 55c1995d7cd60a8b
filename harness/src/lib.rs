//! Real processes and network namespaces on one machine: guards that remove what they made.
//!
//! # API summary (netns, process, wait — helper H3)
//!
//! ```text
//! netns::Netns::new(prefix) -> Result<Netns, NetnsError>   // "PREFIX-PID-N", lo up
//!   .name() / .path()                  // "/run/netns/NAME"
//!   .command(program) -> Command       // `ip netns exec NAME program` (add args, spawn)
//!   .exec(program, &[args]) -> Result<String>   // stdout; Err carries the stderr
//!   .ip(&[args]) -> Result<String>     // `ip -n NAME args...`
//!   .sysctl(key, value) / .enable_forwarding()  // ip_forward + ipv6 all.forwarding
//!   .add_addr(dev, "192.0.2.1/24" | "fd00::1/64")  // IPv6 with nodad
//!   .veth(&[my addrs], &peer_ns, &[peer addrs]) -> Result<Veth { name, peer_name }>
//!   .veth_named(name, &[addrs], &peer_ns, peer_name, &[addrs])   // names <= 15 bytes
//!       (peer_ns may be self: a veth pair as a stand-in uplink; there is no `dummy`)
//!   .run(|| ...) -> Result<R>          // closure on a fresh thread setns'd into NAME
//!   .block_on(|| async {...}) -> Result<T>  // same, on a current-thread tokio runtime
//!   .pids() -> Vec<i32>
//!   Drop: SIGKILLs the processes still inside (by PID), then `ip netns del NAME`.
//! netns::NsRuntime::start(&ns) -> Result<NsRuntime>  // tokio runtime on a thread in NAME
//!   .spawn(fut) -> JoinHandle   .run(fut).await -> Result<Output>   .handle()
//!   Sockets opened by its tasks stay in NAME. Drop cancels the tasks, joins the thread.
//! process::ChildGuard::spawn(name, Command) / ::spawn_in(&ns, name, program, &[args])
//!   .pid() .log() .log_tail(n) .log_path() .is_running() .try_status()
//!   .signal(Signal::SIGHUP) .wait_timeout(d) .stop() (SIGTERM, grace 3 s, SIGKILL)
//!   .kill() .with_grace(d)
//!   stdout+stderr -> a log in a temp dir. Drop: stop + reap; if the thread is panicking
//!   the log is kept on disk and its tail printed to stderr.
//! wait::wait_until(what, timeout, interval, || bool | Option<T> | Result<T, E>)
//!     -> Result<T, WaitError>             // bounded in time and in number of polls
//! wait::wait_until_async(what, timeout, interval, || async { ... }).await
//!   WaitError { what, elapsed, polls, last } displays "timed out ... waiting for WHAT; last: ERR"
//! kube_fake::FakeApiServer::new(extra kinds) / ::start(kinds) -> (kube::Client, server)
//!   .client() / .client_as(Some(token))   // in-process kube clients (tower-test)
//!   .serve(addr).await -> HttpServer { .url() }   // plain HTTP for real binaries;
//!       kube_fake::kubeconfig_yaml(url, token, namespace) points a kubeconfig at it
//!   .put(json) / .remove(..) / .object(..) / .objects(..)   // set up the world directly
//!   .compact() (next watch from before: 410) .close_watches() .fail_next(m, plural, code, n)
//!   .exchanges() (verb, group, resource, user, status) .violations()
//! kube_real::RealApiServer::start() -> Result<RealApiServer>   // blocking; etcd + a real
//!       kube-apiserver v1.20.2 (scripts/kube-apiserver.sh) on free ports of 127.0.0.1 in
//!       the calling thread's netns; openssl certs, RBAC, a system:masters admin token
//!   .url() .ca_cert() .admin_token() .kubeconfig_yaml(token, ns) .write_kubeconfig(..)
//!   .admin_client().await .client_with_token(t).await .token_for(&admin, ns, sa).await
//!   Drop: SIGTERM/SIGKILL the apiserver by PID, kill etcd, remove the temp dir.
//! kube_real::apply(&client, &json).await   // server-side apply of any kind (discovery)
//! ```

pub mod etcd;
pub mod kube_fake;
pub mod kube_real;
pub mod netns;
pub mod process;
pub mod wait;
