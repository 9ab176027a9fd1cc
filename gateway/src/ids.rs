//! Object ids: a fixed prefix and 24 random url-safe characters, as OpenAI's look.

use rand::Rng;

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const RANDOM_LEN: usize = 24;

/// The kinds of object the gateway mints ids for, each with OpenAI's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// A gateway replica (its runner's name for drive leases).
    Replica,
    File,
    Upload,
    Part,
    Job,
    Event,
    Checkpoint,
    Request,
    ChatCompletion,
}

impl IdKind {
    pub fn prefix(self) -> &'static str {
        match self {
            IdKind::File => "file-",
            IdKind::Upload => "upload_",
            IdKind::Part => "part_",
            IdKind::Job => "ftjob-",
            IdKind::Event => "ftevent-",
            IdKind::Checkpoint => "ftckpt-",
            IdKind::Request => "req_",
            IdKind::Replica => "replica-",
            IdKind::ChatCompletion => "chatcmpl-",
        }
    }
}

/// A fresh random id of the given kind.
pub fn new_id(kind: IdKind) -> String {
    let mut rng = rand::thread_rng();
    let mut id = String::with_capacity(kind.prefix().len() + RANDOM_LEN);
    id.push_str(kind.prefix());
    for _ in 0..RANDOM_LEN {
        id.push(ALPHABET[rng.gen_range(0..ALPHABET.len())] as char);
    }
    id
}

/// Random secret for the demo tenant key (`sk-tg-` + 40 characters).
pub fn new_secret() -> String {
    let mut rng = rand::thread_rng();
    let tail: String = (0..40)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("sk-tg-{tail}")
}

/// A name for this process among others of its kind: `{kind}-{pid}-{nanoseconds}` (a worker's
/// lease holder, a runner's drive-lease holder).
pub fn process_tag(kind: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{kind}-{}-{nanos}", std::process::id())
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_prefix_and_length() {
        let id = new_id(IdKind::Job);
        assert!(id.starts_with("ftjob-"));
        assert_eq!(id.len(), "ftjob-".len() + 24);
        assert!(id["ftjob-".len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(new_id(IdKind::Job), id);
    }
}
