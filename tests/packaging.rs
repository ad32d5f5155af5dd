//! The files the packages ship: the man pages and shell completions committed under `packaging/`
//! are what the binaries print with `--generate` (regenerate them with
//! `JAM_BLESS=1 cargo test --test packaging`), and the sysctl file reserves the default port.

use std::path::{Path, PathBuf};
use std::process::Command;

const JAMD: &str = env!("CARGO_BIN_EXE_jamd");
const JAM: &str = env!("CARGO_BIN_EXE_jam");

fn packaging(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging")
        .join(file)
}

fn generate(program: &str, what: &str) -> String {
    let output = Command::new(program)
        .args(["--generate", what])
        .output()
        .expect("run");
    assert!(output.status.success(), "{program} --generate {what}");
    String::from_utf8(output.stdout).expect("utf-8")
}

#[test]
fn committed_man_pages_and_completions_match_the_binaries() {
    let bless = std::env::var_os("JAM_BLESS").is_some();
    let mut stale = Vec::new();
    for (program, name) in [(JAMD, "jamd"), (JAM, "jam")] {
        for (what, file) in [
            ("man", format!("man/{name}.1")),
            ("complete-bash", format!("completions/{name}.bash")),
            ("complete-zsh", format!("completions/_{name}")),
            ("complete-fish", format!("completions/{name}.fish")),
        ] {
            let path = packaging(&file);
            let want = generate(program, what);
            if std::fs::read_to_string(&path).ok().as_deref() == Some(want.as_str()) {
                continue;
            }
            if bless {
                std::fs::write(&path, want).expect("write");
            } else {
                stale.push(file);
            }
        }
    }
    assert!(
        stale.is_empty(),
        "packaging/{stale:?} differ from `--generate`: the flags changed. \
         Regenerate with: JAM_BLESS=1 cargo test --test packaging"
    );
}

#[test]
fn the_sysctl_file_reserves_the_default_port_and_says_the_list_is_one() {
    let text = std::fs::read_to_string(packaging("sysctl/50-jamd.conf")).expect("read");
    let settings: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        settings,
        [format!(
            "net.ipv4.ip_local_reserved_ports = {}",
            jam::config::DEFAULT_PORT
        )]
    );
    assert!(text.contains("one list"), "{text}");
    assert_eq!(
        Path::new(jam::ports::SYSCTL_FILE).file_name(),
        Some(std::ffi::OsStr::new("50-jamd.conf"))
    );
}
