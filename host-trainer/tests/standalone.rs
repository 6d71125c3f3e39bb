//! The built trainer starts on its own: it finds libtorch through the rpath
//! its build script sets, with no `LD_LIBRARY_PATH` (which `cargo xtask`
//! and `cargo test` set, hiding a binary that cannot start by itself).

#[test]
fn the_binary_finds_libtorch_without_ld_library_path() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nemascope-train"))
        .arg("--help")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Usage"),
        "{err}"
    );
}
