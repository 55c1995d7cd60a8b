//! `twill`, the CNI plugin: parses the CNI request and forwards it to felix.

fn main() {
    // A CNI error object (code 11, try again later) until the shim is built.
    println!(
        r#"{{"cniVersion":"1.0.0","code":11,"msg":"twill CNI plugin not built yet","details":""}}"#
    );
    std::process::exit(1);
}
