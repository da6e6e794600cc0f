//! `encfs-init key import` and `key policy`: upstream importkey's job (issue 16).
