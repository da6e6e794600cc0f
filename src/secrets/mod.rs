//! Keys released for the application: a tmpfs on the shared volume, one file per `[[secret]]` (issue 16).
