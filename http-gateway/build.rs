//! Compiles the gRPC service of `proto/sluice/api.proto` (docs/grpc.md) with protox, as
//! `proto/build.rs` compiles the messages, so no `protoc` is needed. Only the service is
//! generated here: every message is `sluice_proto`'s, so the bus crates stay free of tonic.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let include = "../proto/proto";
    for f in [
        "sluice/api.proto",
        "sluice/bus.proto",
        "sluice/events.proto",
    ] {
        println!("cargo:rerun-if-changed={include}/{f}");
    }
    let descriptors = protox::compile(["sluice/api.proto"], [include])?;
    tonic_prost_build::configure()
        .build_server(true)
        // The client (generic over any transport) is for the gateway's own tests.
        .build_client(true)
        .build_transport(false)
        .extern_path(".sluice.v1", "::sluice_proto::v1")
        .compile_fds(descriptors)?;
    Ok(())
}
