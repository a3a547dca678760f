fn main() -> std::process::ExitCode {
    // The container shim is this binary re-executed; it must not start the CLI or any runtime.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "shim") {
        return std::process::ExitCode::from(k3rs::kubelet::runtime::shim::main(args) as u8);
    }
    // `kubectl ...` through a link to k3rs, or `k3rs kubectl ...`: no CLI parsing either.
    if let Some(kubectl_args) = k3rs::cli::kubectl::invocation(&args) {
        return k3rs::cli::kubectl::run(kubectl_args);
    }
    k3rs::cli::main()
}
