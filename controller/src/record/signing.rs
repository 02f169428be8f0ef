//! Signed checkpoints: proof that a record was not rewritten, held outside the record.
//!
//! The journal's hash chain shows where a row was edited, and a checkpoint shows that the chain was rewritten after
//! it; but whoever can edit the record can also rewrite the chain and its checkpoints, consistently. A checkpoint
//! signed with a key that lives outside the record (Ed25519, a file the lab keeps private) cannot be rewritten
//! without that key: `lab verify --public-key` checks every checkpoint against the public half, which the lab
//! publishes or hands to whoever audits the record. The secret key is only ever read from its file; the record holds
//! the public key and the signatures.

use std::fmt::Write as _;
use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use super::hex::{hex, unhex_bytes};

/// What a checkpoint's signature covers, as text: the journal row and its hash, when it was made and why, under a
/// fixed label so the signature cannot be taken for one over anything else.
pub fn message(journal_id: i64, hash: &str, made_at: &str, reason: &str) -> Vec<u8> {
    format!("lab checkpoint v1\njournal row {journal_id}\nhash {hash}\nmade at {made_at}\nreason {reason}\n")
        .into_bytes()
}

/// How a secret key file begins.
const SECRET_HEADER: &str = "# lab signing key";

/// A key that signs checkpoints.
#[derive(Clone)]
pub struct CheckpointSigner(SigningKey);

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret half.
        write!(f, "CheckpointSigner({})", self.public_hex())
    }
}

impl CheckpointSigner {
    /// The public key, as 64 hex digits.
    pub fn public_hex(&self) -> String {
        hex(self.0.verifying_key().as_bytes())
    }

    /// The signature of `message`, as 128 hex digits.
    pub fn sign(&self, message: &[u8]) -> String {
        hex(&self.0.sign(message).to_bytes())
    }

    /// Reads a key file written by [`write_new_key`].
    pub fn read(path: &Path) -> Result<CheckpointSigner, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let fix = if e.kind() == std::io::ErrorKind::NotFound {
                format!("; make one with `lab key new {}`", path.display())
            } else {
                String::new()
            };
            format!("cannot read the signing key {}: {e}{fix}", path.display())
        })?;
        let bytes = key_line(&text).ok_or_else(|| {
            format!(
                "{} is not a lab signing key (it needs a line of 64 hex digits); make one with `lab key new {}`",
                path.display(),
                path.display()
            )
        })?;
        Ok(CheckpointSigner(SigningKey::from_bytes(&bytes)))
    }
}

/// Makes a new signing key, writes it to `path` (readable by its owner only) and its public half to `path.pub`, and
/// returns the public key. Refuses to overwrite either file: a lost key cannot sign again, but a replaced one would
/// leave every record it signed unverifiable against the key that was published.
pub fn write_new_key(path: &Path) -> Result<String, String> {
    let public_path = public_path(path);
    for p in [path, public_path.as_path()] {
        if p.exists() {
            return Err(format!("{} exists; a signing key is never overwritten (pick another path)", p.display()));
        }
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot make the folder {} for the key: {e}", dir.display()))?;
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| format!("the system gave no randomness for a key: {e}"))?;
    let key = CheckpointSigner(SigningKey::from_bytes(&secret));
    let public = key.public_hex();
    let mut text = String::new();
    let _ = writeln!(text, "{SECRET_HEADER} (Ed25519). Keep this file private: whoever holds it can sign checkpoints.");
    let _ = writeln!(text, "# public key: {public}");
    let _ = writeln!(text, "{}", hex(&secret));
    write_private(path, &text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let public_text = format!(
        "# lab public key (Ed25519): check records with `lab verify --public-key {}`\n{public}\n",
        public_path.display()
    );
    if let Err(e) = std::fs::write(&public_path, public_text) {
        // Nothing has been signed with the new key yet, so it goes too, and trying again starts afresh.
        let _ = std::fs::remove_file(path);
        return Err(format!("cannot write {}: {e}; no key was made", public_path.display()));
    }
    Ok(public)
}

/// Where [`write_new_key`] puts the public half of the key at `path`.
pub fn public_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    name.into()
}

