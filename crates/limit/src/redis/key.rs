//! Redis key names for buckets, bounded in length whatever key a key function returns.

/// The longest request key written into a Redis key as is, in bytes. A longer one is
/// replaced by its SHA-1 (`~sha1:` and 40 hex digits), so a megabyte-long key costs a
/// 46-byte name in Redis and in the instance's maps.
pub(crate) const MAX_KEY_BYTES: usize = 64;

/// The Redis key of `key`'s bucket: `prefix` (`{<prefix>:<name>:`), the key or its hash,
/// and `}` closing the hash tag. The hash is the same in every instance and process, so
/// instances sharing a limit share the bucket of a long key too.
pub(crate) fn bucket_key(prefix: &str, key: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + MAX_KEY_BYTES.max(46) + 1);
    out.push_str(prefix);
    push_bounded(&mut out, key);
    out.push('}');
    out
}

/// The bounded form of a request key, as stored in an instance's maps.
pub(crate) fn bounded(key: &str) -> std::borrow::Cow<'_, str> {
    if kept_as_is(key) {
        std::borrow::Cow::Borrowed(key)
    } else {
        let mut out = String::with_capacity(46);
        push_bounded(&mut out, key);
        std::borrow::Cow::Owned(out)
    }
}

/// Whether `key` is written as it is: short, and not starting with `~`, which only hashed
/// keys do (a key spelled `~sha1:<digest>` would share the bucket of the long key with
/// that digest: a client knowing one could drain it).
fn kept_as_is(key: &str) -> bool {
    key.len() <= MAX_KEY_BYTES && !key.starts_with('~')
}

fn push_bounded(out: &mut String, key: &str) {
    if kept_as_is(key) {
        out.push_str(key);
    } else {
        out.push_str("~sha1:");
        out.push_str(&sha1_smol::Sha1::from(key.as_bytes()).digest().to_string());
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A short key spelled as a long key's hash is hashed too: it shared that key's bucket.
    #[test]
    fn a_key_spelled_like_a_hash_does_not_share_the_hashed_keys_bucket() {
        let long = "L".repeat(65);
        let hashed = bucket_key("{p:n:", &long);
        let spelled = &hashed["{p:n:".len()..hashed.len() - 1];
        assert!(spelled.starts_with("~sha1:"), "{spelled}");
        assert_ne!(bucket_key("{p:n:", spelled), hashed);
        assert_ne!(bounded(spelled), bounded(&long));
        assert_eq!(bucket_key("{p:n:", "~"), bucket_key("{p:n:", "~"));
    }

    #[test]
    fn short_keys_stay_readable_and_long_ones_are_hashed_to_a_fixed_length() {
        assert_eq!(bucket_key("{p:n:", "alice"), "{p:n:alice}");
        let long = "k".repeat(1 << 20);
        let name = bucket_key("{p:n:", &long);
        assert_eq!(name.len(), "{p:n:".len() + 46 + 1);
        assert!(name.starts_with("{p:n:~sha1:"), "{name}");
        // The same in every call (and process): a fixed hash, not a random one.
        assert_eq!(name, bucket_key("{p:n:", &long));
        assert_ne!(name, bucket_key("{p:n:", &"k".repeat((1 << 20) + 1)));
        let edge = "e".repeat(MAX_KEY_BYTES);
        assert_eq!(bounded(&edge), edge.as_str());
        assert_eq!(bounded(&long).len(), 46);
    }
}
