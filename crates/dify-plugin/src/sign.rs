//! Signing a package (feature `package`) so that a daemon configured with your public key marks it verified
//! (daemon-protocol.md §8.3; the daemon's `decoder/verifier.go` and `signer/withkey`).
//!
//! Signed data: for every zip entry in central-directory order, the verification file included,
//! the 32-byte `sha256(content)`; then the signing time as ASCII decimal. The signature is RSA
//! PKCS#1 v1.5 over SHA-256 of that, base64 (standard, padded) in the zip comment
//! `{"signature":"…","time":…}`. Keys are PKCS#1 PEM (`RSA PRIVATE KEY` / `RSA PUBLIC KEY`), as
//! `dify signature generate` writes them and as the daemon insists on for public keys. No IO.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey, EncodeRsaPrivateKey, EncodeRsaPublicKey, LineEnding};
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::DecodePrivateKey;
use rsa::rand_core::OsRng;
use rsa::signature::{RandomizedSigner, SignatureEncoding, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::package::{self as archive, Entry, PackageError as Error};

type Result<T> = std::result::Result<T, Error>;

/// The file the signer adds; the daemon reads the category from it.
pub const VERIFICATION_FILE: &str = ".verification.dify.json";
/// The size `dify signature generate` uses.
pub const KEY_BITS: u16 = 4096;

/// Who vouches for the plugin, as recorded in [`VERIFICATION_FILE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Community,
    Partner,
    Langgenius,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Community => "community",
            Category::Partner => "partner",
            Category::Langgenius => "langgenius",
        }
    }
}

/// A new RSA key pair.
///
/// Errors: the key generator's ([`PackageError::Key`](Error::Key)).
pub fn generate_key(bits: usize) -> Result<RsaPrivateKey> {
    RsaPrivateKey::new(&mut OsRng, bits).map_err(|err| Error::Key(err.to_string()))
}

/// The key pair as PKCS#1 PEM texts: (private, public).
pub fn key_pems(key: &RsaPrivateKey) -> Result<(String, String)> {
    let pem = |err: rsa::pkcs1::Error| Error::Key(err.to_string());
    let private = key.to_pkcs1_pem(LineEnding::LF).map_err(pem)?;
    let public = key.to_public_key().to_pkcs1_pem(LineEnding::LF).map_err(pem)?;
    Ok((private.as_str().to_owned(), public))
}

/// Reads a private key: PKCS#1 (`RSA PRIVATE KEY`, what `keygen` and the Dify CLI write) or
/// PKCS#8 (`PRIVATE KEY`, what `openssl genpkey` writes).
pub fn private_key_from_pem(pem: &str) -> Result<RsaPrivateKey> {
    RsaPrivateKey::from_pkcs1_pem(pem)
        .or_else(|_| RsaPrivateKey::from_pkcs8_pem(pem))
        .map_err(|_| Error::KeyFormat("an RSA private key in PEM (BEGIN RSA PRIVATE KEY)"))
}

/// Reads a public key the way the daemon does: PKCS#1 PEM (`RSA PUBLIC KEY`) only.
pub fn public_key_from_pem(pem: &str) -> Result<RsaPublicKey> {
    RsaPublicKey::from_pkcs1_pem(pem)
        .map_err(|_| Error::KeyFormat("an RSA public key in PKCS#1 PEM (BEGIN RSA PUBLIC KEY)"))
}

