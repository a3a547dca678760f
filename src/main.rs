fn main() -> std::process::ExitCode {
    k3rs::cli::main()
}
