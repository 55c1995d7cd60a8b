# syntax=docker/dockerfile:1
# One image carrying every Twill binary: twill-felix (node agent), twill (CNI plugin, copied
# onto the host by the chart's init container), twill-ipam-controller, twill-bgpd and
# twillctl (also as the kubectl plugin kubectl-twill).
#
#   docker build -t twill:dev .

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The cache mounts keep the registry and the target dir between builds, so the binaries
# are copied out of the target dir inside the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
      -p twill-cni-plugin -p twill-felix -p twill-ipam -p twill-bgpd -p twillctl --bins \
 && mkdir -p /out \
 && cp target/release/twill target/release/twill-felix target/release/twill-ipam-controller \
       target/release/twill-bgpd target/release/twillctl /out/

FROM debian:${DEBIAN_RELEASE}-slim
# What felix drives on the host: routes and links (iproute2), the policy dataplanes
# (nftables, iptables, ipset) and conntrack cleanup; CA roots for the API server and etcd.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates iproute2 nftables iptables ipset conntrack \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /usr/local/bin/
RUN ln -s twillctl /usr/local/bin/kubectl-twill
# The chart sets each container's command; this default is the node agent.
CMD ["twill-felix"]
