//! Shell completions and the man page, generated from the clap definitions in `cli.rs` so they
//! can never disagree with `--help`. Pure: returns text, prints nothing.

use crate::cli::{Cli, Shell};
use crate::error::Result;
use clap::CommandFactory;

pub fn completions(shell: Shell) -> String {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "kasm-db", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

pub fn man_page() -> Result<String> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
