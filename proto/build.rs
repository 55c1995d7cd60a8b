//! Compiles `proto/*.proto` with Debian's `protoc` (package `protobuf-compiler`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/agent.proto", "proto/bgp.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure().compile_protos(&protos, &["proto"])?;
    Ok(())
}
