// Shared by the build scripts of every package that links libtorch (trainer, tests): `include!`d.
//
// Two things plain tch linking gets wrong for us:
// 1. the linker's --as-needed drops libtorch_cuda.so (nothing references it by symbol), and CUDA is
//    then silently unavailable at run time; we force it in with --no-as-needed;
// 2. libtorch's directory is not on the loader path; we add it as an rpath so binaries and tests run
//    without LD_LIBRARY_PATH (on another machine, set LD_LIBRARY_PATH to its torch/lib instead).
fn link_libtorch() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else { return };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-L{lib}");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
