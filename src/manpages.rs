//! Man pages generated from the command-line definitions (clap_mangen), so they cannot fall
//! behind the flags: `anomalyd man DIR` and `anomalyctl man DIR` write the program's page and one
//! page per subcommand (`anomalyctl-verify(1)`, as git and cargo do), which scripts/install and
//! the Debian package install. anomalyd.toml(5) is written by hand (man/anomalyd.toml.5).

use std::path::{Path, PathBuf};

/// Writes `command`'s page and its subcommands' (recursively, hidden ones left out) into `dir`
/// as `NAME.SECTION`; returns the files written.
pub fn write_all(
    command: clap::Command,
    section: &str,
    dir: &Path,
) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let command = command.disable_help_subcommand(true);
    write_one(command, section, dir, &mut written)?;
    Ok(written)
}

fn write_one(
    command: clap::Command,
    section: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let name = command.get_name().to_owned();
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .section(section)
        .render(&mut page)?;
    let path = dir.join(format!("{name}.{section}"));
    std::fs::write(&path, page)?;
    written.push(path);
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let sub = sub.clone().name(format!("{name}-{}", sub.get_name()));
        write_one(sub, section, dir, written)?;
    }
    Ok(())
}

/// Prints `command`'s own page (no subcommand pages) on stdout.
pub fn print(command: clap::Command, section: &str) -> std::io::Result<()> {
    clap_mangen::Man::new(command)
        .section(section)
        .render(&mut std::io::stdout())
}
