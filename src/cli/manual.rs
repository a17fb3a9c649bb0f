//! `completions SHELL` and `man`: generated from the same clap definition the parser uses, so they
//! cannot drift from the flags the binary accepts.

use std::io::Write;

use clap::CommandFactory;

use super::Cli;

/// Writes the completion script for `shell` to standard output.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut command = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut command, "ucan-gateway", &mut out);
    out.flush()?;
    Ok(())
}

/// Writes the manual page (roff) to standard output: the top-level page, then one section per
/// subcommand, so `man -l` shows every command's flags on one page.
pub fn man() -> anyhow::Result<()> {
    let command = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_mangen::Man::new(command.clone()).render(&mut out)?;
    // Walked with a stack: `key` has subcommands of its own.
    let mut stack: Vec<(String, clap::Command)> = command
        .get_subcommands()
        .map(|c| (format!("ucan-gateway {}", c.get_name()), c.clone()))
        .collect();
    stack.reverse();
    while let Some((name, sub)) = stack.pop() {
        writeln!(out, ".SH \"{}\"", name.to_uppercase())?;
        let about = sub.get_long_about().or(sub.get_about());
        if let Some(about) = about {
            writeln!(out, "{}", roff_escape(&about.to_string()))?;
        }
        let sub = sub.bin_name(name.clone());
        let page = clap_mangen::Man::new(sub.clone());
        page.render_synopsis_section(&mut out)?;
        page.render_options_section(&mut out)?;
        let mut children: Vec<_> = sub
            .get_subcommands()
            .map(|c| (format!("{name} {}", c.get_name()), c.clone()))
            .collect();
        children.reverse();
        stack.extend(children);
    }
    out.flush()?;
    Ok(())
}

/// Escapes text for a roff paragraph: a leading dot or quote would be read as a request.
fn roff_escape(text: &str) -> String {
    text.lines()
        .map(|line| {
            let line = line.replace('\\', "\\e");
            if line.starts_with(['.', '\'']) {
                format!("\\&{line}")
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
