//! Compiles the `.proto` files with `protox` (pure Rust, no system `protoc`) and generates
//! prost messages and tonic services from the resulting descriptor set: the messages and the
//! client with prost's codec, the server (in its own file, over the same messages) with
//! `codec::StrictCodec`, which answers undecodable requests with INVALID_ARGUMENT.

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
        .build_server(false)
        .compile_fds(fds.clone())?;
    let server_dir = out_dir.join("server");
    std::fs::create_dir_all(&server_dir)?;
    tonic_prost_build::configure()
        .build_client(false)
        .extern_path(".penwatch.v1", "crate::v1")
        .codec_path("crate::codec::StrictCodec")
        .out_dir(&server_dir)
        .compile_fds(fds)?;
    Ok(())
}
