//! Writes the ccxt golden requests into the fuzz corpus, so fuzzing starts from real traffic.
#[path = "common.rs"]
mod common;

fn main() -> std::io::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/verify_request");
    std::fs::create_dir_all(&dir)?;
    for (i, v) in common::golden().iter().enumerate() {
        std::fs::write(dir.join(format!("golden-{i:02}")), common::encode(v))?;
    }
    println!("wrote {} seeds to {}", common::golden().len(), dir.display());
    Ok(())
}
