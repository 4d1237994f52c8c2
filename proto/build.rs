//! Compiles `driftdb/v1/*.proto` with protox (pure Rust, no protoc needed) and generates the
//! tonic client and server code, plus the messages of `prometheus/remote.proto` (the
//! remote-read subset the HTTP server speaks; no service).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "driftdb/v1/models.proto",
        "driftdb/v1/ingest.proto",
        "driftdb/v1/query.proto",
        "driftdb/v1/alerts.proto",
        "driftdb/v1/admin.proto",
        "prometheus/remote.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::codec::SliceCodec")
        .compile_fds(fds)?;
    Ok(())
}
