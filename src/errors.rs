//! Error text shared by every module: an error with its chain of causes on one line, and the message of a
//! caught panic.
#![forbid(unsafe_code)]

/// `error: cause: cause` on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The message of a caught panic payload (`panic!` with a literal or a formatted message), or
/// `unknown panic`.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_prints_every_cause_once_in_order() {
        let inner = std::io::Error::other("permission denied");
        let outer = std::io::Error::other(Wrapped(inner));
        assert_eq!(chain(&outer), "open /dev/x: permission denied");
    }

    #[derive(Debug)]
    struct Wrapped(std::io::Error);
    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("open /dev/x")
        }
    }
    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn panic_payloads_of_both_kinds_give_their_message() {
        let lit = std::panic::catch_unwind(|| panic!("literal")).unwrap_err();
        assert_eq!(panic_message(&*lit), "literal");
        let n = 7;
        let fmt = std::panic::catch_unwind(|| panic!("formatted {n}")).unwrap_err();
        assert_eq!(panic_message(&*fmt), "formatted 7");
        let other = std::panic::catch_unwind(|| std::panic::panic_any(5u8)).unwrap_err();
        assert_eq!(panic_message(&*other), "unknown panic");
    }
}
