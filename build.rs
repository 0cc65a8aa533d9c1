//! Adds an rpath to libtorch so binaries, tests and examples run without `LD_LIBRARY_PATH`,
//! and links libtorch_cuda explicitly when the `cuda` feature is on (the linker drops it
//! otherwise, since nothing references its symbols directly).
use std::env;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(libtorch) = env::var("LIBTORCH") {
        let lib = std::path::Path::new(&libtorch).join("lib");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
    if env::var_os("CARGO_FEATURE_CUDA").is_some() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
