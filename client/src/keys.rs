//! The tenant's key: an ed25519 secret in a file only its owner can read (mode 0600), in the
//! client's home directory. The key never leaves this machine; only signatures do.

use std::io::Write;
use std::path::{Path, PathBuf};

use leasemesh_protocol::{Keypair, PublicKey};

use crate::error::{ClientError, Result};

/// Name of the key file inside the home directory (hex of the 32-byte secret seed).
pub const KEY_FILE: &str = "tenant.key";

/// The client's home: `--home`, else `$LEASEMESH_HOME`, else `~/.leasemesh`.
pub fn home_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("LEASEMESH_HOME") {
        return PathBuf::from(p);
    }
    let base = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    base.join(".leasemesh")
}

/// Where the tenant pays from on the settlement backend, by default: the key in hex, which the
/// embedded ledger accepts as controlled by that key (no registration needed).
pub fn default_address(key: &PublicKey) -> String {
    key.to_hex()
}

fn key_err(path: &Path, reason: impl std::fmt::Display) -> ClientError {
    ClientError::Key { path: path.display().to_string(), reason: reason.to_string() }
}

/// Writes a new key to `home/tenant.key` with mode 0600. Refuses to overwrite one.
pub fn create(home: &Path) -> Result<Keypair> {
    write_key(home, &Keypair::generate())
}

/// Writes `key` to `home/tenant.key` with mode 0600. Refuses to overwrite one.
pub fn write_key(home: &Path, key: &Keypair) -> Result<Keypair> {
    let path = home.join(KEY_FILE);
    std::fs::create_dir_all(home).map_err(|e| key_err(home, e))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            key_err(&path, "already exists; remove it first or pick another --home")
        } else {
            key_err(&path, e)
        }
    })?;
    f.write_all(hex::encode(key.secret_bytes()).as_bytes()).map_err(|e| key_err(&path, e))?;
    f.sync_all().map_err(|e| key_err(&path, e))?;
    Ok(Keypair::from_secret(key.secret_bytes()))
}

/// Reads `home/tenant.key`, refusing a file others can read.
pub fn load(home: &Path) -> Result<Keypair> {
    let path = home.join(KEY_FILE);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&path)
            .map_err(|e| key_err(&path, format!("{e} (create one with `leasemesh keys new`)")))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(key_err(&path, "is readable by others; run chmod 600 on it"));
        }
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| key_err(&path, format!("{e} (create one with `leasemesh keys new`)")))?;
    let bytes = hex::decode(text.trim()).map_err(|e| key_err(&path, format!("not hex: {e}")))?;
    let secret: [u8; 32] =
        bytes.try_into().map_err(|_| key_err(&path, "must hold 32 bytes (64 hex characters)"))?;
    Ok(Keypair::from_secret(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_key_is_private_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let k = create(dir.path()).unwrap();
        let back = load(dir.path()).unwrap();
        assert_eq!(k.public(), back.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(create(dir.path()).is_err(), "an existing key is never overwritten");
    }

    #[test]
    fn key_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        create(dir.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let p = dir.path().join(KEY_FILE);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(load(dir.path()).is_err());
        }
    }
}
