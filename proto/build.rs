//! Compiles the `.proto` files with `protox` (pure Rust, no system `protoc`) and generates
//! prost messages and tonic services from the resulting descriptor set; the services use
//! `codec::StrictCodec`, which answers undecodable messages with INVALID_ARGUMENT.

use prost::Message;

const PROTOS: &[&str] = &["penwatch/v1/telemetry.proto", "penwatch/v1/api.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["."])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("penwatch_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .codec_path("crate::codec::StrictCodec")
        .compile_fds(fds)?;
    Ok(())
}
