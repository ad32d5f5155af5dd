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

/// Writes `what` for `cmd`, a binary's complete clap command, to `out`.
pub fn write(what: Generate, mut cmd: clap::Command, out: &mut dyn Write) -> io::Result<()> {
    let shell = match what {
        Generate::Man => return man(cmd, out),
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
/// synopsis and options, instead of clap_mangen's list of `jam-time(1)`-style pages: `man jam`
/// then shows every flag, and there is a single file to install.
fn man(cmd: clap::Command, out: &mut dyn Write) -> io::Result<()> {
    let mut cmd = cmd.disable_help_subcommand(true);
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
    }
    if cmd.get_after_help().is_some() || cmd.get_after_long_help().is_some() {
        page.render_extra_section(&mut body)?;
    }
    page.render_version_section(&mut body)?;
    for line in body.split_inclusive(|&b| b == b'\n') {
        if !line.starts_with(b".ie \\n(.g .ds Aq") && !line.starts_with(b".el .ds Aq") {
            out.write_all(line)?;
        }
    }
    Ok(())
}
