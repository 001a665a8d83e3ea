fn main() {
    let mut args = std::env::args_os();
    let program = args.next();
    let args: Vec<std::ffi::OsString> = args.collect();
    // Linked as `modprobe`, it is `modaliasd load` (see modaliasd::cli::modprobe_args).
    let as_modprobe = program
        .as_deref()
        .and_then(|p| std::path::Path::new(p).file_name())
        .is_some_and(|name| name == "modprobe");
    let args = if as_modprobe {
        modaliasd::cli::modprobe_args(args)
    } else {
        args
    };
    std::process::exit(modaliasd::cli::main(args));
}
