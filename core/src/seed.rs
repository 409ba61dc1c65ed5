//! Seeds derived from a run seed and a path of labels, so that every unit of work draws the
//! same randomness whether a run is fresh, resumed or reordered.

use sha2::{Digest, Sha256};

/// A stable 64-bit seed for `(base, parts...)`.
pub fn derive_seed(base: u64, parts: &[&str]) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(base.to_le_bytes());
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

/// A seeded, portable random generator for `(base, parts...)`.
pub fn rng_for(base: u64, parts: &[&str]) -> rand_chacha::ChaCha8Rng {
    use rand::SeedableRng;
    rand_chacha::ChaCha8Rng::seed_from_u64(derive_seed(base, parts))
}

/// Hex SHA-256 of some bytes (config hashes in run manifests).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex SHA-256 of a file's bytes, read in pieces; of a directory, over its top-level files
/// in name order (each name, length and content), which is what a model directory holds.
pub fn sha256_of_path(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut hasher = Sha256::new();
    let is_dir = path.is_dir();
    let files = if is_dir {
        let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?;
        files.retain(|f| f.is_file());
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut buffer = vec![0u8; 1 << 20];
    for file in files {
        if is_dir {
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            hasher.update((name.len() as u64).to_le_bytes());
            hasher.update(name.as_bytes());
            hasher.update(std::fs::metadata(&file)?.len().to_le_bytes());
        }
        let mut reader = std::fs::File::open(&file)?;
        loop {
            let n = reader.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
    }
    Ok(hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_hashes_as_its_bytes_and_a_directory_changes_with_any_file() {
        let dir = std::env::temp_dir().join(format!("rco-sha-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.bin"), b"weights").unwrap();
        std::fs::write(dir.join("b.json"), b"{}").unwrap();
        assert_eq!(
            sha256_of_path(&dir.join("a.bin")).unwrap(),
            sha256_hex(b"weights")
        );
        let before = sha256_of_path(&dir).unwrap();
        assert_eq!(sha256_of_path(&dir).unwrap(), before);
        std::fs::write(dir.join("b.json"), b"{ }").unwrap();
        assert_ne!(sha256_of_path(&dir).unwrap(), before);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn seeds_are_stable_and_distinct() {
        assert_eq!(derive_seed(1, &["a", "b"]), derive_seed(1, &["a", "b"]));
        assert_ne!(derive_seed(1, &["a", "b"]), derive_seed(1, &["ab"]));
        assert_ne!(derive_seed(1, &["a"]), derive_seed(2, &["a"]));
    }
}
