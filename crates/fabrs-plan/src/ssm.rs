//! The environment's secrets as SSM parameters: the fingerprint a plan shows
//! instead of a value.
//!
//! A plan (and a saved plan file, and the `fabrs:fingerprint` tag discovery
//! reads) must show that a secret changed without letting its reader test
//! guesses of the value cheaply. A plain hash would let anyone with the plan
//! try a dictionary at billions of guesses a second; the fingerprint is
//! Argon2id (RFC 9106) with OWASP's minimum cost for password storage
//! (19 MiB, 2 passes, 1 lane), a salt derived from the parameter's full name
//! (so one table of guesses serves one parameter of one environment only,
//! and the same value elsewhere has another fingerprint), and a 16-byte
//! output. It is deterministic, so an unchanged secret plans no change. A
//! weak password stays guessable at the KDF's cost: the fingerprint is a
//! change detector, not a vault; the parameter itself is the SecureString.

use argon2::{Algorithm, Argon2, Params, Version};
use fabrs_config::secrets::Secrets;
use sha2::{Digest, Sha256};

use crate::desired::Desired;
use crate::resource::{Inventory, Spec};

/// Argon2id's memory (KiB), passes and lanes.
const M_COST_KIB: u32 = 19 * 1024;
const T_COST: u32 = 2;
const P_COST: u32 = 1;
/// Bytes of output (32 hex digits).
const OUT_LEN: usize = 16;

/// The salt: 16 bytes of SHA-256 over a domain label and the parameter name.
fn salt(parameter_name: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"fabrs ssm fingerprint v1\0");
    h.update(parameter_name.as_bytes());
    let d = h.finalize();
    let mut s = [0u8; 16];
    s.copy_from_slice(&d[..16]);
    s
}

/// The fingerprint of a secret value stored under `parameter_name`
/// (`/<project>/<environment>/<secret>`): 32 lower-case hex digits.
pub fn fingerprint(parameter_name: &str, value: &str) -> String {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, Some(OUT_LEN)).expect("valid Argon2 parameters");
    let kdf = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut out = [0u8; OUT_LEN];
    kdf.hash_password_into(value.as_bytes(), &salt(parameter_name), &mut out)
        .expect("Argon2 accepts any password with a 16-byte salt");
    out.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fill in the desired parameters' fingerprints: from the values when the
/// plan has the secrets; otherwise (a plan without secrets cannot know
/// whether one was rotated) the fingerprint discovery read, so such a plan
/// shows no value change, and a parameter still to create shows its
/// fingerprint as known after apply.
pub fn fill_fingerprints(desired: &mut Desired, secrets: Option<&Secrets>, inventory: &Inventory) {
    for (address, spec) in desired.resources.iter_mut() {
        let Spec::SsmParameter(p) = spec else { continue };
        p.fingerprint = match secrets.and_then(|s| s.get(&p.secret)) {
            Some(v) => Some(fingerprint(&p.name, v.expose())),
            None => inventory.resources.get(address).and_then(|o| match &o.spec {
                Spec::SsmParameter(cur) => cur.fingerprint.clone(),
                _ => None,
            }),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_deterministic_salted_and_hide_the_value() {
        let a = fingerprint("/p/staging/db_password", "hunter2hunter2");
        assert_eq!(a, fingerprint("/p/staging/db_password", "hunter2hunter2"));
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        // Another value, or the same value under another name: another fingerprint.
        assert_ne!(a, fingerprint("/p/staging/db_password", "hunter2hunter3"));
        assert_ne!(a, fingerprint("/p/production/db_password", "hunter2hunter2"));
        assert!(!a.contains("hunter2"));
    }
}
