//! Error text shared by every module: an error with its chain of causes on one line, and the message of a
//! caught panic.
//!
//! The convention every error type in `src/` follows (one type per module, usually an enum):
//! - its `Display` says what this layer was doing, in its own words, and never repeats its cause's text;
//! - its cause, when it has one, is returned by `source()` and printed only by [`chain`], once;
//! - a layer that knows the fix ends its own text with `; fix: ...`; [`chain`] moves every fix to the end of
//!   the line, so a boot failure reads `step: what: cause: innermost cause; fix: ...`.
#![forbid(unsafe_code)]

/// Where a layer's own text names its fix.
const FIX: &str = "; fix: ";

/// `error: cause: cause[; fix: ...]` on one line: each layer's text once, in order, and the fixes (each
/// layer's `; fix: ...`) at the end. A cause whose text the line already holds (a foreign error type that
/// prints its cause and also returns it) is not printed twice.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut line = String::new();
    let mut fixes: Vec<String> = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(layer) = cur {
        let text = layer.to_string();
        let (own, fix) = match text.find(FIX) {
            Some(at) => (&text[..at], Some(&text[at + FIX.len()..])),
            None => (text.as_str(), None),
        };
        if !own.is_empty() && !line.contains(own) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(own);
        }
        if let Some(fix) = fix {
            if !fixes.iter().any(|f| f == fix) {
                fixes.push(fix.to_string());
            }
        }
        cur = layer.source();
    }
    if !fixes.is_empty() {
        line.push_str(FIX);
        line.push_str(&fixes.join("; "));
    }
    line
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

    #[test]
    fn a_chain_moves_each_layers_fix_to_the_end_once() {
        let inner = Layer("TLS: unknown issuer; fix: add the CA to ca_bundle", None);
        let mid = Layer("GET https://kv/keys/k", Some(Box::new(inner)));
        let outer = Layer(
            "key release; fix: add the CA to ca_bundle",
            Some(Box::new(mid)),
        );
        assert_eq!(
            chain(&outer),
            "key release: GET https://kv/keys/k: TLS: unknown issuer; fix: add the CA to ca_bundle"
        );
    }

    #[test]
    fn a_cause_the_outer_text_already_holds_is_not_printed_again() {
        let inner = Layer("permission denied (os error 13)", None);
        let outer = Layer(
            "open /dev/sev-guest: permission denied (os error 13)",
            Some(Box::new(inner)),
        );
        assert_eq!(
            chain(&outer),
            "open /dev/sev-guest: permission denied (os error 13)"
        );
    }

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);
    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
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
