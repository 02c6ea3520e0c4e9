//! Compiles `proto/*.proto` with protox (a pure-Rust protobuf compiler), so building Sluice
//! never needs `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/sluice/events.proto", "proto/sluice/bus.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
