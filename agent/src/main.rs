//! `connect`: parse, run, and turn any failure into one `[x] ` line and exit code 1.

fn main() -> std::process::ExitCode {
    connect::main()
}
