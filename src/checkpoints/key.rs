//! The server's Ed25519 signing key, kept in a small text file, and signature verification.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use anyhow::{Context, bail};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand::RngCore;

use super::decode_hex;

/// The public keys a checkpoint may be signed by, as 64 lowercase hex digits each: the server's
/// key and, after a rotation, the keys it had before. Empty means no key is trusted in advance,
/// and only the key embedded in a checkpoint can be checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedKeys(Vec<String>);

impl TrustedKeys {
    pub fn new(keys: impl IntoIterator<Item = String>) -> TrustedKeys {
        let mut unique: Vec<String> = Vec::new();
        for key in keys.into_iter().map(|k| k.trim().to_ascii_lowercase()) {
            if !unique.contains(&key) {
                unique.push(key);
            }
        }
        TrustedKeys(unique)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn keys(&self) -> &[String] {
        &self.0
    }

    /// Whether a checkpoint signed by `key` may be trusted: always, when no key is given.
    pub fn check(&self, key: &str) -> Result<(), String> {
        if self.0.is_empty() || self.0.iter().any(|k| k.eq_ignore_ascii_case(key)) {
            return Ok(());
        }
        Err(format!("signed by key {key}, not by {self}"))
    }
}

impl std::fmt::Display for TrustedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_slice() {
            [] => f.write_str("no trusted key"),
            [one] => write!(f, "the trusted key {one}"),
            many => write!(f, "any of the trusted keys {}", many.join(", ")),
        }
    }
}

/// The first line of a key file, naming its format.
const KEY_FILE_TAG: &str = "attest-ed25519-secret-v1";

/// The key that signs checkpoints. Its `Debug` shows only the public key.
#[derive(Clone)]
pub struct ServerKey {
    signing: SigningKey,
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKey").field("public_key", &self.public_key_hex()).finish_non_exhaustive()
    }
}

impl ServerKey {
    /// A new random key, kept in memory only.
    pub fn generate() -> ServerKey {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        ServerKey::from_seed(seed)
    }

    fn from_seed(seed: [u8; 32]) -> ServerKey {
        ServerKey { signing: SigningKey::from_bytes(&seed) }
    }

