//! Compiles our API (`proto/milvus/backup/v1`) and our client-side subset of the
//! Milvus proxy API (`proto/milvus/proto`), with a descriptor set for reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts are single-threaded at this point.
        unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    let well_known = protoc_bin_vendored::include_path()?;
    let well_known = well_known.to_str().ok_or("non-UTF-8 include path")?;
    let includes = ["proto", well_known];
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("backup_v1_descriptor.bin"))
        .compile_protos(&["proto/milvus/backup/v1/backup.proto"], &includes)?;

    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&["proto/milvus/proto/milvus.proto"], &includes)?;

    println!("cargo:rerun-if-changed=proto");
    for file in [
        "proto/milvus/backup/v1/backup.proto",
        "proto/milvus/proto/milvus.proto",
        "proto/milvus/proto/common.proto",
        "proto/milvus/proto/schema.proto",
    ] {
        println!("cargo:rerun-if-changed={file}");
    }
    Ok(())
}
