//! `nemascope-train resign`: a bundle checked with its own key is written
//! signed with a new one, manifest and model unchanged; a bundle that does
//! not verify is refused and nothing is written.

use std::process::Command;

#[test]
fn a_trusted_bundle_is_signed_anew_and_an_untrusted_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    nemascope_bundle::generate_keys(&dir.path().join("lab")).unwrap();
    let (key, public) = (dir.path().join("lab.key"), dir.path().join("lab.pub"));
    let resign = |public_key: &std::path::Path, out: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_nemascope-train"))
            .arg("resign")
            .arg("--bundle")
            .arg(models.join("bbbc010-worm"))
            .arg("--public-key")
            .arg(public_key)
            .arg("--key")
            .arg(&key)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };
    let out = dir.path().join("ours");
    let o = resign(&models.join("nemascope-dev.pub"), &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let read = |p: &std::path::Path| nemascope_bundle::read_public_key(p).unwrap();
    let ours = nemascope_bundle::Bundle::open(&out, &read(&public)).unwrap();
    let shipped = nemascope_bundle::Bundle::open(
        &models.join("bbbc010-worm"),
        &read(&models.join("nemascope-dev.pub")),
    )
    .unwrap();
    assert_eq!(ours.manifest, shipped.manifest);
    assert_eq!(ours.model, shipped.model);
    // Checked with the wrong key: refused, nothing written.
    let refused = dir.path().join("refused");
    let o = resign(&public, &refused);
    assert!(!o.status.success());
    assert!(!refused.exists());
}