    /// The key of RFC 8032, section 7.1, test 1, whose secret is public: for worked examples.
    #[cfg(test)]
    pub(super) fn rfc_8032_test_key() -> ServerKey {
        let seed = decode_hex::<32>("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .expect("the RFC's seed is 64 lowercase hex digits");
        ServerKey::from_seed(seed)
    }

    /// Reads the key file at `path`, or, if there is none, creates one with a new random key.
    /// The file is two lines: `attest-ed25519-secret-v1`, then the 32-byte secret seed as 64
    /// lowercase hex digits. A new file is written to a temporary name and renamed into place, so
    /// a crash never leaves half a key; on Unix it is readable by its owner only (0600), and
    /// missing parent directories are created (0700).
    pub fn load_or_create(path: &Path) -> anyhow::Result<ServerKey> {
        match fs::read(path) {
            Ok(bytes) => parse_key_file(&bytes).with_context(|| format!("key file {} is malformed", path.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let key = ServerKey::generate();
                write_key_file(path, &key).with_context(|| format!("cannot create key file {}", path.display()))?;
                Ok(key)
            }
            Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read key file {}", path.display()))),
        }
    }

    /// Reads the key file at `path` if there is one; never creates it. For verifiers, which must
    /// not leave a new key behind where the server's is expected.
    pub fn load(path: &Path) -> anyhow::Result<Option<ServerKey>> {
        match fs::read(path) {
            Ok(bytes) => {
                parse_key_file(&bytes).map(Some).with_context(|| format!("key file {} is malformed", path.display()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read key file {}", path.display()))),
        }
    }

    /// The public key: 32 bytes as 64 lowercase hex digits.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.signing.verifying_key().to_bytes())
    }

    /// The Ed25519 signature of `msg`: 64 bytes as 128 lowercase hex digits.
    pub fn sign(&self, msg: &[u8]) -> String {
        hex::encode(self.signing.sign(msg).to_bytes())
    }
}

/// Checks an Ed25519 signature, both key and signature given as lowercase hex. Verification is
/// strict (RFC 8032 with the small-order and malleability checks), so one message has one valid
/// signature per key.
pub fn verify_signature(public_key_hex: &str, msg: &[u8], signature_hex: &str) -> Result<(), String> {
    let key = decode_hex::<32>(public_key_hex).map_err(|e| format!("public key: {e}"))?;
    let key = VerifyingKey::from_bytes(&key).map_err(|_| "public key is not a valid Ed25519 key".to_owned())?;
    let signature = decode_hex::<64>(signature_hex).map_err(|e| format!("signature: {e}"))?;
    key.verify_strict(msg, &Signature::from_bytes(&signature))
        .map_err(|_| format!("signature is not valid for key {public_key_hex}"))
}

fn parse_key_file(bytes: &[u8]) -> anyhow::Result<ServerKey> {
    let text = std::str::from_utf8(bytes).context("it is not UTF-8 text")?;
    let mut lines = text.lines();
    if lines.next().map(str::trim_end) != Some(KEY_FILE_TAG) {
        bail!("its first line must be `{KEY_FILE_TAG}`");
    }
    let Some(seed) = lines.next() else { bail!("its second line must hold the secret seed") };
    // The seed itself is not echoed: it is the secret.
    let seed = decode_hex::<32>(seed.trim()).map_err(|e| anyhow::anyhow!("second line: {e}"))?;
    if lines.any(|line| !line.trim().is_empty()) {
        bail!("it has more than two lines");
    }
    Ok(ServerKey::from_seed(seed))
}

fn write_key_file(path: &Path, key: &ServerKey) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    create_private_dir(dir).with_context(|| format!("cannot create directory {}", dir.display()))?;
    let name = path.file_name().context("the path has no file name")?.to_string_lossy();
    let temp = dir.join(format!(".{name}.{:016x}.tmp", rand::rng().next_u64()));
    let contents = format!("{KEY_FILE_TAG}\n{}\n", hex::encode(key.signing.to_bytes()));
    let written = write_new_private_file(&temp, contents.as_bytes()).and_then(|()| fs::rename(&temp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e.into());
    }
    sync_dir(dir)?;
    Ok(())
}

/// Creates `dir` and its missing parents; new ones are private to the owner on Unix.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Writes a file that must not exist yet, readable and writable by its owner only on Unix, and
/// flushes it to disk before it is renamed into place.
fn write_new_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Makes the rename durable: on Unix a directory entry is only on disk once the directory is
/// synced.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_key_file_loads_as_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/nested/checkpoint.key");
        let created = ServerKey::load_or_create(&path).unwrap();
        let loaded = ServerKey::load_or_create(&path).unwrap();
        assert_eq!(created.public_key_hex(), loaded.public_key_hex());
        let signature = created.sign(b"message");
        assert_eq!(signature, loaded.sign(b"message"));
        verify_signature(&loaded.public_key_hex(), b"message", &signature).unwrap();

        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], "attest-ed25519-secret-v1");
        assert_eq!(lines[1], hex::encode(created.signing.to_bytes()));
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn a_created_key_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/checkpoint.key");
        ServerKey::load_or_create(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn malformed_key_files_are_rejected_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.key");
        let seed = "11".repeat(32);
        let cases = [
            (String::new(), "first line"),
            (format!("attest-rsa-secret-v1\n{seed}\n"), "first line"),
            ("attest-ed25519-secret-v1\n".to_owned(), "second line"),
            (format!("attest-ed25519-secret-v1\n{}\n", &seed[2..]), "64 lowercase hex digits"),
            (format!("attest-ed25519-secret-v1\n{}\n", seed.replace('1', "A")), "64 lowercase hex digits"),
            (format!("attest-ed25519-secret-v1\n{}zz\n", &seed[2..]), "64 lowercase hex digits"),
            (format!("attest-ed25519-secret-v1\n{seed}\nextra\n"), "more than two lines"),
        ];
        for (contents, reason) in cases {
            fs::write(&path, &contents).unwrap();
            let err = format!("{:#}", ServerKey::load_or_create(&path).unwrap_err());
            assert!(err.contains("is malformed") && err.contains(reason), "{contents:?}: {err}");
            assert!(!err.contains(&seed[2..]), "the error shows the secret: {err}");
        }
        fs::write(&path, [0xff, 0xfe]).unwrap();
        let err = format!("{:#}", ServerKey::load_or_create(&path).unwrap_err());
        assert!(err.contains("not UTF-8"), "{err}");
        // The malformed file is left alone rather than replaced by a new key.
        assert_eq!(fs::read(&path).unwrap(), [0xff, 0xfe]);
    }

    #[test]
    fn a_key_file_with_crlf_line_ends_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.key");
        fs::write(&path, format!("attest-ed25519-secret-v1\r\n{}\r\n", "11".repeat(32))).unwrap();
        let key = ServerKey::load_or_create(&path).unwrap();
        assert_eq!(key.public_key_hex(), ServerKey::from_seed([0x11; 32]).public_key_hex());
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let key = ServerKey::from_seed([0x42; 32]);
        let debug = format!("{key:?}");
        assert!(debug.contains(&key.public_key_hex()), "{debug}");
        assert!(!debug.contains(&"42".repeat(32)), "{debug}");
        assert!(!debug.to_lowercase().contains("signing"), "{debug}");
    }

    #[test]
    fn a_signature_fails_for_another_message_or_key() {
        let key = ServerKey::generate();
        let signature = key.sign(b"message");
        verify_signature(&key.public_key_hex(), b"message", &signature).unwrap();
        assert!(verify_signature(&key.public_key_hex(), b"messagE", &signature).is_err());
        assert!(verify_signature(&ServerKey::generate().public_key_hex(), b"message", &signature).is_err());
        assert!(verify_signature(&key.public_key_hex(), b"message", &signature.to_uppercase()).is_err());
        assert!(verify_signature(&key.public_key_hex(), b"message", &signature[2..]).is_err());
        assert!(verify_signature("zz", b"message", &signature).is_err());
    }

    /// RFC 8032, section 7.1, test 1: the empty message under a fixed secret, so that another
    /// Ed25519 implementation is known to agree with this one.
    #[test]
    fn signing_matches_the_rfc_8032_test_vector() {
        let key = ServerKey::rfc_8032_test_key();
        assert_eq!(key.public_key_hex(), "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        assert_eq!(
            key.sign(b""),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }
}
