fn main() {
    std::process::exit(modaliasd::cli::main(std::env::args_os().skip(1).collect()));
}
