// Links libdsv4 as pkg-config describes it (installed, or the build tree's pkgconfig/dsv4.pc
// through PKG_CONFIG_PATH). No crates: the pkg-config program is run directly.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    let out = Command::new("pkg-config")
        .args(["--libs", "dsv4"])
        .output()
        .expect("pkg-config is not installed");
    if !out.status.success() {
        panic!(
            "pkg-config cannot find dsv4: install it, or set PKG_CONFIG_PATH=<build>/pkgconfig\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for flag in String::from_utf8(out.stdout).unwrap().split_whitespace() {
        if let Some(dir) = flag.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        } else if let Some(lib) = flag.strip_prefix("-l") {
            println!("cargo:rustc-link-lib=dylib={lib}");
        } else if flag.starts_with("-Wl,") {
            println!("cargo:rustc-link-arg={flag}");
        }
    }
}
