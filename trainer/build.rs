include!("link_libtorch.rs");

fn main() {
    link_libtorch();
    compile_autocast_shim();
}

/// Builds csrc/autocast.cpp (bf16 autocast, see src/autocast.rs) and csrc/grad.cpp (gradients in
/// the optimiser's flat buffer, see src/optim.rs) against the headers of the libtorch that
/// torch-sys links. Without them (torch-sys reports no library directory) the shims are left out:
/// `train.bf16` reports that it is unavailable, and the optimiser gathers gradients by copying.
fn compile_autocast_shim() {
    println!("cargo::rustc-check-cfg=cfg(fer_autocast)");
    println!("cargo:rerun-if-changed=csrc/autocast.cpp");
    println!("cargo:rerun-if-changed=csrc/grad.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else { return };
    let include = std::path::Path::new(&lib).parent().map(|torch| torch.join("include"));
    let Some(include) = include.filter(|i| i.join("ATen/autocast_mode.h").exists()) else { return };
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .std("c++17")
        .include(&include)
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .warnings(false)
        .file("csrc/autocast.cpp")
        .file("csrc/grad.cpp")
        .compile("fer_autocast");
    println!("cargo:rustc-cfg=fer_autocast");
}
