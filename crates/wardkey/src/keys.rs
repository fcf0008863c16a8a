//! The audit signing key: created on first start beside the data, readable only by its owner.

use std::path::{Path, PathBuf};
use wardkey_audit::{LogSigner, LogVerifier};

pub const SIGNING_KEY_FILE: &str = "audit-signing.key";
pub const VERIFIER_KEY_FILE: &str = "audit-signing.pub";

pub fn signing_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SIGNING_KEY_FILE)
}

fn create_dir_private(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

fn write_private(path: &Path, contents: &str) -> Result<(), String> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(contents.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Loads the signing key, creating it (and the public verifier key file) on first start.
/// Returns the signer and whether it was just created.
pub fn load_or_create_signer(data_dir: &Path) -> Result<(LogSigner, bool), String> {
    create_dir_private(data_dir)?;
    let path = signing_key_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let signer = LogSigner::from_secret_file(text.trim())
                .map_err(|e| format!("audit signing key {} is unreadable: {e}", path.display()))?;
            Ok((signer, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut id = [0u8; 6];
            rand::fill(&mut id);
            let origin = format!("wardkey.local/{}", hex::encode(id));
            let signer = LogSigner::generate(&origin);
            write_private(&path, &signer.to_secret_file())?;
            let pub_path = data_dir.join(VERIFIER_KEY_FILE);
            let _ = std::fs::remove_file(&pub_path);
            std::fs::write(&pub_path, format!("{}\n", signer.verifier_key()))
                .map_err(|e| format!("cannot write {}: {e}", pub_path.display()))?;
            Ok((signer, true))
        }
        Err(e) => Err(format!("cannot read audit signing key {}: {e}", path.display())),
    }
}

/// The verifier for `audit verify`: an explicit public key file, else the one in the data
/// directory, else derived from the signing key there.
pub fn load_verifier(data_dir: &Path, explicit: Option<&Path>) -> Result<LogVerifier, String> {
    let from_pub = |p: &Path| -> Result<LogVerifier, String> {
        let text = std::fs::read_to_string(p).map_err(|e| format!("cannot read verifier key {}: {e}", p.display()))?;
        LogVerifier::from_vkey(text.trim()).map_err(|e| format!("verifier key {} is invalid: {e}", p.display()))
    };
    if let Some(p) = explicit {
        return from_pub(p);
    }
    let pub_path = data_dir.join(VERIFIER_KEY_FILE);
    if pub_path.exists() {
        return from_pub(&pub_path);
    }
    let key = signing_key_path(data_dir);
    let text = std::fs::read_to_string(&key).map_err(|e| {
        format!(
            "no verifier key: neither {} nor {} readable ({e}); pass --verifier-key",
            pub_path.display(),
            key.display()
        )
    })?;
    let signer = LogSigner::from_secret_file(text.trim())
        .map_err(|e| format!("audit signing key {} is unreadable: {e}", key.display()))?;
    Ok(LogVerifier::from_signer(&signer))
}
