//! `--generate`: shell completions and man pages written from the binaries' own clap definitions,
//! so they never drift from the flags (`jamd --generate man > jamd.1`).

use std::io::{self, Write};

use clap_complete::Shell;
use clap_mangen::Man;

/// What `--generate` writes to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Generate {
    /// The man page (roff), section 1.
    Man,
    /// A bash completion script.
    CompleteBash,
    /// A zsh completion script.
    CompleteZsh,
    /// A fish completion script.
    CompleteFish,
    /// An elvish completion script.
    CompleteElvish,
    /// A PowerShell completion script.
    CompletePowershell,
}

/// A man page section that clap's definitions do not hold: its title and its paragraphs (plain
/// text; a paragraph that starts with two spaces is shown as written, for commands).
#[derive(Debug, Clone, Copy)]
pub struct Section {
    /// The title, e.g. `EXAMPLES`.
    pub title: &'static str,
    /// Its paragraphs.
    pub paragraphs: &'static [&'static str],
}

/// Writes `what` for `cmd`, a binary's complete clap command, to `out`; a man page gets `extra`
/// sections after the generated ones (EXIT STATUS, ENVIRONMENT and the subcommands' notes are
/// generated).
pub fn write(
    what: Generate,
    mut cmd: clap::Command,
    extra: &[Section],
    out: &mut dyn Write,
) -> io::Result<()> {
    let shell = match what {
        Generate::Man => return man(cmd, extra, out),
        Generate::CompleteBash => Shell::Bash,
        Generate::CompleteZsh => Shell::Zsh,
        Generate::CompleteFish => Shell::Fish,
        Generate::CompleteElvish => Shell::Elvish,
        Generate::CompletePowershell => Shell::PowerShell,
    };
    let name = cmd.get_name().to_string();
    // The generators panic on a failed write; a buffer turns `| head` into an error instead.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    out.write_all(&script)
}

/// One page per binary. A command with subcommands gets a section per subcommand with its
/// synopsis, options and notes (`jam check`'s cases), instead of clap_mangen's list of
/// `jam-time(1)`-style pages: `man jam` then shows every flag, and there is a single file to
/// install.
fn man(cmd: clap::Command, extra: &[Section], out: &mut dyn Write) -> io::Result<()> {
    let mut cmd = cmd.disable_help_subcommand(true);
    let name = cmd.get_name().to_string();
    // `--help` starts with "jam: …"; NAME would say "jam \- jam: …".
    if let Some(about) = cmd.get_about().map(ToString::to_string) {
        let about = about
            .strip_prefix(&format!("{name}: "))
            .unwrap_or(&about)
            .to_string();
        cmd = cmd.about(about);
    }
    // Fills in the subcommands' binary names (`jam time`) for their synopses.
    cmd.build();
    let page = Man::new(cmd.clone());
    // Each render starts with the same groff preamble; the title's copy is the one kept.
    page.render_title(out)?;
    let mut body = Vec::new();
    page.render_name_section(&mut body)?;
    page.render_synopsis_section(&mut body)?;
    page.render_description_section(&mut body)?;
    page.render_options_section(&mut body)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_bin_name().unwrap_or_else(|| sub.get_name());
        writeln!(body, ".SH \"{}\"", name.to_uppercase())?;
        let section = Man::new(sub.clone());
        let mut text = Vec::new();
        section.render_synopsis_section(&mut text)?;
        section.render_description_section(&mut text)?;
        section.render_options_section(&mut text)?;
        // Within a subcommand's section its parts are subsections.
        for line in text.split_inclusive(|&b| b == b'\n') {
            match line.strip_prefix(b".SH ") {
                Some(rest) => {
                    body.extend_from_slice(b".SS ");
                    body.extend_from_slice(rest);
                }
                None => body.extend_from_slice(line),
            }
        }
        if let Some(notes) = sub.get_after_help() {
            writeln!(body, ".SS NOTES")?;
            write_text(&mut body, &notes.to_string())?;
        }
    }
    if let Some(status) = cmd.get_after_help() {
        writeln!(body, ".SH \"EXIT STATUS\"")?;
        write_text(&mut body, &status.to_string())?;
    }
    let env: Vec<(String, String)> = cmd
        .get_arguments()
        .chain(cmd.get_subcommands().flat_map(|s| s.get_arguments()))
        .filter_map(|arg| {
            let var = arg.get_env()?.to_string_lossy().into_owned();
            let flag = arg.get_long()?;
            Some((var, format!("--{flag}")))
        })
        .collect();
    if !env.is_empty() {
        writeln!(body, ".SH ENVIRONMENT")?;
        for (var, flag) in env {
            writeln!(
                body,
                ".TP\n\\fB{}\\fR\nsets \\fB{}\\fR.",
                roff(&var),
                roff(&flag)
            )?;
        }
    }
    for section in extra {
        writeln!(body, ".SH \"{}\"", section.title)?;
        for paragraph in section.paragraphs {
            write_text(&mut body, paragraph)?;
        }
    }
    page.render_version_section(&mut body)?;
    for line in body.split_inclusive(|&b| b == b'\n') {
        if !line.starts_with(b".ie \\n(.g .ds Aq") && !line.starts_with(b".el .ds Aq") {
            out.write_all(&code_font(line))?;
        }
    }
    Ok(())
}

/// Plain text as roff paragraphs: a blank line starts a new one, lines that start with two spaces
/// are kept as written (commands, tables).
fn write_text(out: &mut Vec<u8>, text: &str) -> io::Result<()> {
    writeln!(out, ".PP")?;
    for line in text.lines() {
        if line.trim().is_empty() {
            writeln!(out, ".PP")?;
        } else if line.starts_with("  ") {
            writeln!(out, ".nf\n{}\n.fi", roff(line))?;
        } else {
            writeln!(out, "{}", roff(line))?;
        }
    }
    Ok(())
}

/// Text escaped for roff: backslashes, hyphens, and a leading dot or quote.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// `code` in help texts (a word between backticks) shown in bold, as man pages show commands,
/// instead of literal backticks. Request lines (`.TP`) are left alone.
fn code_font(line: &[u8]) -> Vec<u8> {
    if line.starts_with(b".") || !line.contains(&b'`') {
        return line.to_vec();
    }
    let (line, end) = match line.strip_suffix(b"\n") {
        Some(text) => (text, &b"\n"[..]),
        None => (line, &b""[..]),
    };
    let mut out = Vec::with_capacity(line.len() + 16);
    let mut open = false;
    for &b in line {
        if b == b'`' {
            out.extend_from_slice(if open { b"\\fR" } else { b"\\fB" });
            open = !open;
        } else {
            out.push(b);
        }
    }
    if open {
        out.extend_from_slice(b"\\fR");
    }
    out.extend_from_slice(end);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backticks_become_bold_and_roff_requests_are_left_alone() {
        assert_eq!(code_font(b"send `TIME` now\n"), b"send \\fBTIME\\fR now\n");
        assert_eq!(code_font(b".TP `x`\n"), b".TP `x`\n");
        assert_eq!(code_font(b"an `open\n"), b"an \\fBopen\\fR\n");
        assert_eq!(roff(".x-y\\z"), "\\&.x\\-y\\ez");
    }
}
