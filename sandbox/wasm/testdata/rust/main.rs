// A guest from another toolchain than Go's: Rust's wasm32-wasi target (the
// name wasm32-wasip1 had before Rust 1.78). It echoes its argv and stdin,
// tries a host file, and exits 7.
use std::io::Read;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).unwrap();
    println!("rust guest: args={:?} stdin={}", args, input.trim());
    match std::fs::read_to_string("/etc/passwd") {
        Ok(_) => println!("READ /etc/passwd"),
        Err(e) => println!("no /etc/passwd: {}", e),
    }
    std::fs::write("/tmp/rust", "kept").unwrap();
    println!("tmp: {}", std::fs::read_to_string("/tmp/rust").unwrap());
    std::process::exit(7);
}
