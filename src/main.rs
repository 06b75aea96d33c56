//! `vitrun`: the command line. Everything it does is in the library's front end,
//! [`vitrun::cli`].

fn main() -> std::process::ExitCode {
    vitrun::cli::main()
}
