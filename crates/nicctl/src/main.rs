//! `nicctl`: see the library's documentation for its commands.

fn main() -> std::process::ExitCode {
    nicctl::main("nicctl")
}
