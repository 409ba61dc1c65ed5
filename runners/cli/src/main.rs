fn main() -> std::process::ExitCode {
    rco_cli::main()
}
