//! How commands talk to the shell: answers as JSON on stdout, and arguments that may be
//! `@FILE`.

use anyhow::Context;

/// Prints `value` as pretty JSON; a reader that stopped reading (`| head`) is not an error.
pub(super) fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    use std::io::Write;
    let text = serde_json::to_string_pretty(value)?;
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// The argument itself, or with a leading `@`, the contents of the file it names.
pub(super) fn read_arg(text: &str) -> anyhow::Result<String> {
    match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}")),
        None => Ok(text.to_owned()),
    }
}

/// The contents of `path`, for a flag naming a file.
pub(super) fn read_file(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}
