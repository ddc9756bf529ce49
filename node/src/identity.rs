//! The node's ed25519 identity: one key serves both as the libp2p peer identity and as the
//! node's leasemesh signing key. Stored as hex in a file only its owner may read (mode 0600).

use std::io::Write;
use std::path::{Path, PathBuf};

use leasemesh_protocol::Keypair;

/// Why the identity could not be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    #[error("cannot read identity {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write identity {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("identity {path} is not 64 hex characters")]
    Malformed { path: PathBuf },
    #[error("identity {path} is readable by others (mode {mode:o}); run `chmod 600` on it")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("identity {path} already exists; refusing to overwrite a key")]
    Exists { path: PathBuf },
    #[error("the key cannot be used as a libp2p identity: {0}")]
    Libp2p(String),
}

/// Creates a new key at `path` with mode 0600. Fails if the file exists.
pub fn create(path: &Path) -> Result<Keypair, IdentityError> {
    let key = Keypair::generate();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            IdentityError::Exists { path: path.to_path_buf() }
        } else {
            IdentityError::Write { path: path.to_path_buf(), source }
        }
    })?;
    let secret = hex::encode(key.secret_bytes());
    file.write_all(format!("{secret}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| IdentityError::Write { path: path.to_path_buf(), source })?;
    Ok(key)
}

/// Reads the key at `path`, refusing a file that others can read.
pub fn load(path: &Path) -> Result<Keypair, IdentityError> {
    let read_err = |source| IdentityError::Read { path: path.to_path_buf(), source };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_err(read_err)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::Permissions { path: path.to_path_buf(), mode });
        }
    }
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    let bytes = hex::decode(text.trim())
        .map_err(|_| IdentityError::Malformed { path: path.to_path_buf() })?;
    let secret: [u8; 32] =
        bytes.try_into().map_err(|_| IdentityError::Malformed { path: path.to_path_buf() })?;
    Ok(Keypair::from_secret(secret))
}

/// The same key as a libp2p identity.
pub fn to_libp2p(key: &Keypair) -> Result<libp2p::identity::Keypair, IdentityError> {
    libp2p::identity::Keypair::ed25519_from_bytes(key.secret_bytes())
        .map_err(|e| IdentityError::Libp2p(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_load_gives_the_same_key_and_peer_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id.key");
        let key = create(&path).unwrap();
        let again = load(&path).unwrap();
        assert_eq!(key.public(), again.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let p2p = to_libp2p(&key).unwrap();
        let ed = p2p.public().try_into_ed25519().unwrap();
        assert_eq!(ed.to_bytes(), key.public().0);
        assert!(matches!(create(&path), Err(IdentityError::Exists { .. })));
    }
}
