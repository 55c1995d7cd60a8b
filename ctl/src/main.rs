//! `twillctl`, the calicoctl-like CLI. Parses the command line and runs it; the commands
//! live in the library. Installed (or linked) as `kubectl-twill` it is a kubectl plugin:
//! `kubectl twill get ippools`.

use twillctl::Cli;

fn main() {
    let cli = match Cli::parse_invocation(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let mut stdout = std::io::stdout().lock();
    match runtime.block_on(cli.run(&mut stdout)) {
        Ok(0) => {}
        Ok(status) => std::process::exit(status),
        Err(error) => {
            eprintln!("error: {error}");
            std::process::exit(error.exit_code());
        }
    }
}
