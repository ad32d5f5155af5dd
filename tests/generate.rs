//! `--generate`: the shell completions and man pages both binaries print from their clap
//! definitions. The bash scripts are loaded and run by a real bash; the man pages are checked
//! against `--help` (every long flag is documented) and rendered by groff with warnings on.

mod common;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use common::require_tool;

const JAMD: &str = env!("CARGO_BIN_EXE_jamd");
const JAM: &str = env!("CARGO_BIN_EXE_jam");

fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn generate(program: &str, what: &str) -> String {
    String::from_utf8(run(program, &["--generate", what]).stdout).expect("utf-8")
}

/// Sources the bash completion script of `program`, then asks it to complete `words` (the last
/// one being completed) and returns the candidates.
fn bash_complete(program: &str, name: &str, words: &[&str]) -> Vec<String> {
    let script = format!(
        r#"set -e
source <("$PROGRAM" --generate complete-bash)
spec=$(complete -p {name})
function=$(sed -E 's/.*-F ([^ ]+).*/\1/' <<<"$spec")
COMP_WORDS=({words})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
"$function" {name} "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}"
"#,
        words = words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let output = Command::new("bash")
        .args(["-c", &script])
        .env("PROGRAM", program)
        .output()
        .expect("bash");
    assert!(
        output.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn bash_completion_registers_for_each_binary() {
    for (program, name) in [(JAMD, "jamd"), (JAM, "jam")] {
        let script =
            format!("source <(\"$PROGRAM\" --generate complete-bash) && complete -p {name}");
        let output = Command::new("bash")
            .args(["-c", &script])
            .env("PROGRAM", program)
            .output()
            .expect("bash");
        let spec = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            spec.starts_with("complete ") && spec.trim_end().ends_with(name),
            "{spec}"
        );
    }
}

#[test]
fn bash_completion_completes_flags_subcommands_and_values() {
    let candidates = bash_complete(JAMD, "jamd", &["jamd", "--log-fo"]);
    assert_eq!(candidates, ["--log-format"]);
    let candidates = bash_complete(JAMD, "jamd", &["jamd", "--log-format", ""]);
    assert_eq!(candidates, ["text", "json"]);

    let candidates = bash_complete(JAM, "jam", &["jam", "of"]);
    assert_eq!(candidates, ["offset"]);
    let candidates = bash_complete(JAM, "jam", &["jam", "time", "--ti"]);
    assert_eq!(candidates, ["--timeout"]);
}

#[test]
fn other_shells_get_a_script_naming_the_binary() {
    for what in [
        "complete-zsh",
        "complete-fish",
        "complete-elvish",
        "complete-powershell",
    ] {
        for (program, name) in [(JAMD, "jamd"), (JAM, "jam")] {
            let script = generate(program, what);
            assert!(script.contains(name), "{what} for {name}: {script}");
            assert!(
                script.contains("generate"),
                "{what} for {name} lacks --generate"
            );
        }
    }
}

/// The long flags (`--name`) that `help` mentions.
fn long_flags(help: &str) -> BTreeSet<String> {
    help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.len() > 2 && w.starts_with("--") && !w.starts_with("---"))
        .map(str::to_string)
        .collect()
}

/// A man page as plain-ish text: roff's escaped hyphens made plain. Checks that it has one
/// title line, the first after groff's preamble.
fn man_text(program: &str) -> String {
    let page = generate(program, "man");
    let requests: Vec<&str> = page
        .lines()
        .filter(|l| !l.starts_with(".ie ") && !l.starts_with(".el "))
        .collect();
    assert!(
        requests[0].starts_with(".TH "),
        "{}",
        &page[..page.len().min(300)]
    );
    assert_eq!(page.matches("\n.TH ").count(), 1, "one title");
    page.replace("\\-", "-")
}

#[test]
fn jamd_man_page_documents_every_long_flag() {
    let page = man_text(JAMD);
    assert!(page.contains("\n.TH jamd 1 "), "{}", &page[..200]);
    let help = String::from_utf8(run(JAMD, &["--help"]).stdout).expect("utf-8");
    let flags = long_flags(&help);
    assert!(
        flags.contains("--listen") && flags.contains("--generate"),
        "{flags:?}"
    );
    for flag in flags {
        assert!(page.contains(&flag), "the man page lacks {flag}");
    }
    // Environment variables are part of the interface too.
    assert!(page.contains("JAMD_LISTEN"), "no environment variables");
    for section in [
        ".SH \"EXIT STATUS\"",
        ".SH ENVIRONMENT",
        ".SH \"SIGNALS\"",
        ".SH \"EXAMPLES\"",
        ".SH \"SEE ALSO\"",
    ] {
        assert!(page.contains(section), "no {section}");
    }
    assert!(page.contains("\\fBJAMD_IDLE_TIMEOUT\\fR\nsets \\fB--idle-timeout\\fR"));
    assert!(
        !page.contains("jamd - jamd:"),
        "NAME repeats the name: {}",
        &page[..400]
    );
    assert!(!page.contains('`'), "backticks shown literally");
}

#[test]
fn jam_man_page_documents_every_subcommand_and_its_long_flags() {
    let page = man_text(JAM);
    assert!(page.contains("\n.TH jam 1 "), "{}", &page[..200]);
    let mut flags = long_flags(&String::from_utf8(run(JAM, &["--help"]).stdout).expect("utf-8"));
    for sub in ["time", "shell", "offset", "bench"] {
        assert!(
            page.contains(&format!(".SH \"JAM {}\"", sub.to_uppercase())),
            "no section for jam {sub}"
        );
        let help = String::from_utf8(run(JAM, &[sub, "--help"]).stdout).expect("utf-8");
        flags.extend(long_flags(&help));
    }
    assert!(flags.contains("--connect-per-request"), "{flags:?}");
    for flag in flags {
        assert!(page.contains(&flag), "the man page lacks {flag}");
    }
    assert!(page.contains("Exit codes"), "no exit codes");
    assert!(page.contains(".SH \"EXIT STATUS\""), "no EXIT STATUS");
    assert!(!page.contains("jam - jam:"), "NAME repeats the name");
    // `jam check`'s cases, generated from the catalogue.
    for case in &jam::check::CATALOGUE {
        assert!(
            page.contains(case.id.as_str()),
            "the man page lacks case {}",
            case.id
        );
    }
    assert!(!page.contains('`'), "backticks shown literally");
}

#[test]
fn man_pages_render_without_groff_warnings() {
    if !require_tool("groff", "groff-base") {
        return;
    }
    for program in [JAMD, JAM] {
        let page = run(program, &["--generate", "man"]).stdout;
        let mut groff = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("groff");
        groff
            .stdin
            .take()
            .expect("stdin")
            .write_all(&page)
            .expect("feed groff");
        let output = groff.wait_with_output().expect("groff");
        let warnings = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && warnings.is_empty(),
            "{program}: {warnings}"
        );
    }
}

#[test]
fn generate_is_not_mixed_with_a_subcommand() {
    let output = Command::new(JAM)
        .args(["--generate", "man", "time"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
}