/// A public key given as 64 hex digits or as a file holding them (a `.pub` file, or the secret key file itself).
pub fn read_public_key(given: &str) -> Result<VerifyingKey, String> {
    let (bytes, secret) = match key_line(given) {
        Some(b) => (b, false),
        None => {
            let text = std::fs::read_to_string(given)
                .map_err(|e| format!("--public-key {given}: neither 64 hex digits nor a readable file ({e})"))?;
            let bytes = key_line(&text).ok_or_else(|| {
                format!(
                    "{given} holds no public key (a line of 64 hex digits, as `lab key new` writes in its .pub file)"
                )
            })?;
            (bytes, text.starts_with(SECRET_HEADER))
        }
    };
    // The secret key file works too (the lab checking its own records): its public half is derived from it.
    if secret {
        return Ok(SigningKey::from_bytes(&bytes).verifying_key());
    }
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("--public-key {given} is not an Ed25519 public key: {e}"))
}

/// Whether `signature` (hex) is `public` (hex)'s signature of `message`; the reason if not.
pub fn check(public: &str, signature: &str, message: &[u8]) -> Result<(), String> {
    let public = key_line(public).ok_or("its public key is not 64 hex digits")?;
    let public = VerifyingKey::from_bytes(&public).map_err(|e| format!("its public key is not valid: {e}"))?;
    let signature: [u8; 64] = unhex_bytes(signature.trim()).ok_or("its signature is not 128 hex digits")?;
    public.verify(message, &Signature::from_bytes(&signature)).map_err(|_| {
        "its signature does not match it: the row (or the journal row it names) changed after it was signed".to_owned()
    })
}

/// The first line of `text` that is 64 hex digits, outside comments.
fn key_line(text: &str) -> Option<[u8; 32]> {
    text.lines().map(str::trim).filter(|l| !l.starts_with('#')).find_map(unhex_bytes::<32>)
}

/// Writes `text` to a new file at `path` that only its owner may read (on Unix; elsewhere the folder's rules hold).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_written_signs_what_its_public_half_checks_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lab.key");
        let public = write_new_key(&path).unwrap();
        let signer = CheckpointSigner::read(&path).unwrap();
        assert_eq!(signer.public_hex(), public);
        assert!(
            !format!("{signer:?}").contains(&std::fs::read_to_string(&path).unwrap().lines().last().unwrap()[..16])
        );
        let m = message(42, "ab", "2026-11-23T00:00:00.000Z", "campaign 1 finished");
        let sig = signer.sign(&m);
        assert!(check(&public, &sig, &m).is_ok());
        let edited = message(43, "ab", "2026-11-23T00:00:00.000Z", "campaign 1 finished");
        assert!(check(&public, &sig, &edited).unwrap_err().contains("does not match"));
        // The public key reads back from the .pub file, from the secret file's comment, and as hex.
        let pub_file = public_path(&path);
        for given in [pub_file.to_string_lossy().into_owned(), path.to_string_lossy().into_owned(), public.clone()] {
            assert_eq!(hex(read_public_key(&given).unwrap().as_bytes()), public, "{given}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o077, 0, "only its owner reads it");
        }
        // Never overwritten.
        assert!(write_new_key(&path).unwrap_err().contains("never overwritten"));
    }

    #[test]
    fn a_file_that_is_not_a_key_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "hello\n").unwrap();
        let e = CheckpointSigner::read(&path).unwrap_err();
        assert!(e.contains("notes.txt") && e.contains("lab key new"), "{e}");
        assert!(read_public_key("abc").unwrap_err().contains("neither 64 hex digits"));
    }
}
