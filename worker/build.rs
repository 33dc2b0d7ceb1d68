// Records the commit this binary is built from, for `--version`: the operator's tool's build
// script, shared.
include!("../producer-cli/build.rs");