/// Returns `package` signed at unix time `time`: every entry copied in order, any earlier
/// verification file and signature dropped, then a new [`VERIFICATION_FILE`] appended and the
/// signature put in the zip comment.
pub fn sign(package: &[u8], key: &RsaPrivateKey, category: Category, time: u64) -> Result<Vec<u8>> {
    let (mut entries, _comment) = archive::read(package)?;
    entries.retain(|entry| entry.name != VERIFICATION_FILE);
    // Byte for byte what Go's json.Marshal writes for the daemon's Verification struct.
    let verification = format!(r#"{{"authorized_category":"{}"}}"#, category.as_str());
    entries.push(Entry::new(VERIFICATION_FILE, verification));
    let signing_key = SigningKey::<Sha256>::new(key.clone());
    let signature = signing_key.sign_with_rng(&mut OsRng, &signed_data(&entries, time));
    let comment = format!(r#"{{"signature":"{}","time":{time}}}"#, BASE64.encode(signature.to_bytes()));
    archive::write(&entries, Some(&comment))
}

/// What a verified package says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub time: i64,
    /// The verification file's category; the daemon reads a signed package without one as
    /// `langgenius`.
    pub category: Option<String>,
}

/// Checks `package`'s signature against `key`, as the daemon's verifier does.
pub fn verify(package: &[u8], key: &RsaPublicKey) -> Result<Verified> {
    #[derive(Deserialize)]
    struct Comment {
        signature: String,
        time: i64,
    }
    #[derive(Deserialize)]
    struct Verification {
        authorized_category: String,
    }
    let (entries, comment) = archive::read(package)?;
    let comment: Comment = serde_json::from_str(&comment).map_err(|_| Error::Unsigned)?;
    let signature = BASE64.decode(&comment.signature).map_err(|_| Error::BadSignature)?;
    let signature = Signature::try_from(signature.as_slice()).map_err(|_| Error::BadSignature)?;
    VerifyingKey::<Sha256>::new(key.clone())
        .verify(&signed_data(&entries, comment.time), &signature)
        .map_err(|_| Error::BadSignature)?;
    let category = match entries.iter().find(|entry| entry.name == VERIFICATION_FILE) {
        Some(entry) => Some(
            serde_json::from_slice::<Verification>(&entry.data)
                .map_err(|_| Error::Entry { name: VERIFICATION_FILE.to_owned(), problem: "is not valid JSON" })?
                .authorized_category,
        ),
        None => None,
    };
    Ok(Verified { time: comment.time, category })
}

fn signed_data(entries: &[Entry], time: impl std::fmt::Display) -> Vec<u8> {
    let mut data = Vec::with_capacity(entries.len() * 32 + 20);
    for entry in entries {
        data.extend_from_slice(&Sha256::digest(&entry.data));
    }
    data.extend_from_slice(time.to_string().as_bytes());
    data
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;

    /// Key generation is slow in debug builds; one small key serves every test here. The size
    /// only changes the signature's length, not the scheme.
    fn key() -> &'static RsaPrivateKey {
        static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
        KEY.get_or_init(|| generate_key(1024).unwrap())
    }

    fn package() -> Vec<u8> {
        archive::write(&[Entry::new("manifest.yaml", "name: x\n"), Entry::new("bin/x", vec![7u8; 1000])], None).unwrap()
    }

    #[test]
    fn signed_data_is_entry_hashes_then_decimal_time() {
        let entries = [Entry::new("b", "2"), Entry::new("a", "")];
        let data = signed_data(&entries, 1_700_000_000u64);
        assert_eq!(data.len(), 32 + 32 + 10);
        assert_eq!(hex::encode(&data[..32]), "d4735e3a265e16eee03f59718b9b5d03019c07d8b6c51f90da3a666eec13ab35");
        assert_eq!(hex::encode(&data[32..64]), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(&data[64..], b"1700000000");
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let signed = sign(&package(), key(), Category::Community, 1_732_000_000).unwrap();
        let verified = verify(&signed, &key().to_public_key()).unwrap();
        assert_eq!(verified, Verified { time: 1_732_000_000, category: Some("community".to_owned()) });

        let (entries, comment) = archive::read(&signed).unwrap();
        let names: Vec<&str> = entries.iter().map(|entry| entry.name.as_str()).collect();
        assert_eq!(names, ["manifest.yaml", "bin/x", VERIFICATION_FILE]);
        assert_eq!(entries[2].data, br#"{"authorized_category":"community"}"#);
        assert!(comment.starts_with(r#"{"signature":""#) && comment.ends_with(r#"","time":1732000000}"#));
    }

    #[test]
    fn re_signing_replaces_the_verification_file() {
        let once = sign(&package(), key(), Category::Community, 1).unwrap();
        let twice = sign(&once, key(), Category::Partner, 2).unwrap();
        let (entries, _) = archive::read(&twice).unwrap();
        assert_eq!(entries.iter().filter(|entry| entry.name == VERIFICATION_FILE).count(), 1);
        let verified = verify(&twice, &key().to_public_key()).unwrap();
        assert_eq!(verified.category.as_deref(), Some("partner"));
    }

    #[test]
    fn tampering_or_another_key_fails_verification() {
        let signed = sign(&package(), key(), Category::Community, 1_732_000_000).unwrap();
        let (mut entries, comment) = archive::read(&signed).unwrap();
        entries[1].data[0] ^= 1;
        let tampered = archive::write(&entries, Some(&comment)).unwrap();
        assert!(matches!(verify(&tampered, &key().to_public_key()), Err(Error::BadSignature)));

        let (entries, _) = archive::read(&signed).unwrap();
        let retimed = archive::write(&entries, Some(&comment.replace("1732000000", "1732000001"))).unwrap();
        assert!(matches!(verify(&retimed, &key().to_public_key()), Err(Error::BadSignature)));

        let other = generate_key(1024).unwrap();
        assert!(matches!(verify(&signed, &other.to_public_key()), Err(Error::BadSignature)));
        assert!(matches!(verify(&package(), &key().to_public_key()), Err(Error::Unsigned)));
    }

    #[test]
    fn keys_round_trip_through_pkcs1_pem() {
        let (private, public) = key_pems(key()).unwrap();
        assert!(private.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"), "{private}");
        assert!(private.ends_with("-----END RSA PRIVATE KEY-----\n"));
        assert!(public.starts_with("-----BEGIN RSA PUBLIC KEY-----\n"), "{public}");
        assert!(public.ends_with("-----END RSA PUBLIC KEY-----\n"));
        assert_eq!(&private_key_from_pem(&private).unwrap(), key());
        assert_eq!(public_key_from_pem(&public).unwrap(), key().to_public_key());
        assert!(public_key_from_pem(&private).is_err());
        assert!(private_key_from_pem(&public).is_err());
    }
}
