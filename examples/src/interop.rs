//! What the tests that run third-party tools (the interop client scripts in
//! `examples/interop/`, the conformance suite, server-everything) share: where those tools are,
//! and what a client script is asked to do. The scripts are written in other languages, so
//! both travel in environment variables.

/// The values of `names` (paths of tools `scripts/test.sh` installs into `.tools/`), or `None`
/// when one is unset: the test then says so and passes, unless `PORTCULLIS_REQUIRE_INTEROP`
/// is set, as `scripts/test.sh` does, where a missing tool is a failure.
pub fn tools_from_env<const N: usize>(names: [&str; N]) -> Option<[String; N]> {
    let values = names.map(|name| std::env::var(name).ok());
    if values.iter().all(Option::is_some) {
        return Some(values.map(Option::unwrap_or_default));
    }
    assert!(
        std::env::var_os("PORTCULLIS_REQUIRE_INTEROP").is_none(),
        "{names:?} are not all set (run ./scripts/test.sh)"
    );
    eprintln!("skipping: {names:?} are not set up");
    None
}

/// A granted tool to call, with its arguments (JSON), and a hidden one that must be refused.
#[derive(Debug, Clone, Copy)]
pub struct Calls {
    /// A tool the grant allows.
    pub allowed: &'static str,
    /// Its arguments, as JSON text.
    pub arguments: &'static str,
    /// A tool the grant does not allow.
    pub hidden: &'static str,
}

impl Calls {
    /// The expenses server's: `list_expenses`, and `delete_all_expenses` refused.
    pub const EXPENSES: Calls = Calls {
        allowed: "list_expenses",
        arguments: "{}",
        hidden: "delete_all_expenses",
    };

    /// server-everything's: `echo`, and `get-env` (the server's environment) refused.
    pub const EVERYTHING: Calls = Calls {
        allowed: "echo",
        arguments: r#"{"message": "through the gate"}"#,
        hidden: "get-env",
    };

    /// Hands these calls to a client script (`MCP_ALLOWED_TOOL`, `MCP_ALLOWED_ARGS`,
    /// `MCP_HIDDEN_TOOL`).
    pub fn apply(&self, command: &mut tokio::process::Command) {
        command
            .env("MCP_ALLOWED_TOOL", self.allowed)
            .env("MCP_ALLOWED_ARGS", self.arguments)
            .env("MCP_HIDDEN_TOOL", self.hidden);
    }
}
