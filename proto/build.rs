//! Compiles `proto/*.proto` with protox (a pure-Rust protobuf compiler), so building Sluice
//! never needs `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // api.proto's service is compiled by the gateway (its build.rs, with tonic); here only
    // its messages, so that every client has them without tonic.
    let files = [
        "proto/sluice/events.proto",
        "proto/sluice/bus.proto",
        "proto/sluice/api.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
